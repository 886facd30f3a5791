//! The validated `executor:` section: where stage instances run and what each asks for.
//!
//! ```yaml
//! executor:
//!   kind: slurm                 # local (default) | slurm
//!   partition: gpu              # optional
//!   poll_seconds: 2             # one scheduler query per interval for the whole run
//!   log_dir: logs/slurm         # job logs (default <store>/slurm-logs)
//!   sbatch_args: [--account=lab]
//!   resources:
//!     default: {cpus: 2, mem: 4G, time: "01:00:00"}
//!     train: {gpus: 1}          # merged over `default`
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::raw::{RawExecutor, RawExecutorKind, RawMem, RawResources};
use super::spans::Position;

/// Default seconds between two scheduler queries.
pub const DEFAULT_POLL_SECONDS: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

/// What one stage's instances ask the scheduler for; `None` leaves it to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: Option<u32>,
    /// Megabytes.
    pub mem_mb: Option<u64>,
    pub time: Option<String>,
    pub gpus: Option<u32>,
}

impl Resources {
    /// `self`, with what it leaves unset taken from `base`.
    fn over(&self, base: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(base.cpus),
            mem_mb: self.mem_mb.or(base.mem_mb),
            time: self.time.clone().or_else(|| base.time.clone()),
            gpus: self.gpus.or(base.gpus),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    pub partition: Option<String>,
    pub poll_seconds: f64,
    /// Absolute.
    pub log_dir: Option<PathBuf>,
    pub sbatch_args: Vec<String>,
    pub default: Resources,
    pub per_stage: BTreeMap<String, Resources>,
    /// Where `executor.kind` is in the file (for errors found later, such as a missing remote).
    pub position: Option<Position>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            kind: ExecutorKind::Local,
            partition: None,
            poll_seconds: DEFAULT_POLL_SECONDS,
            log_dir: None,
            sbatch_args: Vec::new(),
            default: Resources::default(),
            per_stage: BTreeMap::new(),
            position: None,
        }
    }
}

impl ExecutorConfig {
    /// What an instance of `stage` asks for: its own entry over `default`.
    pub fn resources_for(&self, stage: &str) -> Resources {
        self.per_stage.get(stage).map_or_else(|| self.default.clone(), |r| r.over(&self.default))
    }
}

/// A problem in the section: the path of the offending node and a message.
pub struct Invalid {
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

fn invalid(path: &[&str], message: impl Into<String>) -> Invalid {
    Invalid { path: path.iter().map(|s| s.to_string()).collect(), message: message.into(), hint: None }
}

/// Checks the raw section; `stages` are the stage names `resources:` may use.
pub fn validate(raw: &RawExecutor, stages: &[&str], base_dir: &std::path::Path) -> Result<ExecutorConfig, Invalid> {
    let kind = match raw.kind {
        RawExecutorKind::Local => ExecutorKind::Local,
        RawExecutorKind::Slurm => ExecutorKind::Slurm,
        RawExecutorKind::Kubernetes => {
            let mut e = invalid(&["executor", "kind"], "the kubernetes executor is not implemented yet");
            e.hint = Some("use `kind: slurm` or `kind: local`".into());
            return Err(e);
        }
    };
    let poll_seconds = raw.poll_seconds.unwrap_or(DEFAULT_POLL_SECONDS);
    if !(poll_seconds.is_finite() && poll_seconds > 0.0) {
        return Err(invalid(&["executor", "poll_seconds"], format!("`poll_seconds` must be a positive number, not {poll_seconds}")));
    }
    if let Some(p) = &raw.partition {
        if p.is_empty() || p.chars().any(char::is_whitespace) {
            return Err(invalid(&["executor", "partition"], format!("bad partition name `{p}`")));
        }
    }
    let mut default = Resources::default();
    let mut per_stage = BTreeMap::new();
    for (name, res) in &raw.resources {
        let checked = resources(res, name)?;
        if name == "default" {
            default = checked;
        } else if stages.contains(&name.as_str()) {
            per_stage.insert(name.clone(), checked);
        } else {
            let mut e = invalid(&["executor", "resources", name], format!("`resources` names `{name}`, which is neither `default` nor a stage"));
            e.hint = super::error::did_you_mean(name, stages.iter().copied().chain(["default"]))
                .or_else(|| Some(format!("stages: {}", stages.join(", "))));
            return Err(e);
        }
    }
    Ok(ExecutorConfig {
        kind,
        partition: raw.partition.clone(),
        poll_seconds,
        log_dir: raw.log_dir.as_ref().map(|d| base_dir.join(d)),
        sbatch_args: raw.sbatch_args.clone(),
        default,
        per_stage,
        position: None,
    })
}

fn resources(raw: &RawResources, name: &str) -> Result<Resources, Invalid> {
    let at = |field: &str| vec!["executor", "resources", name, field].into_iter().map(str::to_owned).collect::<Vec<_>>();
    let fail = |field: &str, message: String, hint: &str| Invalid { path: at(field), message, hint: Some(hint.to_owned()) };
    if raw.cpus == Some(0) {
        return Err(fail("cpus", format!("`{name}` asks for 0 cpus"), "ask for at least 1, or leave `cpus` out"));
    }
    let mem_mb = match &raw.mem {
        None => None,
        Some(RawMem::Megabytes(0)) => return Err(fail("mem", format!("`{name}` asks for 0 MB of memory"), "leave `mem` out for the cluster's default")),
        Some(RawMem::Megabytes(n)) => Some(*n),
        Some(RawMem::Text(text)) => Some(parse_mem(text).ok_or_else(|| {
            fail("mem", format!("bad memory size `{text}` for `{name}`"), "a number of megabytes, or a number with K, M, G or T (`500M`, `4G`)")
        })?),
    };
    if let Some(time) = &raw.time {
        if !valid_time(time) {
            return Err(fail("time", format!("bad time limit `{time}` for `{name}`"), "Slurm's format: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"));
        }
    }
    Ok(Resources { cpus: raw.cpus, mem_mb, time: raw.time.clone(), gpus: raw.gpus.filter(|&g| g > 0) })
}

/// `4G` -> 4096 (megabytes); a bare number is megabytes.
fn parse_mem(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mb = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" | "M" => n,
        "K" => n.div_ceil(1024),
        "G" => n.checked_mul(1024)?,
        "T" => n.checked_mul(1024 * 1024)?,
        _ => return None,
    };
    (mb > 0).then_some(mb)
}

/// Slurm's time formats, checked by shape.
fn valid_time(text: &str) -> bool {
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, text),
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    if days.is_some_and(|d| !number(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| number(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("4G"), Some(4096));
        assert_eq!(parse_mem("500M"), Some(500));
        assert_eq!(parse_mem("500"), Some(500));
        assert_eq!(parse_mem("2048K"), Some(2));
        assert_eq!(parse_mem("1gb"), Some(1024));
        assert_eq!(parse_mem("4X"), None);
        assert_eq!(parse_mem("G"), None);
        assert_eq!(parse_mem("0"), None);
    }

    #[test]
    fn time_limits() {
        for ok in ["30", "30:00", "01:30:00", "2-00", "2-12:00:00"] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "a-01"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn stage_resources_are_merged_over_default() {
        let mut config = ExecutorConfig { default: Resources { cpus: Some(2), mem_mb: Some(100), ..Default::default() }, ..Default::default() };
        config.per_stage.insert("train".into(), Resources { gpus: Some(1), cpus: Some(4), ..Default::default() });
        assert_eq!(config.resources_for("train"), Resources { cpus: Some(4), mem_mb: Some(100), time: None, gpus: Some(1) });
        assert_eq!(config.resources_for("scan"), config.default);
    }
}
