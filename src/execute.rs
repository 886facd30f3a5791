//! Runs one stage instance's action into a private output directory.
//!
//! Built-in stages run in-process (a panic is caught and reported as a failure); `run:` stages
//! run with `sh -c` in the directory of `pipeline.yaml`, in a process group that dies with
//! `pipeline` ([`stage_api::process`]), with `PIPELINE_OUT`,
//! `PIPELINE_IN_<NEED>` and `PIPELINE_PARAM_<KEY>` set. Their stdout and stderr go to the
//! artifact's `log.txt`; on failure the end of stderr is part of the error.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stage_api::{panic_message, ArtifactPaths, Params, Progress, Shard, StageContext, StageError, StageInput};

use crate::config::canonical::display_value;
use crate::config::Action;

/// Lines of stderr shown when a shell stage fails.
const STDERR_TAIL_LINES: usize = 20;

/// Which part of a built-in stage's work a job does (see [`crate::executor::Part`]).
pub enum JobPart {
    Whole,
    Shard(Shard),
    /// The shards' published output directories, in order.
    Merge(Vec<PathBuf>),
}

pub struct Job<'a> {
    pub instance: &'a str,
    pub part: JobPart,
    pub action: &'a Action,
    pub params: &'a Params,
    pub upstream: &'a [StageInput],
    pub base_dir: &'a Path,
    /// The private directory: the output goes to `<work_dir>/out`, the log to `log.txt`.
    pub work_dir: &'a Path,
    pub threads: usize,
    pub progress: &'a dyn Progress,
    pub artifacts: &'a dyn ArtifactPaths,
    /// The key's resumable-state folder ([`crate::resume`]); `PIPELINE_RESUME` for `run:` stages.
    pub resume_dir: Option<&'a Path>,
}

/// Runs the job; `Ok(summary)`, or the stage's error (a `run:` command's names its log).
pub fn execute(job: &Job<'_>) -> Result<String, StageError> {
    match job.action {
        Action::Builtin(stage) => {
            let out_dir = job.work_dir.join("out");
            let ctx = StageContext {
                params: job.params,
                inputs: job.upstream,
                out_dir: &out_dir,
                base_dir: job.base_dir,
                progress: job.progress,
                threads: job.threads,
                artifacts: job.artifacts,
                resume_dir: job.resume_dir,
            };
            let work = || match &job.part {
                JobPart::Whole => stage.run(&ctx),
                JobPart::Shard(shard) => stage.run_shard(&ctx, *shard),
                JobPart::Merge(parts) => stage.merge(&ctx, parts),
            };
            match catch_unwind(AssertUnwindSafe(work)) {
                Ok(Ok(outcome)) => Ok(outcome.summary),
                Ok(Err(e)) => Err(e),
                Err(panic) => Err(StageError::msg(format!("stage `{}` panicked: {}", stage.kind(), panic_message(&panic)))),
            }
        }
        Action::Shell { .. } if !matches!(job.part, JobPart::Whole) => Err(StageError::msg("a `run:` stage cannot be split into shards")),
        Action::Shell { command } => run_shell(command, job),
    }
}

fn run_shell(command: &str, job: &Job<'_>) -> Result<String, StageError> {
    let stdout_path = job.work_dir.join("stdout.txt");
    let stderr_path = job.work_dir.join("stderr.txt");
    let io_err = |what: &str, e: std::io::Error| StageError::with_source(what, e);
    let stdout = fs::File::create(&stdout_path).map_err(|e| io_err("creating the stage log", e))?;
    let stderr = fs::File::create(&stderr_path).map_err(|e| io_err("creating the stage log", e))?;
    // The command runs under a guard shell that leads its own process group and kills that
    // group when `pipeline` dies (also on kill -9), so no part of a killed run goes on writing.
    let mut cmd = Command::new("sh");
    stage_api::process::group_dies_with_parent(&mut cmd);
    cmd.arg("-c")
        .arg(stage_api::process::GROUP_GUARD)
        .arg("sh")
        .arg(command)
        .current_dir(job.base_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .env("PIPELINE_OUT", job.work_dir.join("out"))
        .env("PIPELINE_STAGE", job.instance)
        .env("PIPELINE_THREADS", job.threads.to_string());
    if let Some(dir) = job.resume_dir {
        cmd.env("PIPELINE_RESUME", dir);
    }
    for (need, dirs) in group_inputs(job.upstream) {
        cmd.env(format!("PIPELINE_IN_{}", env_name(&need)), dirs);
    }
    for (key, value) in job.params {
        cmd.env(format!("PIPELINE_PARAM_{}", env_name(key)), display_value(value));
    }
    let status = cmd.status().map_err(|e| io_err("cannot start `sh`", e))?;
    // The log is a convenience: failing to write it does not fail the stage.
    let _ = combine_logs(&stdout_path, &stderr_path, &job.work_dir.join("log.txt"));
    if status.success() {
        let summary = fs::read_to_string(&stdout_path)
            .ok()
            .and_then(|s| s.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned))
            .unwrap_or_default();
        let _ = (fs::remove_file(&stdout_path), fs::remove_file(&stderr_path));
        return Ok(summary);
    }
    let stderr_text = fs::read_to_string(&stderr_path).unwrap_or_default();
    let lines: Vec<&str> = stderr_text.lines().collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n    ");
    let how = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    };
    if tail.is_empty() {
        // Its error messages went to a file on the same disk: on a full one they are lost too.
        if let Some(full) = full_disk_note(job.work_dir) {
            return Err(StageError::msg(format!("command failed ({how}); {full}")));
        }
    }
    Err(StageError::msg(if tail.is_empty() {
        format!("command failed ({how})")
    } else {
        format!("command failed ({how}); end of stderr:\n    {tail}")
    }))
}

/// When the file system of `dir` has no space left: a message saying so, naming `dir`.
fn full_disk_note(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only fills the struct it is given; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 || st.f_bavail > 0 {
        return None;
    }
    Some(format!(
        "{}: No space left on device (the disk is full, so neither the output nor the command's error messages could be written)",
        dir.display()
    ))
}

/// `PIPELINE_IN_<NEED>`: one directory, or a `:`-separated list for a matrix need.
fn group_inputs(upstream: &[StageInput]) -> Vec<(String, String)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for u in upstream {
        let dir = u.dir.to_string_lossy().into_owned();
        match groups.iter_mut().find(|(n, _)| *n == u.need) {
            Some((_, dirs)) => dirs.push(dir),
            None => groups.push((u.need.clone(), vec![dir])),
        }
    }
    groups.into_iter().map(|(n, d)| (n, d.join(":"))).collect()
}

/// Upper-cased, every character other than a letter or digit turned into `_`.
pub fn env_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn combine_logs(stdout: &Path, stderr: &Path, log: &Path) -> std::io::Result<()> {
    let mut text = fs::read_to_string(stdout).unwrap_or_default();
    let err = fs::read_to_string(stderr).unwrap_or_default();
    if !err.is_empty() {
        text.push_str("\n--- stderr ---\n");
        text.push_str(&err);
    }
    fs::write(log, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_upper_case_with_underscores() {
        assert_eq!(env_name("train-resnet.v2"), "TRAIN_RESNET_V2");
    }
}
