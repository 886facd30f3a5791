//! Scheduling a run: instances in dependency order, as many at once as `-j` or the cores allow;
//! a failure stops new work unless `keep_going`.

use super::*;

impl Engine {
    /// Runs the selected instances. Returns whether everything succeeded.
    pub fn run(&self, options: &RunOptions, argv: &[String]) -> Result<bool, EngineError> {
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
                let now_ready: Vec<usize> =
                    waiting.iter().copied().filter(|&i| self.plan.instances[i].needs.iter().all(|&d| done[d].is_some())).collect();
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
                        let blocked: Vec<usize> = waiting.iter().copied().filter(|&w| self.depends_on(w, i)).collect();
                        for w in blocked {
                            waiting.remove(&w);
                            self.reporter.line(&format!(
                                "{}: not run: upstream {} failed",
                                self.plan.instances[w].name, self.plan.instances[i].name
                            ));
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
        if let Some(table) = record.results_table(self.reporter.terminal_width()) {
            self.reporter.line(&table);
        }
        self.reporter.line(&record.summary_line(started.elapsed().as_secs_f64()));
        Ok(failures == 0)
    }

    /// Threads an instance is given: its stage's `cpus` (at most the machine's cores), else
    /// `unset`.
    pub(super) fn threads_for(&self, i: usize, unset: usize, cores: usize) -> usize {
        let stage = &self.plan.instances[i].stage;
        self.plan.executor.resources_for(stage).cpus.map_or(unset, |c| (c as usize).min(cores)).max(1)
    }

    /// Whether instance `a` transitively needs `b`.
    pub(super) fn depends_on(&self, a: usize, b: usize) -> bool {
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

    pub(super) fn upstream_for(&self, i: usize, done: &[Option<Manifest>]) -> Vec<(usize, Manifest)> {
        self.plan.instances[i]
            .needs
            .iter()
            .map(|&n| (n, done[n].clone().expect("needs are done before an instance is scheduled")))
            .collect()
    }
}

/// The cores the local runner shares out: `PIPELINE_CPUS`, else all this process may use.
fn local_cores() -> Result<usize, EngineError> {
    match std::env::var("PIPELINE_CPUS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(EngineError::Cpus { value: v }),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}
