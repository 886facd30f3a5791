//! Where a stale stage instance is computed: the [`Executor`] interface and its backends.
//!
//! The runner decides *what* to compute (keys, freshness, locks, order); an executor decides
//! *where*. Every backend ends the same way: the result is published in the local store, so
//! the runner and downstream instances never know where it was computed.
//!
//! - [`local::Local`] (the default): in this process, in a private work directory.
//! - [`slurm::Slurm`]: one Slurm job per task. The task's spec goes to the remote cache, the
//!   job runs `pipeline exec-task` ([`task`]), which pulls its inputs from the remote, computes
//!   and pushes the result; the coordinator then pulls it. No shared filesystem is assumed for
//!   artifacts, only the same `pipeline.yaml` and working directory.
//! - [`kubernetes::Kubernetes`] (cargo feature `kubernetes`): one Kubernetes Job per task, the
//!   same protocol as slurm through the remote; the Job's container image holds the binary and
//!   the checkout.
//!
//! The runner runs each task on its own thread (up to `-j` at once) and calls [`Executor::run`],
//! which blocks until the task ended. The batch backends share their core ([`batch`]: the run's
//! jobs polled together, once per interval for all of them, a scheduler that does not answer,
//! the job records `status` reads); each says only how to query and cancel its scheduler and
//! where the logs are.

pub mod batch;
pub mod error;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod local;
pub mod slurm;
pub mod task;

use stage_api::Shard;

use crate::config::Plan;
use crate::fingerprint::{Fingerprint, Key};
use crate::progress::Reporter;
use crate::remote::{Remote, RemoteError};
use crate::resume::ResumeStates;
use crate::store::{Manifest, Store};

pub use error::RunError;

/// Choosing the kubernetes executor in a binary built without it.
pub const NO_KUBERNETES: &str = "this binary was built without the `kubernetes` feature (cargo build --features kubernetes)";

/// For `pipeline status`: where the last cluster job for `key` ran and its state now, whichever
/// backend submitted it (`slurm job 12: RUNNING, log ...`, `kubernetes job NAME in namespace
/// NS: Failed (...)`). `None` when no job was submitted for this key.
pub fn job_note(store: &Store, key: &Key) -> Option<String> {
    #[cfg(feature = "kubernetes")]
    if let Some(note) = kubernetes::job_note(store, key) {
        return Some(note);
    }
    slurm::job_note(store, key)
}

/// Lets one caller through once per poll interval, so that a batch backend queries its
/// scheduler once per interval for the whole run, however many task threads wait.
#[derive(Default)]
pub struct PollClock(std::sync::Mutex<Option<std::time::Instant>>);

impl PollClock {
    /// Runs `poll` when `interval_s` has passed since the last one and no other thread is polling.
    pub fn run_if_due(&self, interval_s: f64, poll: impl FnOnce()) {
        let Ok(mut last) = self.0.try_lock() else { return };
        if last.is_some_and(|t| t.elapsed().as_secs_f64() < interval_s) {
            return;
        }
        *last = Some(std::time::Instant::now());
        poll();
    }
}

/// Which part of an instance's work a task computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// All of it: the usual case.
    Whole,
    /// One shard of a data-parallel stage ([`stage_api::Stage::run_shard`]), published under
    /// the instance key's [`Key::shard`].
    Shard(Shard),
    /// The merge of the instance's `count` shards, all published in the local store already.
    Merge { count: usize },
}

/// The name a part's artifact is published and reported under: `extract`,
/// `extract[shard 2/4]`.
pub fn part_name(instance: &str, part: Part) -> String {
    match part {
        Part::Shard(s) => format!("{instance}[shard {}/{}]", s.index + 1, s.count),
        Part::Whole | Part::Merge { .. } => instance.to_owned(),
    }
}

/// One stage instance (or one part of it) to compute.
pub struct Task<'a> {
    /// Index into [`Plan::instances`].
    pub index: usize,
    /// Where the result is published: the instance key, or a shard's key.
    pub key: &'a Key,
    pub fingerprint: &'a Fingerprint,
    /// Upstream instances (indices) with their manifests, published in the local store.
    pub upstream: &'a [(usize, Manifest)],
    /// Replace an existing local artifact (`--force`).
    pub force: bool,
    /// Threads a local in-process stage may use.
    pub threads: usize,
    pub part: Part,
}

/// What the runner lends an executor.
pub struct Context<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    /// Where attempts at a key keep their resumable state (the workspace's, also in a job).
    pub resume: &'a ResumeStates,
    pub remote: Option<&'a Remote>,
    pub reporter: &'a Reporter,
}

/// A computed task, published in the local store.
pub struct Done {
    pub manifest: Manifest,
    pub summary: String,
    /// Where it ran, for the run output (`slurm job 12 (COMPLETED)`); empty for local.
    pub place: String,
}

/// What a batch backend does before submitting `task`: writes its spec to the remote under
/// `task.key`, where the job's `exec-task` reads it. Returns the remote.
pub fn put_spec<'a>(ctx: &Context<'a>, task: &Task<'_>, backend: &str) -> Result<&'a Remote, RunError> {
    let remote = ctx.remote.ok_or_else(|| RunError::submit(format!("the {backend} executor needs a remote (`remote:` or --remote)")))?;
    let spec = serde_json::to_vec_pretty(&task::TaskSpec::new(ctx.plan, task)).map_err(|e| RunError::submit(e.to_string()))?;
    remote.put_task(task.key, spec).map_err(|e| RunError::submit(format!("cannot write the task spec to the remote: {e}")))?;
    Ok(remote)
}

/// What a batch backend does once a job published `key`: pulls it (verified) into the local
/// store, replacing the local copy when the task was forced (the caller holds the instance
/// key's lock).
pub fn pull_result(ctx: &Context<'_>, remote: &Remote, key: &Key, name: &str, force: bool) -> Result<Manifest, RemoteError> {
    if force {
        ctx.store.remove(key).map_err(|source| RemoteError::Replace { key: key.as_str().to_owned(), source })?;
    }
    remote.pull(ctx.store, key, name)
}

pub trait Executor: Send + Sync {
    /// `local`, `slurm`, `kubernetes`.
    fn name(&self) -> &'static str;

    /// Computes `task` and publishes its result in the local store; blocks until then.
    /// `Err` is the message shown to the user (it says where the task ran and where its log is).
    fn run(&self, ctx: &Context<'_>, task: &Task<'_>) -> Result<Done, RunError>;

    /// Computes `shards` of the instance of `task` (a [`Part::Whole`] task), each published in
    /// the local store under its shard key; one result per shard, in order. By default one
    /// after another through [`Executor::run`]; a batch backend submits them as one job array.
    fn run_shards(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Vec<Result<Done, RunError>> {
        shards
            .iter()
            .map(|&shard| {
                let key = task.key.shard(shard.index, shard.count);
                self.run(ctx, &Task { key: &key, part: Part::Shard(shard), ..*task })
            })
            .collect()
    }

    /// Whether results are already in the remote when `run` returns (so `--push` has nothing
    /// left to do).
    fn results_in_remote(&self) -> bool {
        false
    }

    /// Whether tasks run on this machine's cores (so the runner packs them by their `cpus`).
    fn uses_local_cpus(&self) -> bool {
        true
    }

    /// Stops every task submitted so far (Ctrl-C). Best effort.
    fn cancel_all(&self) {}
}
