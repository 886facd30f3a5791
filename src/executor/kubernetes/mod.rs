//! The Kubernetes executor (cargo feature `kubernetes`): one batch/v1 Job per task, through the
//! API server with the `kube` crate.
//!
//! - submit: the task's spec is written to the remote, then a Job named
//!   `pipeline-<run id>-<key prefix>` (labels `pipeline.run-id`, `pipeline.key`) whose one
//!   container runs `pipeline --config FILE --remote URL exec-task KEY` in the `image`, in
//!   `workdir`, which stands for the coordinator's working directory (see [`spec`]);
//! - poll: ONE list call per interval for the whole run (label selector on the run id); the
//!   Job's state comes from its status conditions (`Complete`, `Failed`) and pod counts;
//! - cancel: a delete-collection on the run's label, propagation `Background` (Ctrl-C).
//!
//! A task is done only when its Job is `Complete` AND its manifest is in the remote; the
//! result is then pulled (verified) into the local store. Anything else is a failure whose
//! message names the Job, its namespace, the condition's reason and message, and how to read
//! its log (`kubectl logs job/NAME -n NS`).
//!
//! The shards of a data-parallel instance go as ONE Indexed Job (`completionMode: Indexed`,
//! one completion index per shard, `exec-task KEY --shard $(JOB_COMPLETION_INDEX)/N`, no index
//! retried, a failed index does not stop the others). It has every index, also those of
//! shards an earlier run finished: their pods find the result in the remote and stop at once.
//!
//! The client is configured like `kubectl`: `KUBECONFIG` or `~/.kube/config`, else the pod's
//! service account when the coordinator itself runs in the cluster.

pub mod spec;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use self::spec::{job_name, job_state, label_value, JobSpec, JobState, RUN_LABEL};
use stage_api::Shard;

use super::batch::{BatchBackend, JobBoard, JobRecord, JobStatus, SchedulerError, WaitingJob, UNREACHABLE_LIMIT};
use super::{part_name, pull_result, put_spec, Context, Done, Part, RunError, Task};
use crate::config::{ExecutorConfig, Plan};
use crate::fingerprint::Key;
use crate::progress::Reporter;
use crate::store::Store;

/// No API call waits longer than this for an answer (a hung server counts as unreachable).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that tells the worker how many threads it was given.
pub const CPUS_ENV: &str = "PIPELINE_TASK_CPUS";

pub struct Kubernetes {
    config: ExecutorConfig,
    run_id: String,
    namespace: String,
    image: String,
    workdir: String,
    /// `--config` for the worker: the pipeline file as seen from the coordinator's working
    /// directory, which is `workdir` in the container.
    config_arg: String,
    remote_url: String,
    client: kube::Client,
    /// The client's I/O runs here; task threads `block_on` it.
    runtime: tokio::runtime::Runtime,
    /// The run's Jobs (by name) and their states.
    board: JobBoard<JobState>,
}

impl JobStatus for JobState {
    fn ended(&self) -> bool {
        JobState::ended(self)
    }

    fn unreachable(error: &str) -> Self {
        JobState::Failed { reason: format!("API server unreachable for {} s", UNREACHABLE_LIMIT.as_secs()), message: error.to_owned() }
    }
}

/// A client for the cluster the kubeconfig (or the pod's service account) points at, its
/// runtime, and the namespace it defaults to.
fn connect() -> Result<(kube::Client, tokio::runtime::Runtime, String), SchedulerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kubernetes-client")
        .enable_all()
        .build()
        .map_err(|e| SchedulerError::client("cannot start the kubernetes client's runtime", e))?;
    let mut config = runtime.block_on(kube::Config::infer()).map_err(SchedulerError::NoCluster)?;
    config.read_timeout = Some(READ_TIMEOUT);
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let namespace = config.default_namespace.clone();
    let client = {
        // The client spawns its connection tasks on the runtime it is built in.
        let _inside = runtime.enter();
        kube::Client::try_from(config).map_err(|e| SchedulerError::client("cannot set up the Kubernetes client", e))?
    };
    Ok((client, runtime, namespace))
}

impl Kubernetes {
    /// Connects to the cluster and checks that the API server answers (one list call), so a
    /// run fails once, before anything is computed, rather than once per task.
    pub fn new(config: ExecutorConfig, run_id: &str, remote_url: &str, plan: &Plan) -> Result<Self, SchedulerError> {
        let image = config.image.clone().ok_or(SchedulerError::Config(crate::config::executor::KUBERNETES_NEEDS_IMAGE))?;
        let (client, runtime, default_namespace) = connect()?;
        let namespace = config.namespace.clone().unwrap_or(default_namespace);
        let cwd = std::env::current_dir().map_err(|e| SchedulerError::client("cannot read the working directory", e))?;
        let workdir = config.workdir.clone().unwrap_or_else(|| cwd.display().to_string());
        let config_arg = worker_config_arg(&plan.config_file, &cwd);
        let this = Self {
            board: JobBoard::new(config.poll_seconds),
            config,
            run_id: run_id.to_owned(),
            namespace,
            image,
            workdir,
            config_arg,
            remote_url: remote_url.to_owned(),
            client,
            runtime,
        };
        this.list().map_err(|e| SchedulerError::client("the Kubernetes API server does not answer", e))?;
        Ok(this)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn selector(&self) -> ListParams {
        ListParams::default().labels(&format!("{RUN_LABEL}={}", label_value(&self.run_id)))
    }

    /// Name -> Job of every Job of this run (one list call).
    fn list(&self) -> Result<BTreeMap<String, Job>, SchedulerError> {
        let api = self.api();
        let list = self.runtime.block_on(api.list(&self.selector())).map_err(|e| SchedulerError::client("listing the run's Jobs", e))?;
        Ok(list.items.into_iter().filter_map(|job| Some((job.metadata.name.clone()?, job))).collect())
    }

    /// The worker's command line: the same binary, found on the image's PATH; for an Indexed
    /// Job of `indexes` shards, the shard is the pod's completion index.
    fn command(&self, key: &Key, indexes: Option<usize>) -> Vec<String> {
        let mut command: Vec<String> =
            ["pipeline", "--config", &self.config_arg, "--remote", &self.remote_url, "exec-task", key.as_str()].map(str::to_owned).to_vec();
        if let Some(n) = indexes {
            command.extend(["--shard".to_owned(), format!("$({})/{n}", spec::COMPLETION_INDEX_ENV)]);
        }
        command
    }

    /// What the worker's container gets: the coordinator's `PIPELINE_*` variables (as a Slurm
    /// job inherits them), and the CPUs it was given (so it uses that many threads).
    fn env(&self, stage: &str) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("PIPELINE_")).collect();
        if let Some(cpus) = self.config.resources_for(stage).cpus {
            env.insert(CPUS_ENV.into(), cpus.to_string());
        }
        env
    }

    fn submit(&self, stage: &str, instance: &str, key: &Key, indexes: Option<usize>) -> Result<String, RunError> {
        let resources = self.config.resources_for(stage);
        let job = JobSpec {
            run_id: &self.run_id,
            key,
            instance,
            image: &self.image,
            workdir: &self.workdir,
            command: self.command(key, indexes),
            env: self.env(stage),
            resources: &resources,
            indexes,
        }
        .job()
        .map_err(|e| RunError::submit(e.to_string()))?;
        let name = job_name(&self.run_id, key);
        let api = self.api();
        self.runtime
            .block_on(api.create(&PostParams::default(), &job))
            .map_err(|e| RunError::submit(format!("the Kubernetes API server refused Job {name} in namespace {}: {e}", self.namespace)))?;
        self.board.follow(&name, instance, JobState::Active("Pending".into()));
        Ok(name)
    }

    /// Blocks until `job` ended.
    fn wait(&self, job: &str, reporter: &Reporter) -> JobState {
        self.board.wait(self, job, reporter)
    }

    /// Writes the task's spec to the remote, submits its Job and remembers it for `status`.
    fn start(&self, ctx: &Context<'_>, task: &Task<'_>, indexes: Option<usize>) -> Result<String, RunError> {
        put_spec(ctx, task, "kubernetes")?;
        let instance = &ctx.plan.instances[task.index];
        let job = self.submit(&instance.stage, &instance.name, task.key, indexes)?;
        let record = JobRecord::Kubernetes {
            instance: instance.name.clone(),
            job: job.clone(),
            namespace: self.namespace.clone(),
            run_id: self.run_id.clone(),
        };
        let _ = record.save(ctx.store, task.key);
        Ok(job)
    }

    /// The result published under `key`, pulled into the local store (replacing the local
    /// one when forced).
    fn collect(&self, ctx: &Context<'_>, key: &Key, name: &str, force: bool, place: String, job: &str) -> Result<Done, RunError> {
        let remote = ctx.remote.ok_or_else(|| RunError::submit("the kubernetes executor needs a remote (`remote:` or --remote)"))?;
        let manifest = pull_result(ctx, remote, key, name, force)
            .map_err(|e| RunError::collect(format!("{place} published a result that cannot be pulled: {e}; {}", self.logs_hint(job))))?;
        Ok(Done { summary: manifest.summary.clone(), manifest, place })
    }

    /// `shards` of the instance of `task` as one Indexed Job; one result per shard.
    fn run_indexed(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Result<Vec<Result<Done, RunError>>, RunError> {
        let Some(first) = shards.first() else { return Ok(Vec::new()) };
        let remote = ctx.remote.ok_or_else(|| RunError::submit("the kubernetes executor needs a remote (`remote:` or --remote)"))?;
        let instance = &ctx.plan.instances[task.index];
        let name = instance.name.as_str();
        let count = first.count;
        let job = self.start(ctx, task, Some(count))?;
        let wants = super::slurm::describe(&self.config.resources_for(&instance.stage));
        let ns = &self.namespace;
        ctx.reporter.line(&format!(
            "{name}: submitted as kubernetes indexed job {job} in namespace {ns} ({count} indexes, {} to compute){wants}",
            shards.len()
        ));
        let state = self.wait(&job, ctx.reporter);
        Ok(shards
            .iter()
            .map(|shard| {
                let key = task.key.shard(shard.index, shard.count);
                let index = shard.index;
                if !remote.has(&key) {
                    return Err(RunError::no_result(format!(
                        "kubernetes job {job} index {index} in namespace {ns} published no result (the Job ended {state}); read its log with `kubectl logs -n {ns} -l job-name={job},batch.kubernetes.io/job-completion-index={index}`"
                    )));
                }
                let place = format!("kubernetes job {job} index {index} ({state})");
                self.collect(ctx, &key, &part_name(name, Part::Shard(*shard)), task.force, place, &job)
            })
            .collect())
    }
}

impl BatchBackend for Kubernetes {
    type Status = JobState;
    const BACKEND: &'static str = "kubernetes";
    const SERVER: &'static str = "the API server";

    fn run_task(&self, ctx: &Context<'_>, task: &Task<'_>) -> Result<Done, RunError> {
        let remote = ctx.remote.ok_or_else(|| RunError::submit("the kubernetes executor needs a remote (`remote:` or --remote)"))?;
        let instance = &ctx.plan.instances[task.index];
        let name = instance.name.as_str();
        let job = self.start(ctx, task, None)?;
        let wants = super::slurm::describe(&self.config.resources_for(&instance.stage));
        ctx.reporter.line(&format!("{name}: submitted as kubernetes job {job} in namespace {}{wants}", self.namespace));

        let state = self.wait(&job, ctx.reporter);
        let place = format!("kubernetes job {job} ({state})");
        let ns = &self.namespace;
        match &state {
            JobState::Complete => {}
            JobState::Gone => {
                return Err(RunError::no_result(format!("kubernetes job {job} in namespace {ns} was deleted before it ended (by someone else, or by the cluster); no result was published")));
            }
            _ => {
                return Err(RunError::no_result(format!(
                    "kubernetes job {job} in namespace {ns} ended {state} without publishing a result; {}",
                    self.logs_hint(&job)
                )))
            }
        }
        if !remote.has(task.key) {
            return Err(RunError::no_result(format!(
                "kubernetes job {job} in namespace {ns} is Complete, but its result manifest is not in the remote, so the task is not done; {}",
                self.logs_hint(&job)
            )));
        }
        self.collect(ctx, task.key, name, task.force, place, &job)
    }

    fn run_shard_tasks(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Result<Vec<Result<Done, RunError>>, RunError> {
        self.run_indexed(ctx, task, shards)
    }

    /// One list call for every Job of the run.
    fn query(&self, waiting: &[WaitingJob]) -> Result<Vec<(String, JobState)>, SchedulerError> {
        let asked = Instant::now();
        let listed = self.list()?;
        Ok(waiting
            .iter()
            .filter_map(|job| match listed.get(&job.id) {
                Some(found) => Some((job.id.clone(), job_state(found))),
                // Created after the list was answered: not known yet, not gone.
                None if job.submitted >= asked => None,
                None => Some((job.id.clone(), JobState::Gone)),
            })
            .collect())
    }

    /// Deletes every Job of the run (their pods are stopped in the background).
    fn cancel_run(&self) {
        let api = self.api();
        if let Err(e) = self.runtime.block_on(api.delete_collection(&DeleteParams::background(), &self.selector())) {
            eprintln!(
                "kubernetes: cannot delete the run's jobs ({e}); delete them with `kubectl delete jobs -l {RUN_LABEL}={} -n {}`",
                label_value(&self.run_id),
                self.namespace
            );
        }
    }

    fn logs_hint(&self, job: &str) -> String {
        format!("read its log with `kubectl logs job/{job} -n {}`", self.namespace)
    }
}

/// The pipeline file for a worker whose working directory stands for `cwd`: relative to `cwd`
/// when it lies inside it, else the absolute path (the image must have it there too).
fn worker_config_arg(config_file: &Path, cwd: &Path) -> String {
    if config_file.is_relative() {
        return config_file.display().to_string();
    }
    let canonical = std::fs::canonicalize(config_file).unwrap_or_else(|_| config_file.to_owned());
    canonical.strip_prefix(cwd).unwrap_or(&canonical).display().to_string()
}

/// For `pipeline status`: the last Job submitted for `key` and what the API server says of it
/// now, e.g. `kubernetes job NAME in namespace NS: Running`. `None` when no Job was submitted
/// for this key.
pub fn job_note(store: &Store, key: &Key) -> Option<String> {
    let JobRecord::Kubernetes { job, namespace, .. } = JobRecord::load(store, key)? else { return None };
    let state = match connect() {
        Err(e) => format!("state unknown ({e})"),
        Ok((client, runtime, _)) => {
            let api: Api<Job> = Api::namespaced(client, &namespace);
            match runtime.block_on(api.get_opt(&job)) {
                Ok(Some(job)) => job_state(&job).to_string(),
                Ok(None) => "no longer known to the API server (deleted, or removed a day after it finished)".into(),
                Err(e) => format!("state unknown ({e})"),
            }
        }
    };
    Some(format!("kubernetes job {job} in namespace {namespace}: {state}; log: kubectl logs job/{job} -n {namespace}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_finds_the_pipeline_file_from_its_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(cwd.join("sub")).unwrap();
        std::fs::write(cwd.join("sub").join("p.yaml"), "").unwrap();
        assert_eq!(worker_config_arg(Path::new("configs/ravdess.yaml"), &cwd), "configs/ravdess.yaml");
        assert_eq!(worker_config_arg(&cwd.join("sub").join("p.yaml"), &cwd), "sub/p.yaml");
        assert_eq!(worker_config_arg(Path::new("/elsewhere/p.yaml"), &cwd), "/elsewhere/p.yaml");
    }
}
