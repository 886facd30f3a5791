//! What the batch executors ([`super::slurm`], [`super::kubernetes`]) share, so that each says
//! only how its scheduler is talked to ([`BatchBackend`]: submit and collect a task or the
//! shards of one, query, cancel, where the logs are); every backend is an [`Executor`] through
//! that trait:
//!
//! - [`JobBoard`]: the run's submitted jobs and what is known of them. Every task thread
//!   blocks in [`JobBoard::wait`]; whichever finds the poll interval over asks the scheduler
//!   about every waiting job of the run at once (one `squeue`, one list call), so the
//!   scheduler is asked once per interval however many tasks wait. A state change of a waiting
//!   job is one line (`train: slurm job 12 RUNNING`). A scheduler that does not answer is
//!   retried for [`UNREACHABLE_LIMIT`], then its waiting jobs fail with the reason.
//! - [`JobRecord`]: what the local store keeps of the last job submitted for a key
//!   (`<store>/jobs/<key>.json`), so `pipeline status` can say where a task runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use stage_api::Shard;

use super::{Context, Done, Executor, PollClock, RunError, Task};
use crate::fingerprint::Key;
use crate::progress::Reporter;
use crate::store::Store;

/// How long a scheduler may be unreachable before the run's waiting tasks fail.
pub const UNREACHABLE_LIMIT: Duration = Duration::from_secs(120);

/// A job's state as a backend reports it.
pub trait JobStatus: Clone + PartialEq + std::fmt::Display + Send {
    /// Whether the job left the scheduler's queue (for good or not).
    fn ended(&self) -> bool;
    /// The state a waiting job is given when the scheduler has not answered for
    /// [`UNREACHABLE_LIMIT`] (`error`: its last error).
    fn unreachable(error: &str) -> Self;
}

/// Why a scheduler could not be asked (the query is retried; see [`UNREACHABLE_LIMIT`]) or a
/// backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Its command-line tool would not start (`squeue` not on PATH).
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: &'static str, source: std::io::Error },
    /// Its command-line tool ran and failed; `said` is what it printed.
    #[error("{command} failed: {said}")]
    Failed { command: &'static str, said: String },
    /// The executor's configuration cannot work (the message says what to set).
    #[error("{0}")]
    Config(&'static str),
    /// No kubeconfig and not inside a cluster.
    #[cfg(feature = "kubernetes")]
    #[error("cannot find a Kubernetes cluster to talk to ({0}): set KUBECONFIG (or write ~/.kube/config), or run inside the cluster")]
    NoCluster(kube::config::InferConfigError),
    /// Its API client failed (`what` it was doing, and the client's error).
    #[error("{what}: {source}")]
    Client { what: String, source: Box<dyn std::error::Error + Send + Sync> },
}

impl SchedulerError {
    pub fn client(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SchedulerError::Client { what: what.into(), source: source.into() }
    }
}

/// A job the run still waits for, as handed to [`BatchBackend::query`].
pub struct WaitingJob {
    pub id: String,
    pub submitted: Instant,
}

/// How a batch backend talks to its scheduler.
pub trait BatchBackend: Send + Sync {
    type Status: JobStatus;
    /// `slurm`, `kubernetes`: the executor's name, in lines and job records.
    const BACKEND: &'static str;
    /// Who answers queries, for messages: `the controller`, `the API server`.
    const SERVER: &'static str;

    /// Submits the task, waits for its job (through a [`JobBoard`]) and pulls its result into
    /// the local store.
    fn run_task(&self, ctx: &Context<'_>, task: &Task<'_>) -> Result<Done, RunError>;
    /// The same for `shards` of the task's instance, submitted together (a job array, an
    /// Indexed Job); one result per shard. The outer `Err` when nothing could be submitted.
    fn run_shard_tasks(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Result<Vec<Result<Done, RunError>>, RunError>;

    /// The current state of `waiting` jobs, in one round of queries. A job left out of the
    /// answer keeps its state (e.g. submitted after the scheduler took its snapshot).
    fn query(&self, waiting: &[WaitingJob]) -> Result<Vec<(String, Self::Status)>, SchedulerError>;
    /// Stops every job of the run (Ctrl-C of the coordinator).
    fn cancel_run(&self);
    /// How to read job `job`'s log, for error messages.
    fn logs_hint(&self, job: &str) -> String;
}

struct Followed<S> {
    instance: String,
    submitted: Instant,
    state: S,
}

/// The run's submitted jobs, polled together (see the module documentation).
pub struct JobBoard<S: JobStatus> {
    poll_seconds: f64,
    jobs: Mutex<BTreeMap<String, Followed<S>>>,
    /// When the last poll started; held while polling so only one thread polls.
    poll_clock: PollClock,
    unreachable_since: Mutex<Option<Instant>>,
}

impl<S: JobStatus> JobBoard<S> {
    pub fn new(poll_seconds: f64) -> Self {
        Self { poll_seconds, jobs: Mutex::new(BTreeMap::new()), poll_clock: PollClock::default(), unreachable_since: Mutex::new(None) }
    }

    /// Starts following job `id` of `instance` (a job, an array task, an Indexed Job).
    pub fn follow(&self, id: &str, instance: &str, state: S) {
        let followed = Followed { instance: instance.to_owned(), submitted: Instant::now(), state };
        self.jobs.lock().expect("jobs lock").insert(id.to_owned(), followed);
    }

    /// Blocks until job `id` ended; returns how.
    pub fn wait<B: BatchBackend<Status = S>>(&self, scheduler: &B, id: &str, reporter: &Reporter) -> S {
        let nap = Duration::from_secs_f64((self.poll_seconds / 4.0).min(0.05));
        loop {
            if let Some(state) = self.jobs.lock().expect("jobs lock").get(id).map(|j| j.state.clone()).filter(S::ended) {
                return state;
            }
            self.poll_clock.run_if_due(self.poll_seconds, || self.poll(scheduler, reporter));
            std::thread::sleep(nap);
        }
    }

    /// One round of queries for every waiting job of the run.
    fn poll<B: BatchBackend<Status = S>>(&self, scheduler: &B, reporter: &Reporter) {
        let waiting: Vec<WaitingJob> = self
            .jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .filter(|(_, j)| !j.state.ended())
            .map(|(id, j)| WaitingJob { id: id.clone(), submitted: j.submitted })
            .collect();
        if waiting.is_empty() {
            return;
        }
        let answer = match scheduler.query(&waiting) {
            Ok(answer) => answer,
            Err(e) => return self.unreachable::<B>(&e.to_string(), reporter),
        };
        if self.unreachable_since.lock().expect("lock").take().is_some() {
            reporter.line(&format!("{}: {} answers again", B::BACKEND, B::SERVER));
        }
        let mut jobs = self.jobs.lock().expect("jobs lock");
        for (id, next) in answer {
            let Some(job) = jobs.get_mut(&id).filter(|j| !j.state.ended()) else { continue };
            if job.state != next {
                if !next.ended() {
                    reporter.line(&format!("{}: {} job {id} {next}", job.instance, B::BACKEND));
                }
                job.state = next;
            }
        }
    }

    /// The scheduler did not answer: keep waiting up to [`UNREACHABLE_LIMIT`], then fail the
    /// run's waiting jobs.
    fn unreachable<B: BatchBackend<Status = S>>(&self, error: &str, reporter: &Reporter) {
        let mut since = self.unreachable_since.lock().expect("lock");
        let first = match *since {
            Some(first) => first,
            None => {
                let limit = UNREACHABLE_LIMIT.as_secs();
                reporter.line(&format!("{}: {} does not answer ({error}); trying again for {limit} s", B::BACKEND, B::SERVER));
                *since.insert(Instant::now())
            }
        };
        if first.elapsed() < UNREACHABLE_LIMIT {
            return;
        }
        for job in self.jobs.lock().expect("jobs lock").values_mut().filter(|j| !j.state.ended()) {
            job.state = S::unreachable(error);
        }
    }
}

/// A batch backend computes elsewhere and hands results over through the remote.
impl<B: BatchBackend> Executor for B {
    fn name(&self) -> &'static str {
        B::BACKEND
    }

    fn run(&self, ctx: &Context<'_>, task: &Task<'_>) -> Result<Done, RunError> {
        self.run_task(ctx, task)
    }

    fn run_shards(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Vec<Result<Done, RunError>> {
        self.run_shard_tasks(ctx, task, shards).unwrap_or_else(|e| shards.iter().map(|_| Err(e.clone())).collect())
    }

    fn results_in_remote(&self) -> bool {
        true
    }

    fn uses_local_cpus(&self) -> bool {
        false
    }

    fn cancel_all(&self) {
        self.cancel_run();
    }
}

/// What the local store remembers of the last job submitted for a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "lowercase")]
pub enum JobRecord {
    Slurm { instance: String, job_id: String, run_id: String, log: PathBuf },
    Kubernetes { instance: String, job: String, namespace: String, run_id: String },
}

impl JobRecord {
    fn path(store: &Store, key: &Key) -> PathBuf {
        store.root().join("jobs").join(format!("{}.json", key.as_str()))
    }

    /// Saves the record for `key` (atomically; replaces the previous one).
    pub fn save(&self, store: &Store, key: &Key) -> std::io::Result<()> {
        let path = Self::path(store, key);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        crate::store::write_atomically(&path, &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)
    }

    /// The record for `key`; `None` when no job was submitted for it (or the record is unreadable:
    /// it only feeds a status note).
    pub fn load(store: &Store, key: &Key) -> Option<Self> {
        let bytes = std::fs::read(Self::path(store, key)).ok()?;
        serde_json::from_slice(&bytes).ok().or_else(|| {
            // Written before the records carried `executor` (only Slurm's lacked it).
            #[derive(Deserialize)]
            struct Untagged {
                instance: String,
                job_id: String,
                run_id: String,
                log: PathBuf,
            }
            let Untagged { instance, job_id, run_id, log } = serde_json::from_slice(&bytes).ok()?;
            Some(JobRecord::Slurm { instance, job_id, run_id, log })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Clone, PartialEq)]
    enum State {
        Queued(&'static str),
        Done,
        Lost(String),
    }

    impl std::fmt::Display for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                State::Queued(s) => f.write_str(s),
                State::Done => f.write_str("DONE"),
                State::Lost(e) => write!(f, "LOST ({e})"),
            }
        }
    }

    impl JobStatus for State {
        fn ended(&self) -> bool {
            !matches!(self, State::Queued(_))
        }
        fn unreachable(error: &str) -> Self {
            State::Lost(error.to_owned())
        }
    }

    /// Answers `RUNNING` for the first queries, then `DONE`; fails while `down`.
    struct Fake {
        queries: AtomicUsize,
        running_for: usize,
        down: bool,
    }

    impl BatchBackend for Fake {
        type Status = State;
        const BACKEND: &'static str = "fake";
        const SERVER: &'static str = "the fake";

        fn run_task(&self, _: &Context<'_>, _: &Task<'_>) -> Result<Done, RunError> {
            unreachable!("the board's tests only poll")
        }
        fn run_shard_tasks(&self, _: &Context<'_>, _: &Task<'_>, _: &[Shard]) -> Result<Vec<Result<Done, RunError>>, RunError> {
            unreachable!("the board's tests only poll")
        }
        fn query(&self, waiting: &[WaitingJob]) -> Result<Vec<(String, State)>, SchedulerError> {
            if self.down {
                return Err(SchedulerError::client("listing jobs", "connection refused"));
            }
            let n = self.queries.fetch_add(1, Ordering::SeqCst);
            let state = if n < self.running_for { State::Queued("RUNNING") } else { State::Done };
            Ok(waiting.iter().map(|w| (w.id.clone(), state.clone())).collect())
        }
        fn cancel_run(&self) {}
        fn logs_hint(&self, job: &str) -> String {
            format!("log of {job}")
        }
    }

    #[test]
    fn one_query_round_serves_every_waiting_job() {
        let board = JobBoard::new(0.0);
        board.follow("1", "a", State::Queued("PENDING"));
        board.follow("2", "b", State::Queued("PENDING"));
        let fake = Fake { queries: AtomicUsize::new(0), running_for: 2, down: false };
        let reporter = Reporter::new(true);
        assert_eq!(board.wait(&fake, "1", &reporter), State::Done);
        let after_first = fake.queries.load(Ordering::SeqCst);
        assert_eq!(board.wait(&fake, "2", &reporter), State::Done);
        assert_eq!(fake.queries.load(Ordering::SeqCst), after_first, "job 2 ended in the same round as job 1");
    }

    #[test]
    fn a_scheduler_that_does_not_answer_fails_the_waiting_jobs_after_the_limit() {
        let board: JobBoard<State> = JobBoard::new(0.0);
        board.follow("7", "train", State::Queued("PENDING"));
        let fake = Fake { queries: AtomicUsize::new(0), running_for: 0, down: true };
        let reporter = Reporter::new(true);
        board.poll(&fake, &reporter);
        assert!(!board.jobs.lock().unwrap()["7"].state.ended(), "within the limit the job keeps waiting");
        *board.unreachable_since.lock().unwrap() = Some(Instant::now() - UNREACHABLE_LIMIT);
        board.poll(&fake, &reporter);
        assert_eq!(board.jobs.lock().unwrap()["7"].state, State::Lost("listing jobs: connection refused".into()));
    }

    #[test]
    fn job_records_round_trip_with_their_backend() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Key::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(JobRecord::load(&store, &key), None);
        let record =
            JobRecord::Kubernetes { instance: "train".into(), job: "pipeline-x".into(), namespace: "ns".into(), run_id: "r".into() };
        record.save(&store, &key).unwrap();
        assert_eq!(JobRecord::load(&store, &key), Some(record));
        let text = std::fs::read_to_string(dir.path().join("jobs").join(format!("{}.json", key.as_str()))).unwrap();
        assert!(text.contains("\"executor\": \"kubernetes\""), "{text}");
    }
}
