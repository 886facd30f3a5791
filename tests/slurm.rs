//! The Slurm executor against a real one-node cluster on localhost (tests/common/slurm.rs):
//! results byte-identical to a local run, a job cancelled from outside, Ctrl-C, config errors.

mod common;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::slurm::SlurmCluster;
use common::{artifacts_of, read_until, remote_keys, Workspace};

/// Shell stages over a matrix, a fan-in, nested output directories. Each stage also appends
/// `<stage> <SLURM_JOB_ID>` to `where.txt` in the workspace (outside its output), so the test
/// sees which job ran it.
fn pipeline_yaml(remote: &Path) -> String {
    format!(
        r#"remote: {remote}
executor:
  kind: slurm
  poll_seconds: 0.2
  resources:
    default: {{cpus: 1, mem: 100M, time: "5"}}
    combine: {{mem: 200M}}
stages:
  gen:
    run: "seq 1 $PIPELINE_PARAM_N > $PIPELINE_OUT/numbers.txt; echo \"$PIPELINE_STAGE $SLURM_JOB_ID\" >> where.txt"
    matrix:
      n: [3, 5]
  square:
    run: "mkdir -p $PIPELINE_OUT/deep/er; while read x; do echo $((x*x)); done < $PIPELINE_IN_GEN/numbers.txt > $PIPELINE_OUT/deep/er/sq.txt; echo \"$PIPELINE_STAGE $SLURM_JOB_ID\" >> where.txt; echo squared"
    needs: [gen]
    matrix:
      n: [3, 5]
  combine:
    run: "for d in $(echo $PIPELINE_IN_SQUARE | tr : ' '); do cat $d/deep/er/sq.txt; done > $PIPELINE_OUT/all.txt; printf '\\000\\001\\377binary' > $PIPELINE_OUT/blob.bin; echo \"$PIPELINE_STAGE $SLURM_JOB_ID\" >> where.txt"
    needs: [square]
"#,
        remote = remote.display()
    )
}

/// Job ids from "NAME: submitted as slurm job ID" lines.
fn submitted(stderr: &str) -> BTreeMap<String, String> {
    stderr
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(": submitted as slurm job ")?;
            Some((name.to_owned(), rest.split_whitespace().next()?.to_owned()))
        })
        .collect()
}

#[test]
fn slurm_run_gives_the_same_bytes_as_a_local_run() {
    let cluster = SlurmCluster::start();
    eprintln!("cluster idle after {:.2} s", cluster.started_in.as_secs_f64());

    let local_remote = tempfile::tempdir().unwrap();
    let local = Workspace::new(&pipeline_yaml(local_remote.path()));
    let out = local.pipeline(&["run", "--executor", "local"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("slurm"), "{}", out.stderr);

    let remote = tempfile::tempdir().unwrap();
    let ws = Workspace::with_env(&pipeline_yaml(remote.path()), cluster.env());
    let started = Instant::now();
    let out = ws.pipeline(&["run"]);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "{}", out.stderr);
    eprintln!("5 tasks through slurm in {seconds:.2} s:\n{}", out.stderr);

    // Every instance went through its own job, and ran inside it.
    let jobs = submitted(&out.stderr);
    assert_eq!(jobs.len(), 5, "{}", out.stderr);
    for (name, id) in &jobs {
        assert!(out.stderr.contains(&format!("{name}: done in slurm job {id} (COMPLETED)")), "{}", out.stderr);
        assert_eq!(cluster.job_state(id), "COMPLETED");
    }
    assert!(out.stderr.contains("combine: submitted as slurm job") && out.stderr.contains("(cpus 1, mem 200M, time 5)"), "{}", out.stderr);
    let where_ran = std::fs::read_to_string(ws.path().join("where.txt")).unwrap();
    let mut seen: Vec<(String, String)> =
        where_ran.lines().map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap()).collect();
    seen.sort();
    let mut expected: Vec<(String, String)> = jobs.clone().into_iter().collect();
    expected.sort();
    assert_eq!(seen, expected, "SLURM_JOB_ID seen by each stage");

    // Same bytes as the local run, for every instance.
    let (a, b) = (artifacts_of(&local), artifacts_of(&ws));
    assert_eq!(a.len(), 5);
    assert_eq!(a, b);
    assert_eq!(b["combine"]["all.txt"], b"1\n4\n9\n1\n4\n9\n16\n25\n");
    assert_eq!(b["combine"]["blob.bin"], b"\x00\x01\xffbinary");
    // The remote holds each task's spec and result.
    assert_eq!(std::fs::read_dir(remote.path().join("tasks")).unwrap().count(), 5);
    assert_eq!(std::fs::read_dir(remote.path().join("manifests")).unwrap().count(), 5);

    // A duplicated task is harmless: the worker finds the result and does nothing.
    let key = remote_keys(remote.path(), "tasks").into_iter().next().unwrap();
    let dup = ws.pipeline(&["exec-task", &key]);
    assert_eq!(dup.code, 0, "{}", dup.stderr);
    assert!(dup.stderr.contains("already in the remote (a duplicated task), nothing to do"), "{}", dup.stderr);

    // --force recomputes in a job even though the remote has the result.
    let forced = ws.pipeline(&["run", "--force", "combine"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(forced.stderr.contains("combine: stale: forced") && forced.stderr.contains("combine: done in slurm job"), "{}", forced.stderr);
    assert!(forced.stderr.contains("1 ran, 4 fresh"), "{}", forced.stderr);
    assert_eq!(std::fs::read_to_string(ws.path().join("where.txt")).unwrap().lines().filter(|l| l.starts_with("combine ")).count(), 2);
    assert_eq!(artifacts_of(&ws), b);

    // Nothing left to do: no job is submitted.
    let again = ws.pipeline(&["run"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("0 ran, 5 fresh") && !again.stderr.contains("submitted"), "{}", again.stderr);
}

/// Built-in stages through `exec-task`: each worker finds the kind in its registry. `synth` writes
/// the same videos as a local run; `scan` (in a job with a private store) still records the
/// videos' paths as the workspace's store has them, so its table is byte-identical; `extract` reads
/// those paths, finds that the videos lie in an artifact its private store lacks (synth, two stages
/// up), pulls it from the remote, and writes the same tensor cache.
#[test]
fn builtin_stages_through_slurm_write_the_same_videos_tables_and_tensors() {
    let cluster = SlurmCluster::start();
    let yaml = |remote: &Path| {
        format!(
            "remote: {}\nexecutor: {{kind: slurm, poll_seconds: 0.2}}\nstages:\n  synth:\n    uses: synth\n    with: {{actors: 2, emotions: [neutral, happy], intensities: [1], duration_s: 0.5, width: 320, height: 180}}\n  scan:\n    uses: scan\n    needs: [synth]\n  extract:\n    uses: extract\n    needs: [scan]\n    with: {{frames: 2, size: 32}}\n",
            remote.display()
        )
    };
    let (local_remote, remote) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = Workspace::new(&yaml(local_remote.path()));
    let out = local.pipeline(&["run", "--executor", "local"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ws = Workspace::with_env(&yaml(remote.path()), cluster.env());
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for stage in ["synth", "scan", "extract"] {
        assert!(out.stderr.contains(&format!("{stage}: done in slurm job")), "{}", out.stderr);
    }
    let (here, there) = (artifacts_of(&ws), artifacts_of(&local));
    assert_eq!(here["synth"].keys().filter(|p| p.ends_with(".mp4")).count(), 4, "{:?}", here["synth"].keys());
    assert!(here["extract"].keys().any(|p| p.ends_with(".safetensors")), "{:?}", here["extract"].keys());
    for stage in ["synth", "scan", "extract"] {
        assert_eq!(here[stage].keys().collect::<Vec<_>>(), there[stage].keys().collect::<Vec<_>>(), "{stage}: the files differ");
        for (path, bytes) in &here[stage] {
            assert!(*bytes == there[stage][path], "{stage}/{path} differs from a local run");
        }
    }

    // A worker with no store at all (another checkout, as on a node without a shared
    // filesystem) recomputes extract: it pulls scan, then the synth videos scan's table points
    // into, and pushes the same result.
    let extract_key = remote_keys(remote.path(), "tasks")
        .into_iter()
        .find(|k| {
            std::fs::read_to_string(remote.path().join("tasks").join(format!("{k}.json"))).unwrap().contains("\"instance\": \"extract\"")
        })
        .unwrap();
    let manifest = remote.path().join("manifests").join(format!("{extract_key}.json"));
    let pushed = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let elsewhere = Workspace::new(&yaml(remote.path()));
    let done = elsewhere.pipeline(&["exec-task", &extract_key]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(done.stderr.contains("extract: computed and pushed"), "{}", done.stderr);
    assert!(!elsewhere.store().exists(), "exec-task must not touch the workspace's store");
    let content_hash = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["content_hash"].clone();
    assert_eq!(content_hash(&std::fs::read(&manifest).unwrap()), content_hash(&pushed));
}

/// A worker needs no shared filesystem with the coordinator: `exec-task` in another directory
/// with the same pipeline file computes the task from the remote alone, and one whose checkout
/// differs refuses to publish under the coordinator's key.
#[test]
fn a_worker_elsewhere_computes_from_the_remote_and_a_different_checkout_refuses() {
    let cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    let ws = Workspace::with_env(&pipeline_yaml(remote.path()), cluster.env());
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = artifacts_of(&ws);

    // Forget the result of `combine` in the remote (its key is the one no other task needs).
    let combine_key = remote_keys(remote.path(), "tasks")
        .into_iter()
        .find(|k| {
            std::fs::read_to_string(remote.path().join("tasks").join(format!("{k}.json"))).unwrap().contains("\"instance\": \"combine\"")
        })
        .unwrap();
    std::fs::remove_file(remote.path().join("manifests").join(format!("{combine_key}.json"))).unwrap();

    // Another checkout whose `combine` command differs: refuses.
    let other = Workspace::new(&pipeline_yaml(remote.path()).replace("blob.bin", "other.bin"));
    let refused = other.pipeline(&["exec-task", &combine_key]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("combine: this worker's checkout gives another key than the coordinator's (command changed"),
        "{}",
        refused.stderr
    );
    assert!(!remote.path().join("manifests").join(format!("{combine_key}.json")).exists());

    // An identical checkout elsewhere, with an empty store of its own: computes and pushes.
    let elsewhere = Workspace::new(&pipeline_yaml(remote.path()));
    let done = elsewhere.pipeline(&["exec-task", &combine_key]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(done.stderr.contains("combine: computed and pushed"), "{}", done.stderr);
    assert!(!elsewhere.store().exists(), "exec-task must not touch the workspace's store");

    // The coordinator's next run pulls exactly the bytes it had.
    std::fs::remove_dir_all(ws.store()).unwrap();
    let pulled = ws.pipeline(&["pull"]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert_eq!(artifacts_of(&ws), before);
}

#[test]
fn a_failing_stage_fails_its_job_and_the_error_shows_the_log() {
    let cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    // `gpu` asks for a GPU the test node does not have: sbatch refuses it, and says why.
    let yaml = format!(
        "remote: {}\nexecutor: {{kind: slurm, poll_seconds: 0.2, resources: {{gpu: {{gpus: 1}}}}}}\nstages:\n  bad:\n    run: \"echo about to fail >&2; exit 3\"\n  gpu:\n    run: \"true\"\n",
        remote.path().display()
    );
    let ws = Workspace::with_env(&yaml, cluster.env());
    let out = ws.pipeline(&["run", "--keep-going"]);
    eprintln!("{}", out.stderr);
    assert!(out.stderr.contains("gpu: FAILED: sbatch refused the job: sbatch: error:"), "{}", out.stderr);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let job = submitted(&out.stderr)["bad"].clone();
    assert!(
        out.stderr.contains(&format!("bad: FAILED: slurm job {job} ended FAILED (exit code 1:0) without publishing a result")),
        "{}",
        out.stderr
    );
    // The end of the job log: the worker's error with the stage's stderr.
    assert!(
        out.stderr.contains("end of the job log:") && out.stderr.contains("about to fail") && out.stderr.contains("exit status 3"),
        "{}",
        out.stderr
    );
    assert!(artifacts_of(&ws).is_empty());
    assert!(!remote.path().join("manifests").exists() || remote_keys(remote.path(), "manifests").is_empty());
}

/// Starts `pipeline run` on [`slow_yaml`] and reads its stderr until `slow` is submitted;
/// returns the run, its stderr channel, the lines read so far and the job id.
fn run_until_slow_is_submitted(ws: &Workspace) -> (std::process::Child, mpsc::Receiver<String>, Vec<String>, String) {
    let (child, rx) = ws.spawn_run(&["run"]);
    let mut lines = Vec::new();
    let line = read_until(&rx, "slow: submitted as slurm job", &mut lines);
    let job = line.rsplit(' ').next().unwrap().to_owned();
    (child, rx, lines, job)
}

/// Waits until `slow`'s job really runs (its command has written `started.txt`).
fn wait_until_slow_started(ws: &Workspace, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ws.path().join("started.txt").exists() {
        assert!(Instant::now() < deadline, "job {job} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn slow_yaml(remote: &Path) -> String {
    format!(
        r#"remote: {remote}
executor: {{kind: slurm, poll_seconds: 0.2}}
stages:
  first:
    run: "echo one > $PIPELINE_OUT/one.txt"
  slow:
    run: "echo started > started.txt; sleep 3; echo two > $PIPELINE_OUT/two.txt"
    needs: [first]
  last:
    run: "cat $PIPELINE_IN_SLOW/two.txt > $PIPELINE_OUT/three.txt"
    needs: [slow]
"#,
        remote = remote.display()
    )
}

#[test]
fn a_job_cancelled_from_outside_fails_its_task_and_a_rerun_finishes() {
    let cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    // The workers' scratch stores go here (jobs inherit TMPDIR), to see that they are removed.
    let scratch = tempfile::tempdir().unwrap();
    let mut env = cluster.env();
    env.push(("TMPDIR".into(), scratch.path().display().to_string()));
    let ws = Workspace::with_env(&slow_yaml(remote.path()), env);
    let (mut child, rx, mut lines, job) = run_until_slow_is_submitted(&ws);
    // Cancel it once it really runs.
    wait_until_slow_started(&ws, &job);
    let status = cluster.command("scancel").arg(&job).status().unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    let stderr = lines.join("\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("slow: FAILED: slurm job {job} ended CANCELLED")), "{stderr}");
    assert!(stderr.contains(&format!("job log: {}", ws.store().join("slurm-logs").join(format!("{job}.log")).display())), "{stderr}");
    assert!(stderr.contains("last: not run: upstream slow failed"), "{stderr}");
    assert_eq!(cluster.job_state(&job), "CANCELLED");
    // The cancelled worker removed its scratch store (as the others did theirs when done).
    // scancel signals the whole step at once: either the worker's SIGTERM handler removes it,
    // or the stage's command dies first and the worker returns through its failure path,
    // which drops the store; which one comes first is a race, the outcome is the same.
    let log = std::fs::read_to_string(ws.store().join("slurm-logs").join(format!("{job}.log"))).unwrap();
    assert!(
        log.contains("exec-task: interrupted; removed the scratch store")
            || log.contains("slow: FAILED: command failed (killed by a signal)"),
        "{log}"
    );
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "scratch stores left behind: {left:?}");

    // Nothing of `slow` was published, here or in the remote.
    let published: Vec<String> = artifacts_of(&ws).into_keys().collect();
    assert_eq!(published, ["first"]);
    assert_eq!(std::fs::read_dir(remote.path().join("manifests")).unwrap().count(), 1);

    // The run record says why, as data: the job ended without a result.
    let runs: Vec<_> = std::fs::read_dir(ws.store().join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&runs[0]).unwrap()).unwrap();
    let slow = record["stages"].as_array().unwrap().iter().find(|s| s["instance"] == "slow").unwrap();
    assert_eq!(slow["failure"]["kind"], "no_result", "{record}");

    // `status` says where the failed task ran.
    let status = ws.pipeline(&["status"]);
    assert!(status.stdout.contains(&format!("slurm job {job}: CANCELLED")), "{}", status.stdout);

    let rerun = ws.pipeline(&["run"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("2 ran, 1 fresh"), "{}", rerun.stderr);
    assert_eq!(artifacts_of(&ws)["last"]["three.txt"], b"two\n");
}

/// A job requeued (what preemption does) runs again and continues from the resumable state its
/// first attempt kept in the workspace: the stage counts its attempts in `$PIPELINE_RESUME`,
/// and only the first one waits long enough to be requeued.
#[test]
fn a_requeued_job_continues_from_its_first_attempts_state() {
    let cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"remote: {remote}
executor: {{kind: slurm, poll_seconds: 0.2}}
stages:
  first:
    run: "echo one > $PIPELINE_OUT/one.txt"
  slow:
    run: "n=$(cat $PIPELINE_RESUME/attempts 2>/dev/null || echo 0); echo $((n+1)) > $PIPELINE_RESUME/attempts; echo started > started.txt; test $n -ge 1 || sleep 60; echo attempt $((n+1)) > $PIPELINE_OUT/two.txt"
    needs: [first]
"#,
        remote = remote.path().display()
    );
    let ws = Workspace::with_env(&yaml, cluster.env());
    let (mut child, rx, mut lines, job) = run_until_slow_is_submitted(&ws);
    wait_until_slow_started(&ws, &job);
    let status = cluster.command("scontrol").args(["requeue", &job]).status().unwrap();
    assert!(status.success(), "scontrol requeue {job}");
    // Slurm holds a requeued batch job back for a while (its begin time moves ahead); make it
    // eligible now, as an operator would, so the test does not wait for that.
    let started = Instant::now();
    while cluster.job_state(&job) != "PENDING" {
        assert!(started.elapsed() < Duration::from_secs(30), "job {job} never went back to PENDING: {}", cluster.job_state(&job));
        std::thread::sleep(Duration::from_millis(100));
    }
    let eligible = cluster.command("scontrol").args(["update", &format!("JobId={job}"), "StartTime=now"]).status().unwrap();
    assert!(eligible.success(), "scontrol update JobId={job} StartTime=now");
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    let job_log = std::fs::read_to_string(ws.store().join("slurm-logs").join(format!("{job}.log"))).unwrap_or_default();
    let stderr = format!("{}\n--- job log\n{job_log}\n{}", lines.join("\n"), cluster.logs("requeue"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("slow: done in slurm job {job} (COMPLETED)")), "{stderr}");
    assert_eq!(artifacts_of(&ws)["slow"]["two.txt"], b"attempt 2\n", "the second attempt took up the first one's state");
    let log = std::fs::read_to_string(ws.store().join("slurm-logs").join(format!("{job}.log"))).unwrap();
    // The first attempt's own last words, or (when Slurm killed it before it could write them, as
    // under load) slurmstepd's line about the requeue: either way the log keeps that attempt.
    assert!(log.contains("exec-task: interrupted") || log.contains("DUE TO JOB REQUEUE"), "the log keeps the first attempt too: {log}");
    let left: Vec<_> = std::fs::read_dir(ws.store().join("resume")).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the state is removed once the result is published: {left:?}");
}

/// slurmd dies while a job runs: the job's step finishes and pushes its result, but Slurm holds
/// it in COMPLETING, so the run does not count the task done (job ended AND manifest) until
/// slurmd is back; then the same run finishes and a rerun has nothing to do.
#[test]
fn slurmd_killed_mid_run_then_restarted_and_the_run_finishes() {
    let mut cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    let ws = Workspace::with_env(&slow_yaml(remote.path()), cluster.env());
    let (mut child, rx, mut lines, job) = run_until_slow_is_submitted(&ws);
    wait_until_slow_started(&ws, &job);
    cluster.kill_slurmd();
    // The job's step still finishes and pushes (first + slow in the remote).
    let deadline = Instant::now() + Duration::from_secs(30);
    while remote_keys(remote.path(), "manifests").len() < 2 {
        assert!(Instant::now() < deadline, "the job never pushed its result");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cluster.job_state(&job), "COMPLETING");
    assert!(child.try_wait().unwrap().is_none(), "the run ended while its job was still COMPLETING");

    cluster.start_slurmd();
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    let stderr = lines.join("\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("slow: done in slurm job {job} (COMPLETED)")), "{stderr}");
    assert_eq!(artifacts_of(&ws)["last"]["three.txt"], b"two\n");
    let again = ws.pipeline(&["run"]);
    assert!(again.stderr.contains("0 ran, 3 fresh"), "{}", again.stderr);
}

/// The controller restarts while a job runs: the run says it does not answer, keeps waiting,
/// and finishes once it is back (the controller recovers its jobs from its state).
#[test]
fn controller_restart_mid_run_and_the_run_finishes() {
    let mut cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    let ws = Workspace::with_env(&slow_yaml(remote.path()), cluster.env());
    let (mut child, rx, mut lines, job) = run_until_slow_is_submitted(&ws);
    read_until(&rx, &format!("slow: slurm job {job} RUNNING"), &mut lines);
    cluster.stop_slurmctld();
    read_until(&rx, "slurm: the controller does not answer", &mut lines);
    assert!(child.try_wait().unwrap().is_none());
    cluster.start_slurmctld();
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    let stderr = lines.join("\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("slurm: the controller answers again"), "{stderr}");
    assert!(stderr.contains(&format!("slow: done in slurm job {job} (COMPLETED)")), "{stderr}");
    assert_eq!(artifacts_of(&ws)["last"]["three.txt"], b"two\n");
}

#[test]
fn ctrl_c_cancels_the_runs_jobs() {
    let cluster = SlurmCluster::start();
    let remote = tempfile::tempdir().unwrap();
    let ws = Workspace::with_env(&slow_yaml(remote.path()), cluster.env());
    let (mut child, rx, mut lines, job) = run_until_slow_is_submitted(&ws);
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let code = child.wait().unwrap().code();
    lines.extend(rx.iter());
    assert_eq!(code, Some(130), "{}", lines.join("\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.job_state(&job) != "CANCELLED" {
        assert!(Instant::now() < deadline, "job {job} is {}", cluster.job_state(&job));
        std::thread::sleep(Duration::from_millis(50));
    }
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
fn slurm_without_a_remote_is_a_config_error() {
    let err = run_error("executor:\n  kind: slurm\nstages:\n  a:\n    run: echo\n", &["run"]);
    assert!(err.contains("pipeline.yaml:2:3: the slurm executor needs a remote cache"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let err = run_error("stages:\n  a:\n    run: echo\n", &["run", "--executor", "slurm"]);
    assert!(err.contains("pipeline.yaml: the slurm executor needs a remote cache"), "{err}");
}

#[test]
fn slurm_without_sbatch_fails_before_computing_anything() {
    let remote = tempfile::tempdir().unwrap();
    let yaml = format!("remote: {}\nexecutor: {{kind: slurm}}\nstages:\n  a:\n    run: \"echo > counts/a\"\n", remote.path().display());
    let ws = Workspace::with_env(&yaml, vec![("PATH".into(), "/nonexistent".into())]);
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the slurm executor cannot run `sbatch`"), "{}", out.stderr);
    assert_eq!(ws.count("a"), 0);
}

#[test]
fn executor_section_errors_name_the_place() {
    let stages = "stages:\n  train:\n    run: echo\n";
    let err = run_error(&format!("executor:\n  kind: slurm\n  partitoin: gpu\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:3:3: executor: unknown field `partitoin`"), "{err}");
    let err = run_error(&format!("executor:\n  kind: slurm\n  resources:\n    trian: {{gpus: 1}}\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:5: `resources` names `trian`, which is neither `default` nor a stage"), "{err}");
    assert!(err.contains("did you mean `train`?"), "{err}");
    let err = run_error(&format!("executor:\n  kind: slurm\n  resources:\n    train: {{mem: 4X}}\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:13: bad memory size `4X` for `train`"), "{err}");
    let err = run_error(&format!("executor:\n  kind: slurm\n  resources:\n    default: {{gpu: 1}}\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:4:") && err.contains("unknown field `gpu`"), "{err}");
    let err = run_error(&format!("executor:\n  kind: kubernetes\n{stages}"), &["status"]);
    assert!(err.contains("pipeline.yaml:2:3: the kubernetes executor needs `image:` in the `executor:` section"), "{err}");
    // The kubernetes executor itself is tested in tests/kubernetes.rs (cargo feature `kubernetes`).
    let err = run_error(stages, &["run", "--executor", "kubernetes"]);
    if cfg!(feature = "kubernetes") {
        assert!(err.contains("pipeline.yaml: the kubernetes executor needs a remote cache"), "{err}");
    } else {
        assert!(err.contains("this binary was built without the `kubernetes` feature (cargo build --features kubernetes)"), "{err}");
    }
}

/// The synthetic pipeline with the probing of `scan` as a job array of 2 shards, `extract` as one
/// of 4, and the training matrix as jobs of their own, from a directory remote.
fn learning_yaml(remote: &Path, sbatch_args: &str) -> String {
    format!(
        r#"remote: {remote}
executor:
  kind: slurm
  poll_seconds: 0.2
  sbatch_args: [{sbatch_args}]
  resources:
    default: {{cpus: 1, mem: 500M, time: "10"}}
    scan: {{shards: 2}}
    extract: {{shards: 4}}
{dataset}  train:
    uses: train
    needs: [extract, split]
    matrix:
      arch: [early_fusion_cnn, late_fusion_resnet18]
    with: {{epochs: 1, batch_size: 2, device: cpu, threads: 1}}
"#,
        remote = remote.display(),
        dataset = common::tiny_dataset(common::SMALL_SYNTH),
    )
}

/// `history.csv` without its wall-clock column (with `train_seconds` in `model.json`, the only
/// thing two trainings may not share).
fn without_seconds(csv: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(csv);
    text.lines().map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_owned()).collect()
}

/// Issue 7's test: shards of `extract` as one job array, a task of it cancelled while queued
/// (the run fails, the other shards are kept, nothing is published for extract), then the rerun
/// computes only the missing shard, merges, trains both architectures as jobs, and every
/// result is byte-identical to a local run.
#[test]
fn extract_as_a_job_array_and_training_as_jobs_give_a_local_runs_bytes() {
    let cluster = SlurmCluster::start();
    let (local_remote, remote) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let local = Workspace::new(&learning_yaml(local_remote.path(), ""));
    let out = local.pipeline(&["run", "--executor", "local"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let ws = Workspace::with_env(&learning_yaml(remote.path(), ""), cluster.env());
    let out = ws.pipeline(&["run", "scan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("scan: submitted as slurm array job") && out.stderr.contains("scan: done in 2 shards"), "{}", out.stderr);

    // Every job is now submitted held, so a task of the array can be cancelled before it runs.
    ws.write("pipeline.yaml", &learning_yaml(remote.path(), "--hold"));
    let (mut child, rx) = ws.spawn_run(&["run"]);
    let mut lines = Vec::new();
    let line = read_until(&rx, "extract: submitted as slurm array job", &mut lines);
    assert!(line.contains("(4 tasks for shards 1, 2, 3, 4 of 4) (cpus 1, mem 500M, time 10)"), "{line}");
    let array = line.split("array job ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let cancel = cluster.command("scancel").arg(format!("{array}_2")).status().unwrap();
    assert!(cancel.success());
    assert!(cluster.command("scontrol").args(["release", &array]).status().unwrap().success());
    let status = child.wait().unwrap();
    lines.extend(rx.iter());
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("1 of 4 shards failed (3 finished and are kept for the rerun)"), "{text}");
    assert!(text.contains(&format!("extract[shard 3/4]: slurm job {array}_2 ended UNKNOWN (no longer known to the controller")), "{text}");
    for i in [1, 2, 4] {
        assert!(text.contains(&format!("extract[shard {i}/4]: done in slurm job {array}_{}", i - 1)), "{text}");
    }
    assert!(text.contains("train[arch=early_fusion_cnn]: not run"), "{text}");
    let published = artifacts_of(&ws);
    assert!(!published.contains_key("extract"), "nothing may be published for a failed merge");
    assert_eq!(published.keys().filter(|k| k.starts_with("extract[shard")).count(), 3, "{:?}", published.keys());
    let status = ws.pipeline(&["status"]);
    assert!(status.stdout.contains(&format!("slurm job {array}: array of 3 tasks: 3 COMPLETED, log ")), "{}", status.stdout);
    let pushed = |ws_remote: &Path| remote_keys(ws_remote, "manifests").len();
    assert_eq!(pushed(remote.path()), 2 + 2 + 3, "synth, scan, its two shards and three of extract's");

    // The rerun (no longer held) computes the missing shard only.
    ws.write("pipeline.yaml", &learning_yaml(remote.path(), ""));
    let out = ws.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("extract: split into 4 shards (3 done by an earlier run)"), "{}", out.stderr);
    assert!(out.stderr.contains("(1 tasks for shards 3 of 4)"), "{}", out.stderr);
    assert!(out.stderr.contains("extract: done in 4 shards (slurm job "), "{}", out.stderr);
    let jobs = submitted(&out.stderr);
    for name in ["split", "train[arch=early_fusion_cnn]", "train[arch=late_fusion_resnet18]"] {
        assert!(jobs.contains_key(name), "{name} must run as a job of its own:\n{}", out.stderr);
        assert_eq!(cluster.job_state(&jobs[name]), "COMPLETED");
    }

    let (here, there) = (artifacts_of(&ws), artifacts_of(&local));
    for (instance, files) in &there {
        let ours = &here[instance];
        assert_eq!(ours.keys().collect::<Vec<_>>(), files.keys().collect::<Vec<_>>(), "{instance}: the files differ");
        for (path, bytes) in files {
            if path == "history.csv" {
                assert_eq!(without_seconds(&ours[path]), without_seconds(bytes), "{instance}/{path}");
            } else if path == "model.json" {
                let card = |b: &[u8]| {
                    let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                    v.as_object_mut().unwrap().remove("train_seconds");
                    v
                };
                assert_eq!(card(&ours[path]), card(bytes), "{instance}/{path}");
            } else if path != "history.parquet" {
                assert!(ours[path] == *bytes, "{instance}/{path} differs from a local run");
            }
        }
    }
    assert!(here["train[arch=late_fusion_resnet18]"].contains_key("model.safetensors"));
}
