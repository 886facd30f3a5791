//! The Slurm executor: one job per task, through the Slurm commands (there is no maintained
//! Rust client; Snakemake and Nextflow call the commands too).
//!
//! - submit: `sbatch --parsable --job-name RUN_ID ... --wrap "pipeline exec-task KEY"`, after the
//!   task's spec was written to the remote;
//! - poll: ONE `squeue --name RUN_ID` per interval for the whole run (whichever waiting thread
//!   finds the interval over does it for all); a job that left the queue is asked about once with
//!   `scontrol -o show job ID` for its final `JobState` and `ExitCode` (no accounting needed:
//!   `sacct` is often disabled);
//! - cancel: `scancel --name RUN_ID` (Ctrl-C).
//! - preemption: jobs are submitted with `--requeue`; a requeued job is PENDING again to the
//!   poll, and its next attempt resumes from the state the first kept (see [`crate::resume`]).
//! - shards of a data-parallel instance: ONE `sbatch --array=I,J,...` whose tasks run
//!   `exec-task KEY --shard $SLURM_ARRAY_TASK_ID/N`; `squeue --array` lists its tasks one per
//!   line (`ID_I`), and each task is followed like a job of its own.
//!
//! A task is done only when Slurm says its job ended AND its manifest is in the remote; the
//! result is then pulled (verified) into the local store. A job that ended any other way is a
//! failure whose message names the job, its state and exit code, and its log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use stage_api::Shard;

use super::batch::{BatchBackend, JobBoard, JobRecord, JobStatus, SchedulerError, WaitingJob, UNREACHABLE_LIMIT};
use super::{part_name, pull_result, put_spec, Context, Done, Part, RunError, Task};
use crate::config::{ExecutorConfig, Resources};
use crate::fingerprint::Key;
use crate::progress::Reporter;
use crate::remote::Remote;
use crate::store::Store;

/// Lines of a failed job's log shown in the error.
const LOG_TAIL_LINES: usize = 15;

pub struct Slurm {
    config: ExecutorConfig,
    /// The job name of every job of this run (one `squeue --name` finds them all).
    run_id: String,
    /// The binary the jobs run (this one).
    exe: PathBuf,
    config_file: PathBuf,
    remote_url: String,
    log_dir: PathBuf,
    /// The workspace's resumable states, handed to every job (`PIPELINE_RESUME_DIR`): a job's
    /// artifacts go to a scratch store, but a requeued job must find what its first attempt kept.
    resume_root: PathBuf,
    /// The run's jobs (array tasks as `ID_I`) and their states.
    board: JobBoard<JobState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// In the queue, with Slurm's state (PENDING, RUNNING, COMPLETING...).
    Queued(String),
    /// Left the queue.
    Ended { state: String, exit_code: String },
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobState::Queued(state) | JobState::Ended { state, .. } => f.write_str(state),
        }
    }
}

impl JobStatus for JobState {
    fn ended(&self) -> bool {
        matches!(self, JobState::Ended { .. })
    }

    fn unreachable(error: &str) -> Self {
        JobState::Ended {
            state: format!("UNKNOWN (controller unreachable for {} s: {error})", UNREACHABLE_LIMIT.as_secs()),
            exit_code: "?".into(),
        }
    }
}

impl Slurm {
    /// `remote_url` must be set: workers exchange results through it.
    pub fn new(config: ExecutorConfig, run_id: &str, remote_url: &str, config_file: &Path, store: &Store) -> std::io::Result<Self> {
        let log_dir = config.log_dir.clone().unwrap_or_else(|| store.root().join("slurm-logs"));
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self {
            run_id: run_id.to_owned(),
            exe: std::env::current_exe()?,
            config_file: std::fs::canonicalize(config_file)?,
            remote_url: remote_url.to_owned(),
            log_dir,
            resume_root: std::path::absolute(crate::resume::ResumeStates::for_store_dir(store.root()).root())?,
            board: JobBoard::new(config.poll_seconds),
            config,
        })
    }

    /// The `sbatch` arguments for a task of `stage` computing `key`; with `array`, a job array
    /// of those shards (of `Shard::count`), one array task each.
    fn sbatch_args(&self, stage: &str, key: &Key, base_dir: &Path, array: Option<&[Shard]>) -> Vec<String> {
        let log = if array.is_some() { "%A_%a.log" } else { "%j.log" };
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name={}", self.run_id),
            format!("--output={}", self.log_dir.join(log).display()),
            format!("--chdir={}", base_dir.display()),
            // A preempted or failed-node job goes back to the queue instead of failing; its
            // next attempt continues from the resumable state the first left (`crate::resume`),
            // and its log keeps both attempts.
            "--requeue".to_owned(),
            "--open-mode=append".to_owned(),
        ];
        if let Some(shards) = array {
            let indices: Vec<String> = shards.iter().map(|s| s.index.to_string()).collect();
            args.push(format!("--array={}", indices.join(",")));
        }
        if let Some(p) = &self.config.partition {
            args.push(format!("--partition={p}"));
        }
        args.extend(resource_args(&self.config.resources_for(stage)));
        args.extend(self.config.sbatch_args.iter().cloned());
        let command = [
            self.exe.to_string_lossy().as_ref(),
            "--config",
            self.config_file.to_string_lossy().as_ref(),
            "--remote",
            &self.remote_url,
            "exec-task",
            key.as_str(),
        ]
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
        // The array task's index is Slurm's to fill in, so this part is left unquoted.
        let shard = match array.and_then(|s| s.first()) {
            Some(s) => format!(" --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\"", s.count),
            None => String::new(),
        };
        args.push(format!("--wrap=exec {command}{shard}"));
        args
    }

    /// Submits the job (or job array) and returns its id.
    fn sbatch(&self, args: Vec<String>) -> Result<String, RunError> {
        let output = Command::new("sbatch")
            .args(args)
            .env(crate::resume::RESUME_DIR_VAR, &self.resume_root)
            .output()
            .map_err(|e| RunError::submit(format!("cannot run `sbatch` (is Slurm installed and on PATH?): {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(RunError::submit(format!("sbatch refused the job: {}", String::from_utf8_lossy(&output.stderr).trim())));
        }
        // `--parsable` prints `ID` or `ID;CLUSTER`.
        let id = stdout.trim().split(';').next().unwrap_or("").to_owned();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RunError::submit(format!("sbatch printed no job id (stdout {:?})", stdout.trim())));
        }
        Ok(id)
    }

    /// Starts following job `id` (a job, or one array task `ID_I`).
    fn follow(&self, id: &str, name: &str) {
        self.board.follow(id, name, JobState::Queued("PENDING".into()));
    }

    fn submit(&self, stage: &str, instance: &str, key: &Key, base_dir: &Path) -> Result<String, RunError> {
        let id = self.sbatch(self.sbatch_args(stage, key, base_dir, None))?;
        self.follow(&id, instance);
        Ok(id)
    }

    /// `shards` of the instance of `task` as one job array; one result per shard.
    fn run_array(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Result<Vec<Result<Done, RunError>>, RunError> {
        let Some(first) = shards.first() else { return Ok(Vec::new()) };
        let remote = put_spec(ctx, task, "slurm")?;
        let instance = &ctx.plan.instances[task.index];
        let name = instance.name.as_str();

        let array = self.sbatch(self.sbatch_args(&instance.stage, task.key, &ctx.plan.base_dir, Some(shards)))?;
        for shard in shards {
            self.follow(&format!("{array}_{}", shard.index), &part_name(name, Part::Shard(*shard)));
        }
        let log = self.log_dir.join(format!("{array}_%a.log"));
        let record = JobRecord::Slurm { instance: name.to_owned(), job_id: array.clone(), run_id: self.run_id.clone(), log };
        let _ = record.save(ctx.store, task.key);
        let wants = describe(&self.config.resources_for(&instance.stage));
        let which: Vec<String> = shards.iter().map(|s| (s.index + 1).to_string()).collect();
        ctx.reporter.line(&format!(
            "{name}: submitted as slurm array job {array} ({} tasks for shards {} of {}){wants}",
            shards.len(),
            which.join(", "),
            first.count
        ));

        let mut results = Vec::new();
        for shard in shards {
            let job = format!("{array}_{}", shard.index);
            let (state, exit_code) = self.wait(&job, ctx.reporter);
            let key = task.key.shard(shard.index, shard.count);
            results.push(self.collect(ctx, remote, &job, &state, &exit_code, &key, &part_name(name, Part::Shard(*shard)), task.force));
        }
        Ok(results)
    }

    /// After job `job` ended: its result, pulled from the remote into the local store, or why
    /// there is none.
    #[allow(clippy::too_many_arguments)]
    fn collect(
        &self,
        ctx: &Context<'_>,
        remote: &Remote,
        job: &str,
        state: &str,
        exit_code: &str,
        key: &Key,
        name: &str,
        force: bool,
    ) -> Result<Done, RunError> {
        let place = format!("slurm job {job} ({state})");
        if !remote.has(key) {
            return Err(RunError::no_result(format!(
                "slurm job {job} ended {state} (exit code {exit_code}) without publishing a result; {}{}",
                self.logs_hint(job),
                log_tail(&self.job_log(job))
            )));
        }
        let manifest = pull_result(ctx, remote, key, name, force)
            .map_err(|e| RunError::collect(format!("{place} published a result that cannot be pulled: {e}; {}", self.logs_hint(job))))?;
        Ok(Done { summary: manifest.summary.clone(), manifest, place })
    }

    /// Blocks until `job` left the queue; its final state and exit code.
    fn wait(&self, job: &str, reporter: &Reporter) -> (String, String) {
        match self.board.wait(self, job, reporter) {
            JobState::Ended { state, exit_code } => (state, exit_code),
            JobState::Queued(state) => (state, "?".into()),
        }
    }

    fn job_log(&self, job: &str) -> PathBuf {
        self.log_dir.join(format!("{job}.log"))
    }
}

impl BatchBackend for Slurm {
    type Status = JobState;
    const BACKEND: &'static str = "slurm";
    const SERVER: &'static str = "the controller";

    fn run_task(&self, ctx: &Context<'_>, task: &Task<'_>) -> Result<Done, RunError> {
        let remote = put_spec(ctx, task, "slurm")?;
        let instance = &ctx.plan.instances[task.index];
        let name = instance.name.as_str();

        let job = self.submit(&instance.stage, name, task.key, &ctx.plan.base_dir)?;
        let log = self.job_log(&job);
        let record = JobRecord::Slurm { instance: name.to_owned(), job_id: job.clone(), run_id: self.run_id.clone(), log };
        let _ = record.save(ctx.store, task.key);
        let wants = describe(&self.config.resources_for(&instance.stage));
        ctx.reporter.line(&format!("{name}: submitted as slurm job {job}{wants}"));

        let (state, exit_code) = self.wait(&job, ctx.reporter);
        self.collect(ctx, remote, &job, &state, &exit_code, task.key, name, task.force)
    }

    fn run_shard_tasks(&self, ctx: &Context<'_>, task: &Task<'_>, shards: &[Shard]) -> Result<Vec<Result<Done, RunError>>, RunError> {
        self.run_array(ctx, task, shards)
    }

    /// One `squeue` for every job of the run; `scontrol` for those that left the queue.
    fn query(&self, waiting: &[WaitingJob]) -> Result<Vec<(String, JobState)>, SchedulerError> {
        let queue = squeue(&self.run_id)?;
        waiting
            .iter()
            .map(|job| {
                let state = match queue.get(&job.id) {
                    Some(state) => JobState::Queued(state.clone()),
                    None => match show_job(&job.id)? {
                        Some((state, _)) if !is_terminal(&state) => JobState::Queued(state),
                        Some((state, exit_code)) => JobState::Ended { state, exit_code },
                        // Purged from the controller's memory (older than MinJobAge), or an array
                        // task cancelled before it started (its record is dropped at once).
                        None => JobState::Ended {
                            state: "UNKNOWN (no longer known to the controller: purged, or cancelled before it started)".into(),
                            exit_code: "?".into(),
                        },
                    },
                };
                Ok((job.id.clone(), state))
            })
            .collect()
    }

    fn cancel_run(&self) {
        let _ = Command::new("scancel").arg(format!("--name={}", self.run_id)).status();
    }

    fn logs_hint(&self, job: &str) -> String {
        format!("job log: {}", self.job_log(job).display())
    }
}

/// `sbatch` flags for `resources`.
fn resource_args(r: &Resources) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(cpus) = r.cpus {
        args.push(format!("--cpus-per-task={cpus}"));
    }
    if let Some(mb) = r.mem_mb {
        args.push(format!("--mem={mb}M"));
    }
    if let Some(time) = &r.time {
        args.push(format!("--time={time}"));
    }
    if let Some(gpus) = r.gpus {
        args.push(format!("--gres=gpu:{gpus}"));
    }
    args
}

/// ` (cpus 2, mem 100M, gpus 1)`, or nothing.
pub(crate) fn describe(r: &Resources) -> String {
    let mut parts = Vec::new();
    if let Some(c) = r.cpus {
        parts.push(format!("cpus {c}"));
    }
    if let Some(m) = r.mem_mb {
        parts.push(format!("mem {m}M"));
    }
    if let Some(t) = &r.time {
        parts.push(format!("time {t}"));
    }
    if let Some(g) = r.gpus {
        parts.push(format!("gpus {g}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// Job id -> state of every job named `run_id` still in the queue (array tasks as `ID_I`).
fn squeue(run_id: &str) -> Result<BTreeMap<String, String>, SchedulerError> {
    let output = Command::new("squeue")
        .args(["--noheader", "--array", &format!("--name={run_id}"), "--format=%i %T"])
        .output()
        .map_err(|source| SchedulerError::Spawn { command: "squeue", source })?;
    if !output.status.success() {
        return Err(SchedulerError::Failed { command: "squeue", said: String::from_utf8_lossy(&output.stderr).trim().to_owned() });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, state)| (id.trim().to_owned(), state.trim().to_owned()))
        .collect())
}

/// `(JobState, ExitCode)` of a job; `None` when the controller no longer knows it.
fn show_job(id: &str) -> Result<Option<(String, String)>, SchedulerError> {
    let output = scontrol_show_job(id)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // "Invalid job id specified" on stderr; "Job 12_3 not found" (an array task) on stdout.
        let said = format!("{} {}", stderr.trim(), String::from_utf8_lossy(&output.stdout).trim());
        if said.contains("Invalid job id") || said.contains("not found") {
            return Ok(None);
        }
        return Err(SchedulerError::Failed { command: "scontrol", said: said.trim().to_owned() });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(parse_show_job(&text))
}

fn parse_show_job(text: &str) -> Option<(String, String)> {
    let field =
        |name: &str| text.split_whitespace().find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_owned);
    Some((field("JobState")?, field("ExitCode").unwrap_or_else(|| "?".into())))
}

/// Whether a Slurm job state is final.
fn is_terminal(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "REQUEUE_FED"
            | "REQUEUE_HOLD"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
    )
}

fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else { return String::new() };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n  end of the job log:\n    {}", tail.join("\n    "))
    }
}

fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b)) {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// For `pipeline status`: the last job submitted for `key` and what Slurm says of it now,
/// e.g. `slurm job 12: RUNNING`. `None` when no job was submitted for this key.
pub fn job_note(store: &Store, key: &Key) -> Option<String> {
    let JobRecord::Slurm { job_id, log, .. } = JobRecord::load(store, key)? else { return None };
    let state = match show_job_lines(&job_id) {
        // A job array: how many of its tasks are in each state.
        Ok(lines) if lines.len() > 1 => {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for (state, _) in &lines {
                *counts.entry(state.clone()).or_default() += 1;
            }
            let counts: Vec<String> = counts.into_iter().map(|(s, n)| format!("{n} {s}")).collect();
            format!("array of {} tasks: {}", lines.len(), counts.join(", "))
        }
        Ok(lines) => match lines.into_iter().next() {
            Some((state, exit)) if is_terminal(&state) => format!("{state} (exit code {exit})"),
            Some((state, _)) => state,
            None => "no longer known to Slurm".into(),
        },
        Err(e) => format!("state unknown ({e})"),
    };
    Some(format!("slurm job {job_id}: {state}, log {}", log.display()))
}

/// `(JobState, ExitCode)` of each line `scontrol -o show job ID` prints (one per task of a job
/// array); empty when the controller no longer knows the job.
fn show_job_lines(id: &str) -> Result<Vec<(String, String)>, SchedulerError> {
    let output = scontrol_show_job(id)?;
    if !output.status.success() {
        return show_job(id).map(|s| s.into_iter().collect());
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().filter_map(parse_show_job).collect())
}

/// `scontrol -o show job ID`, run.
fn scontrol_show_job(id: &str) -> Result<std::process::Output, SchedulerError> {
    Command::new("scontrol")
        .args(["-o", "show", "job", id])
        .output()
        .map_err(|source| SchedulerError::Spawn { command: "scontrol", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scontrol_one_liners() {
        let line = "JobId=7 JobName=pl-1 UserId=root(0) JobState=CANCELLED Reason=None Dependency=(null) ExitCode=0:15 RunTime=00:00:01";
        assert_eq!(parse_show_job(line), Some(("CANCELLED".into(), "0:15".into())));
        assert_eq!(parse_show_job("garbage"), None);
    }

    #[test]
    fn resources_become_sbatch_flags() {
        let r = Resources { cpus: Some(2), mem_mb: Some(4096), time: Some("01:00:00".into()), gpus: Some(1), shards: Some(4) };
        assert_eq!(resource_args(&r), ["--cpus-per-task=2", "--mem=4096M", "--time=01:00:00", "--gres=gpu:1"]);
        assert!(resource_args(&Resources::default()).is_empty());
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("/usr/bin/pipeline"), "/usr/bin/pipeline");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn terminal_states() {
        assert!(is_terminal("COMPLETED") && is_terminal("CANCELLED") && is_terminal("NODE_FAIL"));
        assert!(!is_terminal("RUNNING") && !is_terminal("COMPLETING"));
    }
}
