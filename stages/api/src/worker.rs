//! Running a stage in a worker process of its own.
//!
//! Some stages need a heavy runtime (libtorch and its CUDA libraries: about 0.6 s and 500 MB
//! just to load). The `pipeline` binary does not link it; such a stage's [`Stage::run`] in the
//! engine's process is [`run_in_worker`], which starts a worker program (`pipeline-torch`), hands
//! it the job, relays its progress and returns its outcome. The worker's `main` is [`serve`] over
//! the stages that really do the work.
//!
//! What this buys besides a fast engine: a crash inside the runtime (an abort, out of memory)
//! fails that one instance with its message, and two instances side by side share no process-wide
//! state (random generators, thread pools).
//!
//! The protocol, one job per process:
//! - stdin: one [`WorkerJob`] as JSON;
//! - stdout: [`WorkerEvent`]s, one JSON object a line; the last is `done` or `failed`;
//! - stderr: free text (the worker's own stdout is redirected there, so a stray `println!`
//!   cannot corrupt the event stream); its end is quoted when the worker dies without an outcome.
//!
//! The worker dies with the process that started it, also on `kill -9` ([`crate::process`]), so
//! a killed run leaves no training behind holding a GPU.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{panic_message, Params, Progress, SameStore, Shard, Stage, StageContext, StageError, StageInput, StageOutcome};

/// Lines of the worker's stderr quoted when it dies without saying why.
const STDERR_TAIL_LINES: usize = 20;

/// Overrides the folder where worker programs are looked for.
pub const WORKER_DIR_ENV: &str = "PIPELINE_WORKER_DIR";

/// Which part of a stage's work the job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerPart {
    Whole,
    Shard {
        index: usize,
        count: usize,
    },
    /// The shards' output directories, in shard order.
    Merge {
        parts: Vec<PathBuf>,
    },
}

/// Everything a worker needs to run one stage instance: a [`StageContext`] made serializable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerJob {
    /// The stage kind (`train`).
    pub kind: String,
    pub part: WorkerPart,
    pub params: Params,
    pub inputs: Vec<StageInput>,
    pub out_dir: PathBuf,
    pub base_dir: PathBuf,
    pub threads: usize,
    /// [`StageContext::resume_dir`].
    #[serde(default)]
    pub resume_dir: Option<PathBuf>,
}

/// One line of a worker's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Start { total: u64, unit: String },
    Advance { n: u64 },
    Note { message: String },
    Done { summary: String },
    Failed { message: String },
}

/// The worker's side of a stage: `describe` is the stage as the engine knows it (kind, version,
/// parameters, raw inputs; its `run` hands the job to a worker), `work` does the job.
pub struct WorkerStage<D> {
    pub describe: D,
    pub work: fn(&StageContext<'_>) -> Result<StageOutcome, StageError>,
}

impl<D: Stage> Stage for WorkerStage<D> {
    fn kind(&self) -> &'static str {
        self.describe.kind()
    }

    fn version(&self) -> u32 {
        self.describe.version()
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, crate::ParamError> {
        self.describe.resolve_params(params)
    }

    fn raw_inputs(&self, params: &Params, base_dir: &Path, needs: &[String]) -> Result<Vec<PathBuf>, crate::ParamError> {
        self.describe.raw_inputs(params, base_dir, needs)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        (self.work)(ctx)
    }
}

/// Runs `ctx`'s job for the stage `kind` in the worker program `worker` and waits for it.
pub fn run_in_worker(worker: &str, kind: &str, ctx: &StageContext<'_>, part: WorkerPart) -> Result<StageOutcome, StageError> {
    let program = locate_worker(worker)?;
    let job = WorkerJob {
        kind: kind.to_owned(),
        part,
        params: ctx.params.clone(),
        inputs: ctx.inputs.to_vec(),
        out_dir: ctx.out_dir.to_path_buf(),
        base_dir: ctx.base_dir.to_path_buf(),
        threads: ctx.threads,
        resume_dir: ctx.resume_dir.map(Path::to_path_buf),
    };
    let request = serde_json::to_vec(&job).map_err(|e| StageError::with_source("encoding the worker job", e))?;
    let mut command = Command::new(&program);
    command.arg("stage").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    crate::process::die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| StageError::with_source(format!("cannot start the worker {}", program.display()), e))?;
    // The job is small; write it and close stdin before reading, so neither side waits on the other.
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(&request));
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (outcome, tail) = std::thread::scope(|scope| {
        let tail = scope.spawn(move || stderr_tail(stderr));
        let outcome = relay_events(stdout, ctx.progress);
        (outcome, tail.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|e| StageError::with_source(format!("waiting for the worker {}", program.display()), e))?;
    match outcome {
        Some(WorkerEvent::Done { summary }) if status.success() => Ok(StageOutcome::new(summary)),
        Some(WorkerEvent::Failed { message }) => Err(StageError::msg(message)),
        _ => {
            let how = exit_description(&status);
            let mut message = format!("the worker {} died ({how}) while running `{kind}`", program.display());
            if let Some(Err(e)) = written {
                message.push_str(&format!("; it did not take the job: {e}"));
            }
            if !tail.is_empty() {
                message.push_str(&format!("; end of its stderr:\n    {}", tail.join("\n    ")));
            }
            Err(StageError::msg(message))
        }
    }
}

/// The worker program: `$PIPELINE_WORKER_DIR/NAME`, else next to the running executable (or one
/// folder up, for a test binary in cargo's `target/*/deps`), else `NAME` on `PATH`.
pub fn locate_worker(name: &str) -> Result<PathBuf, StageError> {
    if let Some(dir) = std::env::var_os(WORKER_DIR_ENV) {
        let path = PathBuf::from(dir).join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(StageError::msg(format!("{WORKER_DIR_ENV} is set, but {} does not exist", path.display())))
        };
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        for candidate in [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        StageError::msg(format!(
            "cannot find the worker program `{name}` next to this executable or on PATH \
             (build it with `cargo build --workspace`, install it beside `pipeline`, or set {WORKER_DIR_ENV})"
        ))
    })
}

/// A worker's `main`: reads the job on stdin, runs it with the stage of that kind among
/// `stages`, reports progress and the outcome on stdout. Exit status 0 when the stage succeeded.
pub fn serve(stages: &[&dyn Stage]) -> ExitCode {
    let events = match event_channel() {
        Ok(events) => events,
        Err(e) => {
            eprintln!("worker: cannot set up the event channel: {e}");
            return ExitCode::from(2);
        }
    };
    let sink = EventSink { out: Mutex::new(events) };
    let outcome = read_job().and_then(|job| run_job(stages, &job, &sink));
    let (event, code) = match outcome {
        Ok(outcome) => (WorkerEvent::Done { summary: outcome.summary }, ExitCode::SUCCESS),
        Err(e) => (WorkerEvent::Failed { message: e.chain() }, ExitCode::from(1)),
    };
    sink.send(&event);
    code
}

fn read_job() -> Result<WorkerJob, StageError> {
    let mut text = Vec::new();
    std::io::stdin().read_to_end(&mut text).map_err(|e| StageError::with_source("worker: reading the job from stdin", e))?;
    serde_json::from_slice(&text).map_err(|e| StageError::with_source("worker: the job on stdin is not a valid job", e))
}

fn run_job(stages: &[&dyn Stage], job: &WorkerJob, progress: &dyn Progress) -> Result<StageOutcome, StageError> {
    let stage = stages.iter().find(|s| s.kind() == job.kind).ok_or_else(|| {
        let known: Vec<&str> = stages.iter().map(|s| s.kind()).collect();
        StageError::msg(format!("this worker has no stage `{}` (it runs: {})", job.kind, known.join(", ")))
    })?;
    let ctx = StageContext {
        params: &job.params,
        inputs: &job.inputs,
        out_dir: &job.out_dir,
        base_dir: &job.base_dir,
        progress,
        threads: job.threads,
        // Worker stages read upstream outputs only through `inputs`, which are already local.
        artifacts: &SameStore,
        resume_dir: job.resume_dir.as_deref(),
    };
    let work = || match &job.part {
        WorkerPart::Whole => stage.run(&ctx),
        WorkerPart::Shard { index, count } => stage.run_shard(&ctx, Shard { index: *index, count: *count }),
        WorkerPart::Merge { parts } => stage.merge(&ctx, parts),
    };
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(panic) => Err(StageError::msg(format!("stage `{}` panicked: {}", job.kind, panic_message(&panic)))),
    }
}

/// Relays progress events to `progress`; returns the final event, if the worker sent one.
fn relay_events(stdout: impl Read, progress: &dyn Progress) -> Option<WorkerEvent> {
    let mut last = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<WorkerEvent>(&line) {
            Ok(WorkerEvent::Start { total, unit }) => progress.start(total, &unit),
            Ok(WorkerEvent::Advance { n }) => progress.advance(n),
            Ok(WorkerEvent::Note { message }) => progress.note(&message),
            Ok(end @ (WorkerEvent::Done { .. } | WorkerEvent::Failed { .. })) => last = Some(end),
            Err(_) if line.trim().is_empty() => {}
            Err(_) => progress.note(&line),
        }
    }
    last
}

fn stderr_tail(stderr: impl Read) -> Vec<String> {
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into()
}

fn exit_description(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                libc::SIGABRT => " (SIGABRT: an abort, e.g. a failed check inside a native library)",
                libc::SIGKILL => " (SIGKILL: killed, e.g. by the kernel's out-of-memory killer)",
                libc::SIGSEGV => " (SIGSEGV: a crash in native code)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}, without reporting an outcome"),
        None => "no exit status".to_owned(),
    }
}

/// The worker's event stream: the original stdout. Fd 1 is pointed at stderr, so whatever the
/// stage's libraries print goes to the log rather than into the protocol.
fn event_channel() -> std::io::Result<Box<dyn Write + Send>> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: plain fd duplication; the new fd is owned by the File below and by no one else.
        unsafe {
            let events = libc::dup(1);
            if events < 0 || libc::dup2(2, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Box::new(std::fs::File::from_raw_fd(events)))
        }
    }
    #[cfg(not(unix))]
    {
        Ok(Box::new(std::io::stdout()))
    }
}

struct EventSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl EventSink {
    fn send(&self, event: &WorkerEvent) {
        let mut line = serde_json::to_vec(event).expect("events serialize");
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A parent that stopped listening has gone; the death signal ends this process.
        let _ = out.write_all(&line).and_then(|()| out.flush());
    }
}

impl Progress for EventSink {
    fn start(&self, total: u64, unit: &str) {
        self.send(&WorkerEvent::Start { total, unit: unit.to_owned() });
    }

    fn advance(&self, n: u64) {
        self.send(&WorkerEvent::Advance { n });
    }

    fn note(&self, message: &str) {
        self.send(&WorkerEvent::Note { message: message.to_owned() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Mutex<Vec<String>>);

    impl Progress for Recorder {
        fn start(&self, total: u64, unit: &str) {
            self.0.lock().unwrap().push(format!("start {total} {unit}"));
        }
        fn advance(&self, n: u64) {
            self.0.lock().unwrap().push(format!("advance {n}"));
        }
        fn note(&self, message: &str) {
            self.0.lock().unwrap().push(format!("note {message}"));
        }
    }

    #[test]
    fn events_are_relayed_and_the_last_outcome_is_kept() {
        let lines = [
            r#"{"event":"start","total":3,"unit":"epochs"}"#,
            r#"{"event":"advance","n":1}"#,
            "stray output",
            r#"{"event":"note","message":"epoch 1"}"#,
            r#"{"event":"done","summary":"ok"}"#,
        ]
        .join("\n");
        let recorder = Recorder(Mutex::new(Vec::new()));
        let last = relay_events(lines.as_bytes(), &recorder);
        assert_eq!(last, Some(WorkerEvent::Done { summary: "ok".into() }));
        assert_eq!(*recorder.0.lock().unwrap(), ["start 3 epochs", "advance 1", "note stray output", "note epoch 1"]);
    }

    #[test]
    fn a_job_round_trips_through_json() {
        let job = WorkerJob {
            kind: "train".into(),
            part: WorkerPart::Merge { parts: vec!["/a".into()] },
            params: serde_json::from_str(r#"{"arch": "r3d18"}"#).unwrap(),
            inputs: vec![StageInput { kind: Some("split".into()), ..StageInput::new("split", "/s") }],
            out_dir: "/o".into(),
            base_dir: "/b".into(),
            threads: 2,
            resume_dir: Some("/r".into()),
        };
        let back: WorkerJob = serde_json::from_slice(&serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!((back.kind.as_str(), &back.part, back.inputs[0].dir.as_path(), back.threads), ("train", &job.part, Path::new("/s"), 2));
        assert_eq!(back.resume_dir.as_deref(), Some(Path::new("/r")));
        assert!(back.inputs[0].is_kind("split"));
    }

    #[test]
    fn a_missing_worker_is_named() {
        let err = locate_worker("no-such-worker-program-xyz").unwrap_err();
        assert!(err.message.contains("no-such-worker-program-xyz"), "{}", err.message);
    }
}
