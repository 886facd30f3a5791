//! One stale instance: its key's lock, a pull from the remote, else the executor (whole or in
//! shards), and the run record.

use super::*;

impl Engine {
    /// Everything for one instance: key, freshness, lock, execution, publication.
    // Both outcomes carry the instance's run record; it is moved once per instance.
    #[allow(clippy::result_large_err)]
    pub(super) fn process(
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

        if force {
            if let Ok(bytes) = self.resume.discard(&key) {
                if bytes > 0 {
                    self.reporter.line(&format!("{name}: forced: discarded the resumable state of an earlier attempt"));
                }
            }
        } else if self.resume.exists(&key) {
            self.reporter.line(&format!("{name}: an earlier attempt was interrupted; its resumable state is handed to the stage"));
        }
        let started = Instant::now();
        let ctx =
            Context { plan: &self.plan, store: &self.store, resume: &self.resume, remote: self.remote.as_ref(), reporter: &self.reporter };
        let task = Task { index: i, key: &key, fingerprint: &fingerprint, upstream: &upstream, force, threads, part: Part::Whole };
        let shards = self.plan.executor.shards_for(&instance.stage);
        let outcome = if shards > 1 { self.run_sharded(&ctx, &task, shards) } else { self.executor.run(&ctx, &task) };
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(Done { manifest, summary, place }) => {
                // (The executor that published the result discarded the key's state.)
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
            Err(error) => {
                let message = error.to_string();
                Err((message.clone(), StageRecord::failed(name, Some(&key), &reasons, seconds, &message).with_failure(error)))
            }
        }
    }

    /// A data-parallel instance as `count` shard tasks and a merge. Shards already in the local
    /// store or the remote (from an earlier run that was interrupted or failed elsewhere) are
    /// not computed again. The executor computes the others (a Slurm job array), then this
    /// process merges them and publishes the instance; with a batch executor it also pushes the
    /// merged result, which the next stages' jobs pull.
    pub(super) fn run_sharded(&self, ctx: &Context<'_>, task: &Task<'_>, count: usize) -> Result<Done, RunError> {
        let name = self.plan.instances[task.index].name.as_str();
        let mut missing = Vec::new();
        for index in 0..count {
            let shard = Shard { index, count };
            let key = task.key.shard(index, count);
            let reuse =
                !task.force && (self.store.lookup(&key).is_some() || self.try_pull(&part_name(name, Part::Shard(shard)), &key).is_some());
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
            return Err(RunError::Shards { count, shards: failures });
        }
        let merge = Task { part: Part::Merge { count }, ..*task };
        let mut done = Local.run(ctx, &merge).map_err(|e| e.context(&format!("merging the {count} shards failed")))?;
        if self.executor.results_in_remote() {
            let remote = ctx.remote.ok_or_else(|| RunError::submit("a batch executor needs a remote"))?;
            remote
                .push(&self.store, task.key)
                .map_err(|e| RunError::publish(format!("merged the {count} shards, but pushing the result failed: {e}")))?;
        }
        places.remove("");
        let places: Vec<String> = places.into_iter().collect();
        done.place = if places.is_empty() { format!("{count} shards") } else { format!("{count} shards ({})", places.join(", ")) };
        Ok(done)
    }
}
