//! Runs a [`Plan`]: decides per instance whether it is fresh or stale (and why), and executes
//! the stale ones in dependency order: up to `-j` at a time, or, without it and with the local
//! executor, as many as the stages' `cpus` let fit in this machine's cores ([`CpuBudget`]).
//!
//! Per instance, once all its needs are done:
//! 1. compute its fingerprint from the upstream content hashes, its params, deps and raw inputs;
//! 2. a complete artifact under its key → fresh, nothing to do;
//! 3. otherwise take the key's lock (waiting if another run holds it, then reusing what that
//!    run published), pull it if the remote has it, else hand it to the [`Executor`] (this
//!    process, or a Slurm job), which computes it and publishes it atomically.
//!
//! A failure stops new work (running instances finish) unless `keep_going`, in which case only
//! dependents of the failed instance are skipped.
//!
//! One job per module: `freshness` (fingerprints and why an instance is stale), `schedule`
//! (the run loop: order, parallelism, failures), `instance` (one stale instance: lock, pull,
//! executor, shards, run record), `sync` (pull, push and gc against the store and the remote).

mod freshness;
mod instance;
mod schedule;
mod sync;

pub use sync::TransferError;

/// Why the engine could not work out what to run (before any stage starts), or, for `gc`,
/// could not clean the store.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no stage or instance named `{name}` (stages: {stages})")]
    UnknownTarget { name: String, stages: String },
    #[error("--force: no stage or instance named `{name}`")]
    UnknownForced { name: String },
    #[error("{instance}: {source}")]
    Key { instance: String, source: crate::fingerprint::KeyError },
    #[error("PIPELINE_CPUS={value}: not a positive whole number of cores")]
    Cpus { value: String },
    #[error("{what}: {source}")]
    Store { what: &'static str, source: std::io::Error },
}

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use serde::Serialize;

use crate::config::{Instance, Plan};
use crate::cpu_budget::CpuBudget;
use crate::dirty::{explain, DirtyReason};
use stage_api::Shard;

use crate::executor::{local::Local, part_name, Context, Done, Executor, Part, RunError, Task};
use crate::filehash::HashMemo;
use crate::fingerprint::{compute, Fingerprint, Key, UpstreamInput};
use crate::lock::KeyLock;
use crate::progress::Reporter;
use crate::remote::{Remote, RemoteError};
use crate::resume::ResumeStates;
use crate::runlog::{RunRecord, StageRecord};
use crate::store::{InstanceState, Manifest, Store};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stage or instance names; empty = everything.
    pub targets: Vec<String>,
    pub force: Vec<String>,
    pub keep_going: bool,
    /// At most this many instances at once, whatever their `cpus` (`-j`). `None`: locally, as
    /// many as fit in the cores; on a cluster, every ready one.
    pub jobs: Option<usize>,
    /// The run's id (its record's name; Slurm jobs are named after it). Fresh when `None`.
    pub run_id: Option<String>,
}

/// What `status` says of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub stage: String,
    pub state: Freshness,
    pub reasons: Vec<DirtyReason>,
    #[serde(skip)]
    pub key: Option<Key>,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    Fresh,
    Stale,
}

/// An instance's name, and its published output directory and manifest when it is fresh.
pub type OutputDir = (String, Option<PathBuf>, Option<Manifest>);

pub struct Engine {
    pub plan: Plan,
    pub store: Store,
    memo: HashMemo,
    reporter: Reporter,
    /// The shared cache asked before computing a stale instance.
    pub remote: Option<Remote>,
    /// Upload what this run computed to the remote.
    pub push: bool,
    /// Where stale instances are computed.
    pub executor: Arc<dyn Executor>,
    /// What interrupted attempts left to continue from.
    pub resume: ResumeStates,
}

impl Engine {
    pub fn new(plan: Plan, quiet: bool) -> std::io::Result<Self> {
        let store = Store::open(&plan.store_dir)?;
        let memo = HashMemo::open(store.memo_file());
        let resume = ResumeStates::for_store_dir(&plan.store_dir);
        Ok(Self { plan, store, memo, reporter: Reporter::new(quiet), remote: None, push: false, executor: Arc::new(Local), resume })
    }

    /// Indices selected by `targets` plus everything they need; an unknown name is an error.
    pub fn select(&self, targets: &[String]) -> Result<Vec<usize>, EngineError> {
        let mut chosen = Vec::new();
        for t in targets {
            let found = self.plan.select(t);
            if found.is_empty() {
                let stages = self.plan.stage_names().into_iter().collect::<Vec<_>>().join(", ");
                return Err(EngineError::UnknownTarget { name: t.clone(), stages });
            }
            chosen.extend(found);
        }
        Ok(self.plan.closure(&chosen))
    }

    pub(super) fn forced(&self, names: &[String]) -> Result<BTreeSet<usize>, EngineError> {
        let mut forced = BTreeSet::new();
        for n in names {
            let found = self.plan.select(n);
            if found.is_empty() {
                return Err(EngineError::UnknownForced { name: n.clone() });
            }
            forced.extend(found);
        }
        Ok(forced)
    }

    /// The published output directory of every current instance that is fresh.
    pub fn output_dirs(&self, targets: &[String]) -> Result<Vec<OutputDir>, EngineError> {
        Ok(self
            .status(targets, &[])?
            .into_iter()
            .map(|s| {
                let dir = s.key.as_ref().filter(|_| s.state == Freshness::Fresh).map(|k| self.store.output_dir(k));
                (s.stage, dir, s.manifest)
            })
            .collect())
    }
}
