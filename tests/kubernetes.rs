//! The kubernetes executor against a mocked API server with a fake kubelet
//! (tests/common/kube_mock.rs): one Job per task with the same bytes as a local run, the Job
//! spec, failures, one list call per interval, duplicated and lying Jobs, Ctrl-C, a preempted
//! pod, config errors.
#![cfg(feature = "kubernetes")]

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kube_mock::{KubeMock, Kubelet};
use common::{artifacts_in, artifacts_of, read_until, remote_keys, Workspace};
use serde_json::json;

const NAMESPACE: &str = "pipeline-test";
const IMAGE: &str = "registry.example/pipeline:test";

/// Job names from "NAME: submitted as kubernetes job JOB in namespace NS" lines.
fn submitted(stderr: &str) -> BTreeMap<String, String> {
    stderr
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(": submitted as kubernetes job ")?;
            Some((name.to_owned(), rest.split_whitespace().next()?.to_owned()))
        })
        .collect()
}

/// A workspace for the coordinator, talking to `mock`, with a `PIPELINE_*` variable the Jobs
/// should see.
fn coordinator(yaml: &str, mock: &KubeMock) -> Workspace {
    let mut env = mock.env();
    env.push(("PIPELINE_TEST_MARK".into(), "from-the-coordinator".into()));
    Workspace::with_env(yaml, env)
}

/// Shell stages over a matrix, a fan-in, nested output directories, a binary file. Each stage
/// also appends `<stage> <HOSTNAME> <PIPELINE_TEST_MARK>` to `where.txt` in its working
/// directory (outside its output), so the test sees which pod ran it.
fn pipeline_yaml(workdir: &Path) -> String {
    format!(
        r#"executor:
  kind: kubernetes
  image: {IMAGE}
  workdir: {workdir}
  poll_seconds: 0.2
  resources:
    default: {{cpus: 1, mem: 100M, time: "5"}}
    combine: {{mem: 200M}}
stages:
  gen:
    run: "seq 1 $PIPELINE_PARAM_N > $PIPELINE_OUT/numbers.txt; echo \"$PIPELINE_STAGE $HOSTNAME $PIPELINE_TEST_MARK\" >> where.txt"
    matrix:
      n: [3, 5]
  square:
    run: "mkdir -p $PIPELINE_OUT/deep/er; while read x; do echo $((x*x)); done < $PIPELINE_IN_GEN/numbers.txt > $PIPELINE_OUT/deep/er/sq.txt; echo \"$PIPELINE_STAGE $HOSTNAME $PIPELINE_TEST_MARK\" >> where.txt; echo squared"
    needs: [gen]
    matrix:
      n: [3, 5]
  combine:
    run: "for d in $(echo $PIPELINE_IN_SQUARE | tr : ' '); do cat $d/deep/er/sq.txt; done > $PIPELINE_OUT/all.txt; printf '\\000\\001\\377binary' > $PIPELINE_OUT/blob.bin; echo \"$PIPELINE_STAGE $HOSTNAME $PIPELINE_TEST_MARK\" >> where.txt"
    needs: [square]
"#,
        workdir = workdir.display()
    )
}

/// The "image": a checkout of its own with the same pipeline file, where the Jobs run (the
/// coordinator's workspace is not shared with them).
fn image_checkout(yaml_for: impl Fn(&Path) -> String) -> Workspace {
    let image = Workspace::new("stages: {}\n");
    let path = std::fs::canonicalize(image.path()).unwrap();
    image.write("pipeline.yaml", &yaml_for(&path));
    image
}

#[test]
fn kubernetes_run_gives_the_same_bytes_as_a_local_run() {
    let mock = KubeMock::start(NAMESPACE);
    let image = image_checkout(pipeline_yaml);
    let yaml = pipeline_yaml(&std::fs::canonicalize(image.path()).unwrap());

    let local_remote = tempfile::tempdir().unwrap();
    let local = Workspace::new(&yaml);
    let out = local.pipeline(&["--remote", local_remote.path().to_str().unwrap(), "run", "--executor", "local"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("kubernetes"), "{}", out.stderr);

    let remote = tempfile::tempdir().unwrap();
    let ws = coordinator(&yaml, &mock);
    let started = Instant::now();
    let out = ws.pipeline(&["--remote", remote.path().to_str().unwrap(), "run", "--executor", "kubernetes"]);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "{}", out.stderr);
    eprintln!("5 tasks through the mocked cluster in {seconds:.2} s:\n{}", out.stderr);

    // Every instance went through its own Job, and ran in its pod.
    let jobs = submitted(&out.stderr);
    assert_eq!(jobs.len(), 5, "{}", out.stderr);
    assert_eq!(mock.created().len(), 5);
    let created: BTreeSet<String> = mock.created().iter().map(|j| j["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(created, jobs.values().cloned().collect());
    for (name, job) in &jobs {
        assert!(
            out.stderr.contains(&format!("{name}: submitted as kubernetes job {job} in namespace {NAMESPACE} (cpus 1, mem ")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(&format!("{name}: done in kubernetes job {job} (Complete)")), "{}", out.stderr);
        assert!(mock.log(job).contains("computed and pushed"), "{}", mock.log(job));
    }
    assert!(out.stderr.contains("(cpus 1, mem 200M, time 5)"), "{}", out.stderr);
    // The stages ran in the image's checkout, in the Jobs' pods, with the coordinator's
    // PIPELINE_* variables; not in the coordinator's workspace.
    assert!(!ws.path().join("where.txt").exists());
    let where_ran = std::fs::read_to_string(image.path().join("where.txt")).unwrap();
    let pods: BTreeSet<String> = where_ran.lines().map(|l| l.split(' ').nth(1).unwrap().to_owned()).collect();
    let expected: BTreeSet<String> = jobs.values().map(|j| format!("{j}-pod0")).collect();
    assert_eq!(pods, expected, "{where_ran}");
    assert!(where_ran.lines().all(|l| l.ends_with(" from-the-coordinator")), "{where_ran}");

    // Same bytes as the local run, for every instance.
    let (a, b) = (artifacts_of(&local), artifacts_of(&ws));
    assert_eq!(a.len(), 5);
    assert_eq!(a, b);
    assert_eq!(b["combine"]["all.txt"], b"1\n4\n9\n1\n4\n9\n16\n25\n");
    assert_eq!(b["combine"]["blob.bin"], b"\x00\x01\xffbinary");
    assert_eq!(remote_keys(remote.path(), "tasks").len(), 5);
    assert_eq!(remote_keys(remote.path(), "manifests").len(), 5);
    assert!(!image.store().exists(), "a worker must use a private store, not the checkout's");

    // Nothing left to do: no Job is created.
    let again = ws.pipeline(&["--remote", remote.path().to_str().unwrap(), "run", "--executor", "kubernetes"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("0 ran, 5 fresh") && !again.stderr.contains("submitted"), "{}", again.stderr);
    assert_eq!(mock.created().len(), 5);
}

#[test]
fn resources_and_the_task_land_in_the_job_spec() {
    let mock = KubeMock::start(NAMESPACE);
    let remote = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"remote: {remote}
executor:
  kind: kubernetes
  namespace: ml-jobs
  image: {IMAGE}
  poll_seconds: 0.2
  resources:
    default: {{cpus: 2, mem: 1G, time: "1-00"}}
    train: {{gpus: 1, time: "5"}}
stages:
  prep:
    run: "echo prepared > $PIPELINE_OUT/p.txt"
  train:
    run: "cat $PIPELINE_IN_PREP/p.txt > $PIPELINE_OUT/model.txt; echo $PIPELINE_TASK_CPUS > $PIPELINE_OUT/cpus.txt"
    needs: [prep]
"#,
        remote = remote.path().display()
    );
    // The pipeline file in a subfolder of the directory the coordinator runs in.
    let ws = coordinator("stages: {}\n", &mock);
    ws.write("sub/pipeline.yaml", &yaml);
    let out = ws.pipeline(&["--config", "sub/pipeline.yaml", "run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("train: submitted as kubernetes job")
            && out.stderr.contains("in namespace ml-jobs (cpus 2, mem 1024M, time 5, gpus 1)"),
        "{}",
        out.stderr
    );
    assert_eq!(artifacts_in(&ws.path().join("sub/.pipeline"))["train"]["cpus.txt"], b"2\n", "the worker is told how many CPUs it has");

    let requests = mock.requests();
    let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|r| r.path == "/apis/batch/v1/namespaces/ml-jobs/jobs"), "{posts:?}");
    let by_instance: BTreeMap<String, serde_json::Value> =
        mock.created().into_iter().map(|j| (j["metadata"]["annotations"]["pipeline.instance"].as_str().unwrap().to_owned(), j)).collect();
    let (prep, train) = (&by_instance["prep"], &by_instance["train"]);
    let container = |job: &serde_json::Value| job["spec"]["template"]["spec"]["containers"][0].clone();
    assert_eq!(
        container(train)["resources"],
        json!({"requests": {"cpu": "2", "memory": "1024Mi"}, "limits": {"cpu": "2", "memory": "1024Mi", "nvidia.com/gpu": "1"}})
    );
    assert_eq!(train["spec"]["activeDeadlineSeconds"], 300);
    assert_eq!(
        container(prep)["resources"],
        json!({"requests": {"cpu": "2", "memory": "1024Mi"}, "limits": {"cpu": "2", "memory": "1024Mi"}})
    );
    assert_eq!(prep["spec"]["activeDeadlineSeconds"], 86_400);

    let run_id = prep["metadata"]["labels"]["pipeline.run-id"].as_str().unwrap().to_owned();
    assert!(!run_id.is_empty());
    let tasks = remote_keys(remote.path(), "tasks");
    for job in [prep, train] {
        let name = job["metadata"]["name"].as_str().unwrap();
        let key = job["metadata"]["annotations"]["pipeline.key"].as_str().unwrap();
        assert!(tasks.contains(&key.to_owned()), "{key} not in {tasks:?}");
        assert_eq!(job["metadata"]["labels"]["pipeline.run-id"], run_id.as_str());
        assert_eq!(job["metadata"]["labels"]["pipeline.key"], &key[..16]);
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["pipeline.run-id"], run_id.as_str());
        assert!(name.len() <= 63 && name == name.to_ascii_lowercase(), "{name}");
        assert_eq!(name, format!("pipeline-{run_id}-{}", &key[..16]));
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86_400);
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let c = container(job);
        assert_eq!(c["image"], IMAGE);
        // Default workdir: the coordinator's working directory, the pipeline file relative to it.
        assert_eq!(c["workingDir"], std::fs::canonicalize(ws.path()).unwrap().display().to_string());
        assert_eq!(
            c["command"],
            json!(["pipeline", "--config", "sub/pipeline.yaml", "--remote", remote.path().display().to_string(), "exec-task", key])
        );
        let env: BTreeMap<String, String> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(env.get("PIPELINE_TASK_CPUS").map(String::as_str), Some("2"));
        assert_eq!(env.get("PIPELINE_TEST_MARK").map(String::as_str), Some("from-the-coordinator"));
        assert!(env.keys().all(|k| k.starts_with("PIPELINE_")), "only PIPELINE_* variables are passed: {env:?}");
    }
}

#[test]
fn a_failing_task_names_its_job_and_reason_and_a_fixed_rerun_finishes() {
    let mock = KubeMock::start(NAMESPACE);
    let remote = tempfile::tempdir().unwrap();
    let yaml = |bad_exit: u8| {
        format!(
            "remote: {}\nexecutor: {{kind: kubernetes, image: {IMAGE}, poll_seconds: 0.2}}\nstages:\n  ok:\n    run: \"echo fine > $PIPELINE_OUT/ok.txt\"\n  bad:\n    run: \"echo about to fail >&2; echo half > $PIPELINE_OUT/half.txt; exit {bad_exit}\"\n  after:\n    run: \"cat $PIPELINE_IN_BAD/half.txt > $PIPELINE_OUT/after.txt\"\n    needs: [bad]\n",
            remote.path().display()
        )
    };
    let ws = coordinator(&yaml(3), &mock);
    let out = ws.pipeline(&["run", "--keep-going"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let job = submitted(&out.stderr)["bad"].clone();
    assert!(
        out.stderr.contains(&format!(
            "bad: FAILED: kubernetes job {job} in namespace {NAMESPACE} ended Failed (BackoffLimitExceeded: Job has reached the specified backoff limit) without publishing a result; read its log with `kubectl logs job/{job} -n {NAMESPACE}`"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("after: not run: upstream bad failed"), "{}", out.stderr);
    // The pod's log has the worker's error and the stage's stderr.
    let log = mock.log(&job);
    assert!(log.contains("about to fail") && log.contains("exit status 3"), "{log}");
    // Nothing of `bad` was published, here or in the remote.
    let published: Vec<String> = artifacts_of(&ws).into_keys().collect();
    assert_eq!(published, ["ok"]);
    assert_eq!(remote_keys(remote.path(), "manifests").len(), 1);

    // `status` says where the failed task ran and what the API server says of it now.
    let status = ws.pipeline(&["status"]);
    assert!(
        status.stdout.contains(&format!(
            "kubernetes job {job} in namespace {NAMESPACE}: Failed (BackoffLimitExceeded: Job has reached the specified backoff limit); log: kubectl logs job/{job} -n {NAMESPACE}"
        )),
        "{}",
        status.stdout
    );

    ws.write("pipeline.yaml", &yaml(0));
    let rerun = ws.pipeline(&["run"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("2 ran, 1 fresh"), "{}", rerun.stderr);
    assert_eq!(artifacts_of(&ws)["after"]["after.txt"], b"half\n");
}

#[test]
fn one_list_call_per_poll_interval_for_the_whole_run() {
    let mock = KubeMock::start(NAMESPACE);
    let remote = tempfile::tempdir().unwrap();
    // Four tasks waiting at the same time for about a second, then one more.
    let mut yaml =
        format!("remote: {}\nexecutor: {{kind: kubernetes, image: {IMAGE}, poll_seconds: 0.2}}\nstages:\n", remote.path().display());
    for i in 0..4 {
        yaml.push_str(&format!("  s{i}:\n    run: \"sleep 1; echo {i} > $PIPELINE_OUT/x\"\n"));
    }
    yaml.push_str("  all:\n    run: \"cat $PIPELINE_IN_S0/x $PIPELINE_IN_S3/x > $PIPELINE_OUT/x\"\n    needs: [s0, s1, s2, s3]\n");
    let ws = coordinator(&yaml, &mock);
    let started = Instant::now();
    let out = ws.pipeline(&["run"]);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lists = mock.list_calls();
    let intervals = seconds / 0.2;
    eprintln!("{lists} list calls in {seconds:.2} s ({intervals:.1} poll intervals) for 5 tasks");
    // One before anything is submitted (the API server answers?), then at most one per interval.
    assert!(lists as f64 <= intervals + 2.0, "{lists} list calls in {seconds:.2} s");
    // Polling per task would be about 4x as many: the waits of s0..s3 overlap for a second.
    assert!(lists >= 5, "{lists} list calls: the run did not poll");
    let requests = mock.requests();
    assert!(requests.iter().all(|r| r.method != "GET" || r.path.ends_with("/jobs")), "only list calls are used to poll");
    assert!(
        requests
            .iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.query.get("labelSelector").is_some_and(|s| s.starts_with("pipeline.run-id="))),
        "every list call selects the run's jobs"
    );
}

#[test]
fn a_duplicated_job_is_harmless_and_a_complete_job_without_a_manifest_is_not_done() {
    let mock = KubeMock::start(NAMESPACE);
    let image = image_checkout(pipeline_yaml);
    let yaml = pipeline_yaml(&std::fs::canonicalize(image.path()).unwrap());
    let local = Workspace::new(&yaml);
    let local_remote = tempfile::tempdir().unwrap();
    assert_eq!(local.pipeline(&["--remote", local_remote.path().to_str().unwrap(), "run", "--executor", "local"]).code, 0);

    // Every Job's pod runs twice at once: both compute, or one finds the result there.
    mock.set_kubelet(Kubelet::RunTwice);
    let remote = tempfile::tempdir().unwrap();
    let ws = coordinator(&yaml, &mock);
    let out = ws.pipeline(&["--remote", remote.path().to_str().unwrap(), "run", "--executor", "kubernetes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for job in submitted(&out.stderr).values() {
        let log = mock.log(job);
        let runs = log.matches("computed and pushed").count() + log.matches("already in the remote (a duplicated task)").count();
        assert_eq!(runs, 2, "{log}");
    }
    assert_eq!(artifacts_of(&ws), artifacts_of(&local));
    assert_eq!(remote_keys(remote.path(), "manifests").len(), 5);

    // A Job the cluster calls Complete although nothing was pushed: not done.
    mock.set_kubelet(Kubelet::CompleteWithoutRunning);
    let other_remote = tempfile::tempdir().unwrap();
    let ws = coordinator(&yaml, &mock);
    let out = ws.pipeline(&["--remote", other_remote.path().to_str().unwrap(), "run", "--executor", "kubernetes", "--keep-going"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let jobs = submitted(&out.stderr);
    assert_eq!(jobs.len(), 2, "{}", out.stderr);
    for (name, job) in &jobs {
        assert!(
            out.stderr.contains(&format!(
                "{name}: FAILED: kubernetes job {job} in namespace {NAMESPACE} is Complete, but its result manifest is not in the remote, so the task is not done"
            )),
            "{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("square[n=3]: not run: upstream gen"), "{}", out.stderr);
    assert!(remote_keys(other_remote.path(), "manifests").is_empty());
    assert!(artifacts_of(&ws).is_empty());
}

/// Spawns `pipeline ARGS` and returns it with a channel of its stderr lines.

#[test]
fn ctrl_c_deletes_the_runs_jobs() {
    let mock = KubeMock::start(NAMESPACE);
    let remote = tempfile::tempdir().unwrap();
    let yaml = format!(
        "remote: {}\nexecutor: {{kind: kubernetes, image: {IMAGE}, poll_seconds: 0.2}}\nstages:\n  slow:\n    run: \"echo started > started.txt; sleep 30; echo two > $PIPELINE_OUT/two.txt\"\n  fast:\n    run: \"echo one > $PIPELINE_OUT/one.txt\"\n",
        remote.path().display()
    );
    let ws = coordinator(&yaml, &mock);
    let (mut child, rx) = ws.spawn_run(&["run"]);
    let mut lines = Vec::new();
    let line = read_until(&rx, "slow: submitted as kubernetes job", &mut lines);
    let job = line.split_whitespace().nth(5).unwrap().to_owned();
    // `fast` has finished: only `slow` runs when Ctrl-C comes.
    read_until(&rx, "fast: done in kubernetes job", &mut lines);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ws.path().join("started.txt").exists() {
        assert!(Instant::now() < deadline, "job {job} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    assert_eq!(code, Some(130), "{}", lines.join("\n"));
    assert!(lines.iter().any(|l| l.contains("interrupted: deleting the kubernetes jobs of this run")), "{}", lines.join("\n"));

    // One delete-collection on the run's label, in the background.
    let run_id = mock.created()[0]["metadata"]["labels"]["pipeline.run-id"].as_str().unwrap().to_owned();
    let deletes: Vec<_> = mock.requests().into_iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs"));
    assert_eq!(deletes[0].query.get("labelSelector"), Some(&format!("pipeline.run-id={run_id}")));
    assert_eq!(deletes[0].body.as_ref().unwrap()["propagationPolicy"], "Background");
    // The mock deleted the Jobs and stopped the slow pod.
    assert!(mock.job_names().is_empty(), "{:?}", mock.job_names());
    assert_eq!(mock.killed(), std::slice::from_ref(&job));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mock.idle() {
        assert!(Instant::now() < deadline, "the slow pod is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mock.log(&job).contains("exec-task: interrupted; removed the scratch store"), "{}", mock.log(&job));
    assert!(!artifacts_of(&ws).contains_key("slow"));
}

/// A preempted pod does not fail its Job: the Job's `podFailurePolicy` starts a new pod, which
/// continues from the resumable state the first one kept in `PIPELINE_RESUME_DIR` (a persistent
/// volume on a real cluster; the coordinator's `PIPELINE_*` variables reach the pods). The stage
/// counts its attempts in `$PIPELINE_RESUME`; only the first one waits long enough to be
/// preempted.
#[test]
fn a_preempted_pod_is_replaced_and_continues_from_the_state_it_left() {
    let mock = KubeMock::start(NAMESPACE);
    let remote = tempfile::tempdir().unwrap();
    let resume = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"remote: {remote}
executor: {{kind: kubernetes, image: {IMAGE}, poll_seconds: 0.2}}
stages:
  slow:
    run: "n=$(cat $PIPELINE_RESUME/attempts 2>/dev/null || echo 0); echo $((n+1)) > $PIPELINE_RESUME/attempts; echo $HOSTNAME >> started.txt; test $n -ge 1 || sleep 60; echo attempt $((n+1)) > $PIPELINE_OUT/two.txt"
"#,
        remote = remote.path().display()
    );
    let mut env = mock.env();
    env.push(("PIPELINE_RESUME_DIR".into(), resume.path().display().to_string()));
    let ws = Workspace::with_env(&yaml, env);
    let (mut child, rx) = ws.spawn_run(&["run"]);
    let mut lines = Vec::new();
    let line = read_until(&rx, "slow: submitted as kubernetes job", &mut lines);
    let job = line.split_whitespace().nth(5).unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ws.path().join("started.txt").exists() {
        assert!(Instant::now() < deadline, "job {job} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mock.preempt(&job), "job {job} has no running pod");
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    let stderr = format!("{}\n--- pods' log\n{}", lines.join("\n"), mock.log(&job));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("slow: done in kubernetes job {job} (Complete)")), "{stderr}");
    assert_eq!(artifacts_of(&ws)["slow"]["two.txt"], b"attempt 2\n", "the second pod took up the first one's state");
    // One Job, two pods: the first stopped by the preemption, the second finished it.
    assert_eq!(mock.created().len(), 1, "the run did not submit the task again");
    let pods = std::fs::read_to_string(ws.path().join("started.txt")).unwrap();
    assert_eq!(pods, format!("{job}-pod0\n{job}-pod1\n"));
    assert!(stderr.contains("exec-task: interrupted"), "the first pod's last words: {stderr}");
    assert!(stderr.contains("computed and pushed"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(resume.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "the state is removed once the result is published: {left:?}");
    let again = ws.pipeline(&["run"]);
    assert!(again.stderr.contains("0 ran, 1 fresh"), "{}", again.stderr);
}

/// Configuration errors need no cluster: they stop the run before anything is submitted.
fn run_error(yaml: &str, args: &[&str]) -> String {
    let ws = Workspace::new(yaml);
    let out = ws.pipeline(args);
    assert_eq!(out.code, 2, "expected a configuration error:\n{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.stderr
}

#[test]
fn config_errors_name_the_place() {
    let stages = "stages:\n  train:\n    run: echo\n";
    let err = run_error(&format!("executor:\n  kind: kubernetes\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:2:3: the kubernetes executor needs `image:` in the `executor:` section"), "{err}");
    assert!(err.contains("hint: the container image the Jobs run"), "{err}");
    let err = run_error(&format!("executor:\n  kind: kubernetes\n  image: {IMAGE}\n  partition: gpu\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:3: `partition` is a slurm setting, but `kind` is kubernetes"), "{err}");
    assert!(err.contains("hint: the kubernetes executor's own keys are `namespace`, `image`, `workdir`"), "{err}");
    let err = run_error(&format!("executor:\n  kind: kubernetes\n  image: {IMAGE}\n  sbatch_args: [--qos=x]\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:3: `sbatch_args` is a slurm setting"), "{err}");
    let err = run_error(&format!("executor:\n  kind: slurm\n  namespace: ml\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:3:3: `namespace` is a kubernetes setting, but `kind` is slurm"), "{err}");
    assert!(err.contains("hint: the slurm executor's own keys are `partition`, `log_dir`, `sbatch_args`"), "{err}");
    let err = run_error(&format!("executor:\n  kind: kubernetes\n  image: {IMAGE}\n  namespace: ML_jobs\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:3: bad namespace `ML_jobs`"), "{err}");
    let err = run_error(&format!("executor:\n  kind: kubernetes\n  image: {IMAGE}\n  workdir: work\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:3: `workdir` must be an absolute path in the image, not `work`"), "{err}");
    let err = run_error(
        &format!("executor:\n  kind: kubernetes\n  image: {IMAGE}\n  resources:\n    train: {{time: 1h}}\n{stages}"),
        &["status"],
    );
    assert!(err.contains("pipeline.yaml:5:") && err.contains("bad time limit `1h` for `train`"), "{err}");
    // A local section may hold either scheduler's keys (`--executor` picks one).
    let ws = Workspace::new(&format!("executor:\n  kind: local\n  image: {IMAGE}\n  partition: gpu\n{stages}"));
    assert_eq!(ws.pipeline(&["status"]).code, 0);

    // Found when the run starts: no remote, no image for `--executor kubernetes`.
    let err = run_error(&format!("executor:\n  kind: kubernetes\n  image: {IMAGE}\n{stages}"), &["run"]);
    assert!(err.contains("pipeline.yaml:2:3: the kubernetes executor needs a remote cache"), "{err}");
    let remote = tempfile::tempdir().unwrap();
    let err = run_error(&format!("remote: {}\n{stages}", remote.path().display()), &["run", "--executor", "kubernetes"]);
    assert!(err.contains("pipeline.yaml: the kubernetes executor needs `image:` in the `executor:` section"), "{err}");
}

#[test]
fn no_cluster_or_a_dead_api_server_fails_before_computing_anything() {
    let remote = tempfile::tempdir().unwrap();
    let yaml = format!(
        "remote: {}\nexecutor: {{kind: kubernetes, image: {IMAGE}}}\nstages:\n  a:\n    run: \"echo > counts/a\"\n",
        remote.path().display()
    );
    // No kubeconfig anywhere, not in a pod.
    let home = tempfile::tempdir().unwrap();
    let nowhere =
        vec![("KUBECONFIG".into(), home.path().join("missing").display().to_string()), ("HOME".into(), home.path().display().to_string())];
    let ws = Workspace::with_env(&yaml, nowhere);
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the kubernetes executor: cannot find a Kubernetes cluster to talk to"), "{}", out.stderr);
    assert_eq!(ws.count("a"), 0);

    // A kubeconfig whose server is gone.
    let mock = KubeMock::start(NAMESPACE);
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(mock.kubeconfig(), kubeconfig.path()).unwrap();
    drop(mock);
    let ws = Workspace::with_env(&yaml, vec![("KUBECONFIG".into(), kubeconfig.path().display().to_string())]);
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the kubernetes executor: the Kubernetes API server does not answer"), "{}", out.stderr);
    assert_eq!(ws.count("a"), 0);
}

/// synth, scan and extract through the mocked cluster, `extract` as one Indexed Job of 3 shards.
fn sharded_yaml(workdir: &Path, remote: &Path) -> String {
    format!(
        r#"remote: {remote}
executor:
  kind: kubernetes
  image: {IMAGE}
  workdir: {workdir}
  poll_seconds: 0.2
  resources:
    extract: {{shards: 3, cpus: 1}}
stages:
  synth:
    uses: synth
    with: {{actors: 2, emotions: [neutral, happy], intensities: [1], duration_s: 0.5, width: 320, height: 180}}
  scan: {{uses: scan, needs: [synth]}}
  extract:
    uses: extract
    needs: [scan]
    with: {{frames: 2, size: 32}}
"#,
        workdir = workdir.display(),
        remote = remote.display()
    )
}

/// Shards as one Indexed Job: an index that fails leaves the others' results, the run fails
/// and publishes nothing for the instance; the rerun computes only that shard (the finished
/// indexes' pods find their results and stop), merges, and the tensor cache is a local run's.
#[test]
fn shards_go_as_one_indexed_job_and_a_failed_index_is_all_the_rerun_computes() {
    let mock = KubeMock::start(NAMESPACE);
    let remote = tempfile::tempdir().unwrap();
    let image = image_checkout(|dir| sharded_yaml(dir, remote.path()));
    let yaml = sharded_yaml(&std::fs::canonicalize(image.path()).unwrap(), remote.path());
    let local_remote = tempfile::tempdir().unwrap();
    let local = Workspace::new(&sharded_yaml(Path::new("/unused"), local_remote.path()));
    let out = local.pipeline(&["run", "--executor", "local"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    mock.set_kubelet(Kubelet::FailIndex(1));
    let ws = coordinator(&yaml, &mock);
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let indexed: Vec<serde_json::Value> = mock.created().into_iter().filter(|j| j["spec"]["completionMode"] == "Indexed").collect();
    assert_eq!(indexed.len(), 1, "one Indexed Job for the 3 shards");
    let job = indexed[0]["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!((&indexed[0]["spec"]["completions"], &indexed[0]["spec"]["backoffLimitPerIndex"]), (&json!(3), &json!(0)));
    let command = indexed[0]["spec"]["template"]["spec"]["containers"][0]["command"].as_array().unwrap().clone();
    assert_eq!(command[command.len() - 2..], [json!("--shard"), json!("$(JOB_COMPLETION_INDEX)/3")]);
    assert!(
        out.stderr.contains(&format!(
            "extract: submitted as kubernetes indexed job {job} in namespace {NAMESPACE} (3 indexes, 3 to compute) (cpus 1)"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("1 of 3 shards failed (2 finished and are kept for the rerun)"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("extract[shard 2/3]: kubernetes job {job} index 1 in namespace {NAMESPACE} published no result (the Job ended Failed (FailedIndexes")), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("extract[shard 1/3]: done in kubernetes job {job} index 0 (Failed")), "{}", out.stderr);
    assert!(!artifacts_of(&ws).contains_key("extract"));
    assert!(mock.log(&job).matches("computed and pushed").count() == 2, "{}", mock.log(&job));

    mock.set_kubelet(Kubelet::Run);
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("extract: split into 3 shards (2 done by an earlier run)"), "{}", out.stderr);
    assert!(out.stderr.contains("(3 indexes, 1 to compute)"), "{}", out.stderr);
    assert!(out.stderr.contains("extract[shard 2/3]: done in kubernetes job"), "{}", out.stderr);
    let rerun_job = mock.created().last().unwrap()["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(mock.log(&rerun_job).matches("already in the remote (a duplicated task)").count(), 2, "{}", mock.log(&rerun_job));
    let (here, there) = (artifacts_of(&ws), artifacts_of(&local));
    assert!(here["extract"] == there["extract"], "the merged tensor cache differs from a local run's");
    assert!(here["extract"].keys().any(|p| p.ends_with(".safetensors")));
}
