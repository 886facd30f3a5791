//! A task handed to a cluster job, and what the job does with it (`pipeline exec-task`).
//!
//! The coordinator writes a [`TaskSpec`] to the remote under `tasks/<key>.json`: the instance,
//! its full fingerprint (action, params, upstream content hashes, deps, raw inputs) and the keys
//! of its upstream artifacts. The worker, in the same working directory with the same
//! `pipeline.yaml` but its own private store:
//!
//! 1. reads the spec and checks it hashes to the key it was asked for;
//! 2. stops at once if the remote already has the result (a duplicated or retried task),
//!    unless the task was forced;
//! 3. pulls the upstream artifacts from the remote (verified, see [`crate::remote`]);
//! 4. recomputes the fingerprint from its own checkout and refuses to run when the key differs
//!    (a worker with other code or data must not publish under the coordinator's key);
//! 5. computes the instance like the local executor does, and pushes the result: blobs first,
//!    the manifest last, so the coordinator never sees a partial result.
//!
//! With `--shard I/N` (one task of a job array) the worker computes only that shard of the
//! instance's spec and pushes it under the shard's key; the coordinator merges the shards.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::local::Local;
use stage_api::Shard;

use super::{part_name, Context, Executor, Part, RunError, Task};
use crate::config::Plan;
use crate::dirty::explain;
use crate::filehash::HashMemo;
use crate::fingerprint::{compute, Fingerprint, Key};
use crate::progress::Reporter;
use crate::remote::Remote;
use crate::resume::ResumeStates;
use crate::store::{Manifest, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    pub key: String,
    pub instance: String,
    pub fingerprint: Fingerprint,
    /// In the order of `fingerprint.upstream`.
    pub upstream: Vec<TaskInput>,
    /// `--force`: compute even when the remote has the result (and replace it there).
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInput {
    pub instance: String,
    pub key: String,
}

impl TaskSpec {
    pub fn new(plan: &Plan, task: &Task<'_>) -> Self {
        TaskSpec {
            key: task.key.as_str().to_owned(),
            instance: plan.instances[task.index].name.clone(),
            fingerprint: task.fingerprint.clone(),
            upstream: task
                .upstream
                .iter()
                .map(|(n, m)| TaskInput { instance: plan.instances[*n].name.clone(), key: m.key.clone() })
                .collect(),
            force: task.force,
        }
    }
}

/// Why a cluster job could not compute its task; the text is the job's last log line.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task spec on the remote is damaged, or does not fit this key.
    #[error("task spec for key {key} {problem}")]
    Spec { key: String, problem: String },
    /// Reading the spec or pulling an input from the remote failed.
    #[error("{what}: {source}")]
    Remote { what: String, source: crate::remote::RemoteError },
    /// This worker's pipeline file is not the coordinator's.
    #[error("{}: has no instance `{instance}` (the worker must see the coordinator's pipeline file)", config_file.display())]
    NoInstance { config_file: std::path::PathBuf, instance: String },
    #[error("{name}: stage `{stage}` cannot be split into shards")]
    NotShardable { name: String, stage: String },
    #[error("cannot open the worker store {}: {source}", dir.display())]
    Store { dir: std::path::PathBuf, source: std::io::Error },
    #[error("input {instance} pulled from the remote is not the one the task was planned with")]
    InputChanged { instance: String },
    #[error("{name}: {source}")]
    Key { name: String, source: crate::fingerprint::KeyError },
    #[error("{name}: this worker's checkout gives another key than the coordinator's ({why}); refusing to compute it here")]
    OtherKey { name: String, why: String },
    #[error("{name}: FAILED: {source}")]
    Failed { name: String, source: RunError },
    #[error("{name}: computed, but the push failed: {source}")]
    Push { name: String, source: crate::remote::RemoteError },
}

/// `pipeline exec-task KEY`: computes the task in the private store `store_dir` and pushes the
/// result. Returns the line to print.
pub fn exec_task(
    plan: &Plan,
    remote: &Remote,
    key: &Key,
    shard: Option<Shard>,
    store_dir: &Path,
    reporter: &Reporter,
) -> Result<String, TaskError> {
    let bad_spec = |problem: String| TaskError::Spec { key: key.as_str().to_owned(), problem };
    let bytes = remote.get_task(key).map_err(|source| TaskError::Remote { what: "reading the task spec".into(), source })?;
    let spec: TaskSpec = serde_json::from_slice(&bytes).map_err(|e| bad_spec(format!("is invalid: {e}")))?;
    if spec.key != key.as_str() || spec.fingerprint.key() != *key {
        return Err(bad_spec("does not hash to that key (damaged or tampered with)".into()));
    }
    let (part, result_key) = match shard {
        None => (Part::Whole, key.clone()),
        Some(s) => (Part::Shard(s), key.shard(s.index, s.count)),
    };
    let name = part_name(&spec.instance, part);
    let name = name.as_str();
    if !spec.force && remote.has(&result_key) {
        return Ok(format!("{name}: already in the remote (a duplicated task), nothing to do"));
    }
    let index = find(plan, &spec.instance)?;
    if shard.is_some() && !plan.instances[index].action.shardable() {
        return Err(TaskError::NotShardable { name: name.to_owned(), stage: plan.instances[index].stage.clone() });
    }

    let store = Store::open(store_dir).map_err(|source| TaskError::Store { dir: store_dir.to_owned(), source })?;

    if spec.upstream.len() != spec.fingerprint.upstream.len() {
        return Err(bad_spec(format!(
            "lists {} upstream keys for {} upstream inputs",
            spec.upstream.len(),
            spec.fingerprint.upstream.len()
        )));
    }
    let mut upstream: Vec<(usize, Manifest)> = Vec::new();
    for (input, expected) in spec.upstream.iter().zip(&spec.fingerprint.upstream) {
        let up_key = Key::parse(&input.key).ok_or_else(|| bad_spec(format!("names a bad upstream key `{}`", input.key)))?;
        let manifest = match store.lookup(&up_key) {
            Some(m) => m,
            None => remote
                .pull(&store, &up_key, &input.instance)
                .map_err(|source| TaskError::Remote { what: format!("cannot pull input {}", input.instance), source })?,
        };
        if manifest.content_hash != expected.content_hash {
            return Err(TaskError::InputChanged { instance: input.instance.clone() });
        }
        upstream.push((find(plan, &input.instance)?, manifest));
    }

    let memo = HashMemo::open(store.memo_file());
    let instance = &plan.instances[index];
    let here = compute(instance, spec.fingerprint.upstream.clone(), &plan.base_dir, &memo)
        .map_err(|source| TaskError::Key { name: name.to_owned(), source })?;
    if here.key() != *key {
        let why: Vec<String> = explain(Some(&spec.fingerprint), &here).iter().map(ToString::to_string).collect();
        return Err(TaskError::OtherKey { name: name.to_owned(), why: why.join("; ") });
    }

    // What the job was given, not the whole node (a Kubernetes Job passes PIPELINE_TASK_CPUS).
    let threads = ["PIPELINE_TASK_CPUS", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The remote is lent for the artifacts an upstream table points into (see `artifact_paths`).
    // Where PIPELINE_RESUME_DIR says (the Slurm executor passes the workspace's folder), so a
    // requeued job continues from what its first attempt left; else in the scratch store: a job
    // never writes the checkout's store.
    let resume = ResumeStates::for_store_dir(store_dir);
    let ctx = Context { plan, store: &store, resume: &resume, remote: Some(remote), reporter };
    let task = Task { index, key: &result_key, fingerprint: &here, upstream: &upstream, force: false, threads, part };
    let done = Local.run(&ctx, &task).map_err(|source| TaskError::Failed { name: name.to_owned(), source })?;
    let bytes = remote.push(&store, &result_key).map_err(|source| TaskError::Push { name: name.to_owned(), source })?;
    let summary = if done.summary.is_empty() { String::new() } else { format!(": {}", done.summary) };
    Ok(format!("{name}: computed and pushed ({} files, {bytes} bytes uploaded){summary}", done.manifest.files.len()))
}

fn find(plan: &Plan, instance: &str) -> Result<usize, TaskError> {
    plan.instances
        .iter()
        .position(|i| i.name == instance)
        .ok_or_else(|| TaskError::NoInstance { config_file: plan.config_file.clone(), instance: instance.to_owned() })
}
