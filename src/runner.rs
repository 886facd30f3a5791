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

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use serde::Serialize;

use crate::config::{Instance, Plan};
use crate::cpu_budget::CpuBudget;
use crate::dirty::{explain, DirtyReason};
use stage_api::Shard;

use crate::executor::{local::Local, part_name, Context, Done, Executor, Part, Task};
use crate::filehash::HashMemo;
use crate::fingerprint::{compute, Fingerprint, Key, UpstreamInput};
use crate::lock::KeyLock;
use crate::progress::Reporter;
use crate::remote::{Remote, RemoteError};
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

/// The cores the local runner shares out: `PIPELINE_CPUS`, else all this process may use.
fn local_cores() -> Result<usize, String> {
    match std::env::var("PIPELINE_CPUS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("PIPELINE_CPUS={v}: not a positive whole number of cores")),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
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
}

impl Engine {
    pub fn new(plan: Plan, quiet: bool) -> std::io::Result<Self> {
        let store = Store::open(&plan.store_dir)?;
        let memo = HashMemo::open(store.memo_file());
        Ok(Self { plan, store, memo, reporter: Reporter::new(quiet), remote: None, push: false, executor: Arc::new(Local) })
    }

    /// Indices selected by `targets` plus everything they need; an unknown name is an error.
    pub fn select(&self, targets: &[String]) -> Result<Vec<usize>, String> {
        let mut chosen = Vec::new();
        for t in targets {
            let found = self.plan.select(t);
            if found.is_empty() {
                let names = self.plan.stage_names().into_iter().collect::<Vec<_>>().join(", ");
                return Err(format!("no stage or instance named `{t}` (stages: {names})"));
            }
            chosen.extend(found);
        }
        Ok(self.plan.closure(&chosen))
    }

    fn forced(&self, names: &[String]) -> Result<BTreeSet<usize>, String> {
        let mut forced = BTreeSet::new();
        for n in names {
            let found = self.plan.select(n);
            if found.is_empty() {
                return Err(format!("--force: no stage or instance named `{n}`"));
            }
            forced.extend(found);
        }
        Ok(forced)
    }

    /// What `run` would do, without doing it.
    pub fn status(&self, targets: &[String], force: &[String]) -> Result<Vec<InstanceStatus>, String> {
        let selected = self.select(targets)?;
        let forced = self.forced(force)?;
        let mut statuses: Vec<Option<InstanceStatus>> = vec![None; self.plan.instances.len()];
        for &i in &selected {
            let instance = &self.plan.instances[i];
            let stale_needs: Vec<DirtyReason> = instance
                .needs
                .iter()
                .filter(|&&n| statuses[n].as_ref().map_or(true, |s| s.state == Freshness::Stale))
                .map(|&n| DirtyReason::UpstreamStale { stage: self.plan.instances[n].name.clone() })
                .collect();
            let status = if !stale_needs.is_empty() {
                let mut reasons = stale_needs;
                if forced.contains(&i) {
                    reasons.insert(0, DirtyReason::Forced);
                }
                InstanceStatus { stage: instance.name.clone(), state: Freshness::Stale, reasons, key: None, manifest: None }
            } else {
                let upstream = self.upstream_inputs(instance, |n| statuses[n].as_ref().and_then(|s| s.manifest.clone()));
                let fingerprint = compute(instance, upstream, &self.plan.base_dir, &self.memo)
                    .map_err(|e| format!("{}: {e}", instance.name))?;
                let key = fingerprint.key();
                match (forced.contains(&i), self.store.lookup(&key)) {
                    (false, Some(manifest)) => InstanceStatus {
                        stage: instance.name.clone(),
                        state: Freshness::Fresh,
                        reasons: vec![],
                        key: Some(key),
                        manifest: Some(manifest),
                    },
                    (forced, _) => {
                        let reasons = if forced { vec![DirtyReason::Forced] } else { self.reasons(instance, &fingerprint) };
                        InstanceStatus { stage: instance.name.clone(), state: Freshness::Stale, reasons, key: Some(key), manifest: None }
                    }
                }
            };
            statuses[i] = Some(status);
        }
        let _ = self.memo.save();
        Ok(statuses.into_iter().flatten().collect())
    }

    fn reasons(&self, instance: &Instance, fingerprint: &Fingerprint) -> Vec<DirtyReason> {
        let last = self.store.last_state(&instance.name);
        explain(last.as_ref().map(|s| &s.fingerprint), fingerprint)
    }

    fn upstream_inputs(&self, instance: &Instance, manifest_of: impl Fn(usize) -> Option<Manifest>) -> Vec<UpstreamInput> {
        instance
            .needs
            .iter()
            .map(|&n| UpstreamInput {
                instance: self.plan.instances[n].name.clone(),
                content_hash: manifest_of(n).map(|m| m.content_hash).unwrap_or_default(),
            })
            .collect()
    }

    /// Runs the selected instances. Returns whether everything succeeded.
    pub fn run(&self, options: &RunOptions, argv: &[String]) -> Result<bool, String> {
        let selected = self.select(&options.targets)?;
        let forced = self.forced(&options.force)?;
        let cores = local_cores()?;
        let jobs = options.jobs.unwrap_or(self.plan.instances.len()).max(1);
        // `-j N` splits the cores among N instances; without it an instance takes them all
        // unless its stage's `cpus` says otherwise.
        let unset_threads = options.jobs.map_or(cores, |j| (cores / j.max(1)).max(1));
        let mut budget = (options.jobs.is_none() && self.executor.uses_local_cpus()).then(|| CpuBudget::new(cores));
        let started = Instant::now();
        let mut record = RunRecord::start(argv, options.run_id.as_deref());
        let record_path = record.path(&self.store.runs_dir());
        let _ = record.save(&record_path);
        let _ = self.store.clean_tmp();

        let n = self.plan.instances.len();
        let mut done: Vec<Option<Manifest>> = vec![None; n];
        let mut failed: Vec<bool> = vec![false; n];
        let mut waiting: BTreeSet<usize> = selected.iter().copied().collect();
        let mut ready: VecDeque<usize> = VecDeque::new();
        let mut in_flight = 0usize;
        let mut stop = false;
        let (tx, rx) = mpsc::channel::<(usize, Result<(Manifest, StageRecord), (String, StageRecord)>)>();

        std::thread::scope(|scope| {
            loop {
                // Move instances whose needs are all done to the ready queue.
                let now_ready: Vec<usize> = waiting
                    .iter()
                    .copied()
                    .filter(|&i| self.plan.instances[i].needs.iter().all(|&d| done[d].is_some()))
                    .collect();
                for i in now_ready {
                    waiting.remove(&i);
                    ready.push_back(i);
                }
                while !stop && in_flight < jobs {
                    let Some(&i) = ready.front() else { break };
                    let threads = self.threads_for(i, unset_threads, cores);
                    if budget.as_mut().is_some_and(|b| !b.try_take(threads)) {
                        break;
                    }
                    ready.pop_front();
                    let upstream = self.upstream_for(i, &done);
                    let force = forced.contains(&i);
                    let tx = tx.clone();
                    in_flight += 1;
                    scope.spawn(move || {
                        let result = self.process(i, upstream, force, threads);
                        let _ = tx.send((i, result));
                    });
                }
                if in_flight == 0 {
                    break;
                }
                let Ok((i, result)) = rx.recv() else { break };
                in_flight -= 1;
                if let Some(budget) = budget.as_mut() {
                    budget.give_back(self.threads_for(i, unset_threads, cores));
                }
                match result {
                    Ok((manifest, stage_record)) => {
                        done[i] = Some(manifest);
                        record.stages.push(stage_record);
                    }
                    Err((message, stage_record)) => {
                        failed[i] = true;
                        self.reporter.line(&format!("{}: FAILED: {message}", self.plan.instances[i].name));
                        record.stages.push(stage_record);
                        if !options.keep_going {
                            stop = true;
                        }
                        // Dependents can never run.
                        let blocked: Vec<usize> =
                            waiting.iter().copied().filter(|&w| self.depends_on(w, i)).collect();
                        for w in blocked {
                            waiting.remove(&w);
                            self.reporter.line(&format!("{}: not run: upstream {} failed", self.plan.instances[w].name, self.plan.instances[i].name));
                            record.stages.push(StageRecord::not_run(&self.plan.instances[w].name, "upstream failed"));
                        }
                    }
                }
                let _ = record.save(&record_path);
            }
        });
        for i in waiting.into_iter().chain(ready) {
            self.reporter.line(&format!("{}: not run: the run stopped after a failure", self.plan.instances[i].name));
            record.stages.push(StageRecord::not_run(&self.plan.instances[i].name, "run stopped after a failure"));
        }
        let _ = self.memo.save();
        let failures = failed.iter().filter(|f| **f).count();
        record.finish(failures == 0);
        let _ = record.save(&record_path);
        self.reporter.line(&record.summary_line(started.elapsed().as_secs_f64()));
        Ok(failures == 0)
    }

    /// Threads an instance is given: its stage's `cpus` (at most the machine's cores), else
    /// `unset`.
    fn threads_for(&self, i: usize, unset: usize, cores: usize) -> usize {
        let stage = &self.plan.instances[i].stage;
        self.plan.executor.resources_for(stage).cpus.map_or(unset, |c| (c as usize).min(cores)).max(1)
    }

    /// Whether instance `a` transitively needs `b`.
    fn depends_on(&self, a: usize, b: usize) -> bool {
        let mut stack = self.plan.instances[a].needs.clone();
        let mut seen = BTreeSet::new();
        while let Some(x) = stack.pop() {
            if x == b {
                return true;
            }
            if seen.insert(x) {
                stack.extend(&self.plan.instances[x].needs);
            }
        }
        false
    }

    fn upstream_for(&self, i: usize, done: &[Option<Manifest>]) -> Vec<(usize, Manifest)> {
        self.plan.instances[i]
            .needs
            .iter()
            .map(|&n| (n, done[n].clone().expect("needs are done before an instance is scheduled")))
            .collect()
    }

    /// Everything for one instance: key, freshness, lock, execution, publication.
    fn process(
        &self,
        i: usize,
        upstream: Vec<(usize, Manifest)>,
        force: bool,
        threads: usize,
    ) -> Result<(Manifest, StageRecord), (String, StageRecord)> {
        let instance = &self.plan.instances[i];
        let name = instance.name.as_str();
        let fail = |message: String, key: Option<&Key>, reasons: &[DirtyReason], seconds: f64| {
            (message.clone(), StageRecord::failed(name, key, reasons, seconds, &message))
        };
        let inputs: Vec<UpstreamInput> = upstream
            .iter()
            .map(|(n, m)| UpstreamInput { instance: self.plan.instances[*n].name.clone(), content_hash: m.content_hash.clone() })
            .collect();
        let fingerprint = compute(instance, inputs, &self.plan.base_dir, &self.memo).map_err(|e| fail(e.to_string(), None, &[], 0.0))?;
        let key = fingerprint.key();
        let state = InstanceState { instance: name.to_owned(), key: key.as_str().to_owned(), fingerprint: fingerprint.clone() };

        if !force {
            if let Some(manifest) = self.store.lookup(&key) {
                self.reporter.line(&format!("{name}: fresh"));
                let _ = self.store.save_state(&state);
                return Ok((manifest, StageRecord::fresh(name, &key)));
            }
        }
        let reasons = if force { vec![DirtyReason::Forced] } else { self.reasons(instance, &fingerprint) };
        let reason_text = reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        self.reporter.line(&format!("{name}: stale: {reason_text}"));

        let lock = match KeyLock::try_acquire(&self.store, &key) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                self.reporter.line(&format!("{name}: waiting for another run that is computing it (key {})", key.short()));
                let lock = KeyLock::acquire(&self.store, &key).map_err(|e| fail(format!("cannot lock: {e}"), Some(&key), &reasons, 0.0))?;
                if !force {
                    if let Some(manifest) = self.store.lookup(&key) {
                        self.reporter.line(&format!("{name}: reused the result of the other run"));
                        let _ = self.store.save_state(&state);
                        return Ok((manifest, StageRecord::reused(name, &key, &reasons)));
                    }
                }
                lock
            }
            Err(e) => return Err(fail(format!("cannot lock: {e}"), Some(&key), &reasons, 0.0)),
        };

        if !force {
            if let Some(manifest) = self.try_pull(name, &key) {
                drop(lock);
                let _ = self.store.save_state(&state);
                return Ok((manifest, StageRecord::pulled(name, &key, &reasons)));
            }
        }

        let started = Instant::now();
        let ctx = Context { plan: &self.plan, store: &self.store, remote: self.remote.as_ref(), reporter: &self.reporter };
        let task = Task { index: i, key: &key, fingerprint: &fingerprint, upstream: &upstream, force, threads, part: Part::Whole };
        let shards = self.plan.executor.shards_for(&instance.stage);
        let outcome = if shards > 1 { self.run_sharded(&ctx, &task, shards) } else { self.executor.run(&ctx, &task) };
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(Done { manifest, summary, place }) => {
                drop(lock);
                let _ = self.store.save_state(&state);
                if !self.executor.results_in_remote() {
                    self.push_computed(name, &key);
                }
                let summary_text = if summary.is_empty() { String::new() } else { format!(": {summary}") };
                let place_text = if place.is_empty() { String::new() } else { format!(" in {place}") };
                self.reporter.line(&format!("{name}: done{place_text} in {seconds:.1} s{summary_text}"));
                Ok((manifest, StageRecord::ran(name, &key, &reasons, seconds, &summary)))
            }
            Err(message) => Err(fail(message, Some(&key), &reasons, seconds)),
        }
    }

    /// A data-parallel instance as `count` shard tasks and a merge. Shards already in the local
    /// store or the remote (from an earlier run that was interrupted or failed elsewhere) are
    /// not computed again. The executor computes the others (a Slurm job array), then this
    /// process merges them and publishes the instance; with a batch executor it also pushes the
    /// merged result, which the next stages' jobs pull.
    fn run_sharded(&self, ctx: &Context<'_>, task: &Task<'_>, count: usize) -> Result<Done, String> {
        let name = self.plan.instances[task.index].name.as_str();
        let mut missing = Vec::new();
        for index in 0..count {
            let shard = Shard { index, count };
            let key = task.key.shard(index, count);
            let reuse = !task.force && (self.store.lookup(&key).is_some() || self.try_pull(&part_name(name, Part::Shard(shard)), &key).is_some());
            if !reuse {
                missing.push(shard);
            }
        }
        let done_before = count - missing.len();
        let before = if done_before > 0 { format!(" ({done_before} done by an earlier run)") } else { String::new() };
        self.reporter.line(&format!("{name}: split into {count} shards{before}"));
        let mut failures = Vec::new();
        let mut places = BTreeSet::new();
        for (shard, result) in missing.iter().zip(self.executor.run_shards(ctx, task, &missing)) {
            let shard_name = part_name(name, Part::Shard(*shard));
            match result {
                Ok(done) => {
                    let place = if done.place.is_empty() { String::new() } else { format!(" in {}", done.place) };
                    self.reporter.line(&format!("{shard_name}: done{place}"));
                    places.insert(done.place);
                }
                Err(message) => failures.push(format!("{shard_name}: {message}")),
            }
        }
        if !failures.is_empty() {
            let kept = count - failures.len();
            return Err(format!("{} of {count} shards failed ({kept} finished and are kept for the rerun):\n  {}", failures.len(), failures.join("\n  ")));
        }
        let merge = Task { part: Part::Merge { count }, ..*task };
        let mut done = Local.run(ctx, &merge).map_err(|e| format!("merging the {count} shards failed: {e}"))?;
        if self.executor.results_in_remote() {
            let remote = ctx.remote.ok_or("a batch executor needs a remote")?;
            remote.push(&self.store, task.key).map_err(|e| format!("merged the {count} shards, but pushing the result failed: {e}"))?;
        }
        places.remove("");
        let places: Vec<String> = places.into_iter().collect();
        done.place = if places.is_empty() { format!("{count} shards") } else { format!("{count} shards ({})", places.join(", ")) };
        Ok(done)
    }

    /// Downloads `key` from the remote if it has it; `None` (after saying why) otherwise.
    fn try_pull(&self, name: &str, key: &Key) -> Option<Manifest> {
        let remote = self.remote.as_ref()?;
        // One GET of the manifest: a miss is a NotFound, no HEAD needed first.
        match remote.pull(&self.store, key, name) {
            Err(RemoteError::Missing(_)) => None,
            Ok(manifest) => {
                self.reporter.line(&format!("{name}: pulled from the remote ({} files, {} bytes)", manifest.files.len(), manifest.total_size()));
                Some(manifest)
            }
            Err(e) => {
                self.reporter.line(&format!("{name}: refused the remote copy ({e}); computing it here"));
                None
            }
        }
    }

    fn push_computed(&self, name: &str, key: &Key) {
        let Some(remote) = self.remote.as_ref().filter(|_| self.push) else { return };
        match remote.push(&self.store, key) {
            Ok(bytes) => self.reporter.line(&format!("{name}: pushed to the remote ({bytes} bytes uploaded)")),
            Err(e) => self.reporter.line(&format!("{name}: push failed: {e}")),
        }
    }

    /// `pipeline push`: uploads every selected fresh instance. Returns (pushed, bytes).
    pub fn push_all(&self, targets: &[String]) -> Result<(usize, u64), String> {
        let remote = self.remote.as_ref().ok_or("no remote: set `remote:` in pipeline.yaml or pass --remote URL")?;
        let mut pushed = 0;
        let mut bytes = 0;
        for status in self.status(targets, &[])? {
            let Some(key) = status.key.filter(|_| status.state == Freshness::Fresh) else {
                self.reporter.line(&format!("{}: stale, nothing to push", status.stage));
                continue;
            };
            let n = remote.push(&self.store, &key).map_err(|e| format!("{}: {e}", status.stage))?;
            self.reporter.line(&format!("{}: pushed ({n} bytes uploaded)", status.stage));
            pushed += 1;
            bytes += n;
        }
        Ok((pushed, bytes))
    }

    /// `pipeline pull`: downloads every selected stale instance the remote has, upstream first
    /// (a downstream key is known only once its upstream outputs are here). Returns how many.
    pub fn pull_all(&self, targets: &[String]) -> Result<usize, String> {
        let remote = self.remote.as_ref().ok_or("no remote: set `remote:` in pipeline.yaml or pass --remote URL")?;
        let mut pulled = 0;
        loop {
            let mut progress = false;
            for status in self.status(targets, &[])? {
                let Some(key) = status.key.filter(|_| status.state == Freshness::Stale) else { continue };
                if !remote.has(&key) {
                    continue;
                }
                let _lock = KeyLock::acquire(&self.store, &key).map_err(|e| e.to_string())?;
                if self.store.lookup(&key).is_some() {
                    continue;
                }
                let manifest = remote.pull(&self.store, &key, &status.stage).map_err(|e| format!("{}: {e}", status.stage))?;
                self.reporter.line(&format!("{}: pulled ({} files, {} bytes)", status.stage, manifest.files.len(), manifest.total_size()));
                pulled += 1;
                progress = true;
            }
            if !progress {
                return Ok(pulled);
            }
        }
    }

    /// The published output directory of every current instance that is fresh.
    pub fn output_dirs(&self, targets: &[String]) -> Result<Vec<(String, Option<PathBuf>, Option<Manifest>)>, String> {
        Ok(self
            .status(targets, &[])?
            .into_iter()
            .map(|s| {
                let dir = s.key.as_ref().filter(|_| s.state == Freshness::Fresh).map(|k| self.store.output_dir(k));
                (s.stage, dir, s.manifest)
            })
            .collect())
    }

    /// Removes artifacts no current instance refers to (neither its current key nor its last
    /// successful one) and abandoned work directories. Returns (artifacts removed, bytes freed).
    pub fn gc(&self) -> Result<(usize, u64), String> {
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for status in self.status(&[], &[])? {
            if let Some(key) = status.key {
                keep.insert(key.as_str().to_owned());
            }
        }
        let names: BTreeSet<&str> = self.plan.instances.iter().map(|i| i.name.as_str()).collect();
        for state in self.store.all_states() {
            if names.contains(state.instance.as_str()) {
                keep.insert(state.key);
            }
        }
        let mut removed = 0;
        let mut freed = self.store.clean_tmp().map_err(|e| e.to_string())?;
        for key in self.store.published_keys().map_err(|e| e.to_string())? {
            if keep.contains(key.as_str()) {
                continue;
            }
            // Never remove what another run is computing or publishing right now.
            if let Ok(Some(_lock)) = KeyLock::try_acquire(&self.store, &key) {
                freed += self.store.remove(&key).map_err(|e| e.to_string())?;
                removed += 1;
            }
        }
        Ok((removed, freed))
    }
}

