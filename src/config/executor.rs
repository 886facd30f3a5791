//! The validated `executor:` section: where stage instances run and what each asks for.
//!
//! ```yaml
//! executor:
//!   kind: slurm                 # local (default) | slurm | kubernetes
//!   partition: gpu              # slurm, optional
//!   poll_seconds: 2             # one scheduler query per interval for the whole run
//!   log_dir: logs/slurm         # slurm: job logs (default <store>/slurm-logs)
//!   sbatch_args: [--account=lab]  # slurm
//!   namespace: ml               # kubernetes (default: the kubeconfig's, else `default`)
//!   image: registry/pipeline:1  # kubernetes, required: `pipeline`, `pipeline-torch` and the checkout
//!   workdir: /work              # kubernetes: this working directory in the image (default: same path)
//!   resources:
//!     default: {cpus: 2, mem: 4G, time: "01:00:00"}
//!     train: {gpus: 1}          # merged over `default`
//!     extract: {shards: 8}      # a data-parallel stage as 8 tasks (a job array), then a merge
//! ```
//!
//! The keys of one scheduler are an error under the other's `kind`; `kind: local` accepts both
//! (`--executor` may pick either).

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
    Kubernetes,
}

/// The error for the kubernetes executor without `image:`, and its hint.
pub const KUBERNETES_NEEDS_IMAGE: &str = "the kubernetes executor needs `image:` in the `executor:` section";
pub const KUBERNETES_IMAGE_HINT: &str =
    "the container image the Jobs run: it holds the same `pipeline` binary and its `pipeline-torch` worker (side by side, on PATH) and this checkout (at `workdir`, default the same path as here)";

const SLURM_KEYS: [&str; 3] = ["partition", "log_dir", "sbatch_args"];
const KUBERNETES_KEYS: [&str; 3] = ["namespace", "image", "workdir"];

/// What one stage's instances ask the scheduler for; `None` leaves it to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: Option<u32>,
    /// Megabytes.
    pub mem_mb: Option<u64>,
    pub time: Option<String>,
    pub gpus: Option<u32>,
    /// Tasks a data-parallel stage is split into (`None` or 1: one task). Per stage only.
    pub shards: Option<u32>,
}

impl Resources {
    /// `self`, with what it leaves unset taken from `base`.
    fn over(&self, base: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(base.cpus),
            mem_mb: self.mem_mb.or(base.mem_mb),
            time: self.time.clone().or_else(|| base.time.clone()),
            gpus: self.gpus.or(base.gpus),
            shards: self.shards.or(base.shards),
        }
    }

    /// `time` in seconds (Kubernetes' `activeDeadlineSeconds`).
    pub fn time_seconds(&self) -> Option<u64> {
        time_seconds(self.time.as_deref()?)
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
    /// Kubernetes: the Jobs' namespace (`None`: the kubeconfig's).
    pub namespace: Option<String>,
    /// Kubernetes: the container image (required for that kind).
    pub image: Option<String>,
    /// Kubernetes: the coordinator's working directory in the image (`None`: the same path).
    pub workdir: Option<String>,
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
            namespace: None,
            image: None,
            workdir: None,
            default: Resources::default(),
            per_stage: BTreeMap::new(),
            position: None,
        }
    }
}

impl ExecutorConfig {
    /// How many tasks an instance of `stage` is split into (1: not split).
    pub fn shards_for(&self, stage: &str) -> usize {
        self.per_stage.get(stage).and_then(|r| r.shards).map_or(1, |n| n as usize)
    }

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
        RawExecutorKind::Kubernetes => ExecutorKind::Kubernetes,
    };
    other_schedulers_keys(raw, kind)?;
    if kind == ExecutorKind::Kubernetes && raw.image.is_none() {
        let mut e = invalid(&["executor", "kind"], KUBERNETES_NEEDS_IMAGE);
        e.hint = Some(KUBERNETES_IMAGE_HINT.into());
        return Err(e);
    }
    if let Some(ns) = &raw.namespace {
        if !dns_label(ns) {
            let mut e = invalid(&["executor", "namespace"], format!("bad namespace `{ns}`"));
            e.hint = Some(
                "a Kubernetes namespace: at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit".into(),
            );
            return Err(e);
        }
    }
    if let Some(image) = &raw.image {
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            return Err(invalid(&["executor", "image"], format!("bad image name `{image}`")));
        }
    }
    if let Some(dir) = &raw.workdir {
        if !dir.starts_with('/') {
            let mut e = invalid(&["executor", "workdir"], format!("`workdir` must be an absolute path in the image, not `{dir}`"));
            e.hint = Some("where the working directory you run `pipeline` from lies inside the image, e.g. `/work`".into());
            return Err(e);
        }
    }
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
        if name == "default" && checked.shards.is_some() {
            let mut e = invalid(&["executor", "resources", "default", "shards"], "`shards` is set per stage, not under `default`");
            e.hint = Some("put it under the data-parallel stage itself, e.g. `extract: {shards: 8}`".into());
            return Err(e);
        }
        if name == "default" {
            default = checked;
        } else if stages.contains(&name.as_str()) {
            per_stage.insert(name.clone(), checked);
        } else {
            let mut e =
                invalid(&["executor", "resources", name], format!("`resources` names `{name}`, which is neither `default` nor a stage"));
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
        namespace: raw.namespace.clone(),
        image: raw.image.clone(),
        workdir: raw.workdir.clone(),
        default,
        per_stage,
        position: None,
    })
}

/// A key of one scheduler under the other's `kind` is an error (it would be silently ignored).
fn other_schedulers_keys(raw: &RawExecutor, kind: ExecutorKind) -> Result<(), Invalid> {
    let set = |key: &str| match key {
        "partition" => raw.partition.is_some(),
        "log_dir" => raw.log_dir.is_some(),
        "sbatch_args" => !raw.sbatch_args.is_empty(),
        "namespace" => raw.namespace.is_some(),
        "image" => raw.image.is_some(),
        "workdir" => raw.workdir.is_some(),
        _ => false,
    };
    let (foreign, own, this, other) = match kind {
        ExecutorKind::Local => return Ok(()),
        ExecutorKind::Slurm => (KUBERNETES_KEYS, SLURM_KEYS, "slurm", "kubernetes"),
        ExecutorKind::Kubernetes => (SLURM_KEYS, KUBERNETES_KEYS, "kubernetes", "slurm"),
    };
    match foreign.into_iter().find(|k| set(k)) {
        None => Ok(()),
        Some(key) => {
            let mut e = invalid(&["executor", key], format!("`{key}` is a {other} setting, but `kind` is {this}"));
            e.hint = Some(format!(
                "the {this} executor's own keys are {}, `poll_seconds` and `resources`; remove `{key}`",
                own.map(|k| format!("`{k}`")).join(", ")
            ));
            Err(e)
        }
    }
}

/// A DNS-1123 label (what a namespace name must be).
fn dns_label(text: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = text.as_bytes();
    !bytes.is_empty() && bytes.len() <= 63 && ok(bytes[0]) && ok(bytes[bytes.len() - 1]) && bytes.iter().all(|&b| ok(b) || b == b'-')
}

fn resources(raw: &RawResources, name: &str) -> Result<Resources, Invalid> {
    let at = |field: &str| vec!["executor", "resources", name, field].into_iter().map(str::to_owned).collect::<Vec<_>>();
    let fail = |field: &str, message: String, hint: &str| Invalid { path: at(field), message, hint: Some(hint.to_owned()) };
    if raw.cpus == Some(0) {
        return Err(fail("cpus", format!("`{name}` asks for 0 cpus"), "ask for at least 1, or leave `cpus` out"));
    }
    let mem_mb = match &raw.mem {
        None => None,
        Some(RawMem::Megabytes(0)) => {
            return Err(fail("mem", format!("`{name}` asks for 0 MB of memory"), "leave `mem` out for the cluster's default"))
        }
        Some(RawMem::Megabytes(n)) => Some(*n),
        Some(RawMem::Text(text)) => Some(parse_mem(text).ok_or_else(|| {
            fail(
                "mem",
                format!("bad memory size `{text}` for `{name}`"),
                "a number of megabytes, or a number with K, M, G or T (`500M`, `4G`)",
            )
        })?),
    };
    if let Some(time) = &raw.time {
        if !valid_time(time) {
            return Err(fail(
                "time",
                format!("bad time limit `{time}` for `{name}`"),
                "Slurm's format: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS",
            ));
        }
    }
    if raw.shards == Some(0) {
        return Err(fail("shards", format!("`{name}` asks for 0 shards"), "at least 1 (1 runs the stage as one task)"));
    }
    Ok(Resources { cpus: raw.cpus, mem_mb, time: raw.time.clone(), gpus: raw.gpus.filter(|&g| g > 0), shards: raw.shards })
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

/// Seconds in a time limit of Slurm's format (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
/// `D-HH:MM:SS`).
fn time_seconds(text: &str) -> Option<u64> {
    if !valid_time(text) {
        return None;
    }
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, text),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (h, m, s) = match (text.contains('-'), parts.as_slice()) {
        (false, [m]) => (0, *m, 0),
        (false, [m, s]) => (0, *m, *s),
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        (_, [h, m, s]) => (*h, *m, *s),
        _ => return None,
    };
    Some(((days * 24 + h) * 60 + m) * 60 + s)
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
    fn time_limits_in_seconds() {
        for (text, seconds) in
            [("5", 300), ("30:15", 1815), ("01:30:00", 5400), ("2-00", 172_800), ("1-02:03", 93_780), ("1-00:00:07", 86_407)]
        {
            assert_eq!(time_seconds(text), Some(seconds), "{text}");
        }
        assert_eq!(time_seconds("1h"), None);
        let r = Resources { time: Some("10".into()), ..Default::default() };
        assert_eq!(r.time_seconds(), Some(600));
        assert_eq!(Resources::default().time_seconds(), None);
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert!(dns_label("default") && dns_label("ml-team-2") && dns_label("a"));
        for bad in ["", "ML", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn stage_resources_are_merged_over_default() {
        let mut config =
            ExecutorConfig { default: Resources { cpus: Some(2), mem_mb: Some(100), ..Default::default() }, ..Default::default() };
        config.per_stage.insert("train".into(), Resources { gpus: Some(1), cpus: Some(4), ..Default::default() });
        assert_eq!(config.resources_for("train"), Resources { cpus: Some(4), mem_mb: Some(100), time: None, gpus: Some(1), shards: None });
        assert_eq!(config.resources_for("scan"), config.default);
    }
}
