//! The contract between the pipeline engine (`src/`) and the domain stages (`stages/*`).
//!
//! A stage is a function from typed parameters and input directories to an output directory,
//! with a progress callback. This crate holds only that contract so that stage crates never
//! depend on the engine and the engine never depends on video or model code beyond one
//! registry that maps a kind name (`uses: extract`) to a [`Stage`].
//!
//! The engine guarantees, for every call of [`Stage::run`]:
//! - `out_dir` exists and is empty; it is a private temporary directory that the engine hashes
//!   and publishes atomically only if `run` returns `Ok`. A stage never needs to clean up after
//!   a failure and never sees a half-written earlier result.
//! - every directory in `inputs` is a published, immutable upstream output. Stages must not
//!   write into them.
//! - `params` went through [`Stage::resolve_params`] first (typed, defaults filled in).
//!
//! ```
//! use stage_api::{typed_params, Params};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct P { #[serde(default = "ten")] frames: u32 }
//! fn ten() -> u32 { 10 }
//! let (p, canonical): (P, Params) = typed_params(&Params::new()).unwrap();
//! assert_eq!(p.frames, 10);
//! assert_eq!(canonical["frames"], 10);
//! ```

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub mod process;
pub mod testing;
pub mod worker;

/// Parameters of a stage instance: the `with:` mapping (plus matrix values) as JSON.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// An upstream output a stage reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageInput {
    /// The stage name as written in `needs:` (e.g. `train`).
    pub need: String,
    /// The instance name (e.g. `train[arch=r3d18]`); equal to `need` without a matrix. For
    /// messages: pair inputs by [`StageInput::kind`] and [`StageInput::matrix`], never by
    /// parsing this.
    pub instance: String,
    /// The upstream's stage kind (`uses: train` gives `train`); `None` for a `run:` stage.
    #[serde(default)]
    pub kind: Option<String>,
    /// The upstream instance's matrix values (`{"arch": "r3d18"}`); empty without a matrix.
    #[serde(default)]
    pub matrix: Params,
    /// The instance's resolved parameters (`with:` plus matrix values, defaults filled in).
    pub params: Params,
    /// The published, read-only output directory of that instance.
    pub dir: PathBuf,
}

impl StageInput {
    /// An input from the need `need` (instance of the same name, no kind, no matrix) in `dir`.
    pub fn new(need: &str, dir: impl Into<PathBuf>) -> Self {
        Self { need: need.into(), instance: need.into(), kind: None, matrix: Params::new(), params: Params::new(), dir: dir.into() }
    }

    /// Whether this input comes from a stage of kind `kind`.
    pub fn is_kind(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// Where a stage reports progress; the engine draws bars or prints plain lines.
pub trait Progress: Send + Sync {
    /// Announces `total` units of work (clips, epochs, ...) named by `unit`.
    fn start(&self, total: u64, unit: &str);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// A line worth showing to the user (a warning, an epoch summary).
    fn note(&self, message: &str);
}

/// A progress sink that drops everything (tests, library use).
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: u64, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn note(&self, _message: &str) {}
}

/// Maps paths that point into the engine's artifact store between "as written in a table" and
/// "where the file is on this machine".
///
/// A stage that records paths into upstream outputs in its own output (scan: the `source` of each
/// synthetic video) writes them through [`ArtifactPaths::portable`], and a stage that reads such a
/// table opens the files through [`ArtifactPaths::locate`]. On one machine both are the identity;
/// on a cluster worker, whose store is private and lies elsewhere, `portable` gives the path the
/// coordinator's store would have (so the table is byte-identical to a local run) and `locate`
/// maps it back into the worker's store, fetching the artifact from the remote cache first when
/// the worker does not have it (extract reads the videos of `synth`, two stages up).
pub trait ArtifactPaths: Send + Sync {
    /// `path` (absolute) as it would be in the pipeline's configured store.
    fn portable(&self, path: &Path) -> PathBuf;
    /// `path` (absolute) as a file on this machine; `Err` names the file and why it cannot be
    /// had.
    fn locate(&self, path: &Path) -> Result<PathBuf, StageError>;
}

/// The store is where the pipeline file says: paths need no mapping (tests, library use).
pub struct SameStore;

impl ArtifactPaths for SameStore {
    fn portable(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }

    fn locate(&self, path: &Path) -> Result<PathBuf, StageError> {
        Ok(path.to_path_buf())
    }
}

/// Everything a stage run may look at.
pub struct StageContext<'a> {
    /// Resolved parameters (output of [`Stage::resolve_params`]).
    pub params: &'a Params,
    /// Upstream outputs, in `needs:` order; a matrix need appears once per instance.
    pub inputs: &'a [StageInput],
    /// The empty directory to write the output into.
    pub out_dir: &'a Path,
    /// The directory of `pipeline.yaml`; relative paths in parameters are resolved against it.
    pub base_dir: &'a Path,
    /// Progress sink.
    pub progress: &'a dyn Progress,
    /// How many CPU threads this stage may use.
    pub threads: usize,
    /// Maps recorded paths into upstream artifacts to this machine (see [`ArtifactPaths`]).
    pub artifacts: &'a dyn ArtifactPaths,
    /// A folder kept across attempts at this instance (same cache key), for what lets a later
    /// attempt continue where a killed or preempted one stopped (a training's last finished
    /// epoch). Never part of the result: the engine removes it once the result is published,
    /// and `run --force` and `gc` discard it. `None` where the engine offers none (unit tests).
    pub resume_dir: Option<&'a Path>,
}

impl StageContext<'_> {
    /// Resolves a path parameter against the directory of `pipeline.yaml`.
    pub fn resolve_path(&self, path: impl AsRef<Path>) -> PathBuf {
        self.base_dir.join(path)
    }

    /// Opens a path recorded in an upstream table (relative to the directory of `pipeline.yaml`,
    /// or absolute): where that file is on this machine, fetched first if need be.
    pub fn locate_recorded(&self, path: impl AsRef<Path>) -> Result<PathBuf, StageError> {
        let full = std::path::absolute(self.base_dir.join(path.as_ref())).unwrap_or_else(|_| self.base_dir.join(path.as_ref()));
        self.artifacts.locate(&full)
    }

    /// The inputs that are `kind` outputs: those of the need called `kind` when `needs:` has
    /// one; else every input from a stage of that kind; else (a `run:` stage has no kind) every
    /// kind-less input whose folder holds `marker`, the file that kind of output always has.
    pub fn inputs_like(&self, kind: &str, marker: &str) -> Vec<&StageInput> {
        let named = self.inputs_of(kind);
        if !named.is_empty() {
            return named;
        }
        let of_kind: Vec<&StageInput> = self.inputs.iter().filter(|i| i.is_kind(kind)).collect();
        if !of_kind.is_empty() {
            return of_kind;
        }
        self.inputs.iter().filter(|i| i.kind.is_none() && i.dir.join(marker).is_file()).collect()
    }

    /// The single input [`StageContext::inputs_like`] finds, or an error naming the problem.
    pub fn input_like(&self, kind: &str, marker: &str) -> Result<&StageInput, StageError> {
        match self.inputs_like(kind, marker).as_slice() {
            [one] => Ok(one),
            [] => Err(StageError::msg(format!("this stage needs a `{kind}` output (add a `{kind}` stage to `needs:`)"))),
            many => Err(StageError::msg(format!(
                "several inputs are `{kind}` outputs ({}); name the one to use `{kind}` in `needs:`",
                many.iter().map(|i| i.instance.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The output directories of every instance of the need called `name`.
    pub fn inputs_of(&self, name: &str) -> Vec<&StageInput> {
        self.inputs.iter().filter(|i| i.need == name).collect()
    }

    /// The single output directory of the need `name`, or an error naming the problem.
    pub fn single_input(&self, name: &str) -> Result<&StageInput, StageError> {
        match self.inputs_of(name).as_slice() {
            [one] => Ok(one),
            [] => Err(StageError::msg(format!("this stage needs an upstream stage `{name}` (add it to `needs:`)"))),
            many => Err(StageError::msg(format!("expected one instance of `{name}` in `needs:`, found {}", many.len()))),
        }
    }
}

/// What a successful run reports back (shown in the stage's line and kept in the run record).
#[derive(Debug, Clone, Default)]
pub struct StageOutcome {
    /// One short line, e.g. `480 clips accepted, 2 rejected`.
    pub summary: String,
}

impl StageOutcome {
    pub fn new(summary: impl Into<String>) -> Self {
        Self { summary: summary.into() }
    }
}

/// A stage failure: a message that names the file and the problem, with an optional cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StageError {
    pub fn msg(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    pub fn with_source(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(Box::new(source)) }
    }

    /// The message followed by every cause, `: `-separated.
    pub fn chain(&self) -> String {
        let mut text = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self.source.as_deref().map(|e| e as _);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

/// A parameter problem found before anything runs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The parameter concerned, when known (the engine points at its line in `pipeline.yaml`).
    pub param: Option<String>,
    pub message: String,
}

impl ParamError {
    pub fn new(param: Option<&str>, message: impl Into<String>) -> Self {
        Self { param: param.map(str::to_owned), message: message.into() }
    }
}

/// One built-in stage kind.
pub trait Stage: Send + Sync {
    /// The name used in `uses:`.
    fn kind(&self) -> &'static str;

    /// Bumped whenever the stage's code changes its output: part of every cache key.
    fn version(&self) -> u32;

    /// Type-checks `with:` and fills in defaults. The result is the canonical parameter set
    /// that goes into the cache key, so two spellings of the same configuration must resolve
    /// to the same value. Most stages implement it with [`typed_params`].
    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError>;

    /// Raw files outside the pipeline whose content is part of the key (a dataset folder).
    /// Directories are walked recursively by the engine. Paths are relative to `base_dir`
    /// or absolute. `needs` names the upstream stages of this instance (a stage that reads its
    /// data from an upstream output declares no raw input).
    fn raw_inputs(&self, _params: &Params, _base_dir: &Path, _needs: &[String]) -> Result<Vec<PathBuf>, ParamError> {
        Ok(Vec::new())
    }

    /// Makes the raw inputs ready before their content is hashed into a key: downloads and
    /// checks what comes from the network (pretrained weights), so a key never hashes a half
    /// or wrong file. Called by the commands that compute keys (run, status), not by
    /// validation. The message of an error names the input and what to do.
    fn prepare_raw_inputs(&self, _params: &Params, _base_dir: &Path) -> Result<(), StageError> {
        Ok(())
    }

    /// Does the work, writing into `ctx.out_dir`.
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError>;

    /// Whether the stage is data-parallel: [`Stage::run_shard`] on each of N shards, then
    /// [`Stage::merge`], gives the same bytes as [`Stage::run`] (so a cluster can spread it).
    fn shardable(&self) -> bool {
        false
    }

    /// Computes one shard of the work into `ctx.out_dir`: a partial result that only
    /// [`Stage::merge`] reads.
    fn run_shard(&self, _ctx: &StageContext<'_>, _shard: Shard) -> Result<StageOutcome, StageError> {
        Err(StageError::msg(format!("stage `{}` cannot be split into shards", self.kind())))
    }

    /// Builds the output in `ctx.out_dir` from the shards' partial results, given in shard
    /// order; must be byte-identical to what [`Stage::run`] writes.
    fn merge(&self, _ctx: &StageContext<'_>, _parts: &[PathBuf]) -> Result<StageOutcome, StageError> {
        Err(StageError::msg(format!("stage `{}` cannot be split into shards", self.kind())))
    }
}

/// One of `count` parts of a data-parallel stage's work (`index` from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// This shard's contiguous part of `n` sorted items; the parts cover `0..n` in order and
    /// differ in size by at most one.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        let count = self.count.max(1);
        (self.index * n / count)..((self.index + 1) * n / count).min(n)
    }
}

/// The text of a caught panic (`catch_unwind`'s payload), for an error message.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Deserializes `params` into `T` (use `#[serde(deny_unknown_fields)]` and serde defaults)
/// and serializes it back: the typed value plus its canonical form with every default
/// filled in.
pub fn typed_params<T: DeserializeOwned + Serialize>(params: &Params) -> Result<(T, Params), ParamError> {
    let value = serde_json::Value::Object(params.clone());
    let typed: T = serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        ParamError::new(param_named_in(&text).as_deref(), text)
    })?;
    let canonical = match serde_json::to_value(&typed) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(other) => return Err(ParamError::new(None, format!("parameters must be a mapping, got {other}"))),
        Err(e) => return Err(ParamError::new(None, e.to_string())),
    };
    Ok((typed, canonical))
}

/// Pulls the field name out of serde's "unknown field `x`" / "missing field `x`" messages.
fn param_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_items_in_order_with_sizes_within_one() {
        for n in [0, 1, 5, 17] {
            for count in 1..7 {
                let ranges: Vec<_> = (0..count).map(|index| Shard { index, count }.range(n)).collect();
                assert_eq!(ranges.first().unwrap().start, 0);
                assert_eq!(ranges.last().unwrap().end, n);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start), "{n} in {count}: {ranges:?}");
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            }
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        lr: f64,
        #[serde(default)]
        augment: bool,
    }

    #[test]
    fn integer_and_float_spellings_resolve_to_the_same_canonical_params() {
        let a: Params = serde_json::from_str(r#"{"lr": 1}"#).unwrap();
        let b: Params = serde_json::from_str(r#"{"lr": 1.0, "augment": false}"#).unwrap();
        assert_eq!(typed_params::<P>(&a).unwrap().1, typed_params::<P>(&b).unwrap().1);
    }

    #[test]
    fn unknown_parameter_is_named() {
        let a: Params = serde_json::from_str(r#"{"lr": 1, "lrr": 2}"#).unwrap();
        let err = typed_params::<P>(&a).err().unwrap();
        assert_eq!(err.param.as_deref(), Some("lrr"));
    }

    /// The need of the input `input_like(kind, marker)` finds among `inputs`, or its error.
    fn found(inputs: &[StageInput], kind: &str, marker: &str) -> Result<String, StageError> {
        let params = Params::new();
        let ctx = StageContext {
            params: &params,
            inputs,
            out_dir: Path::new("/"),
            base_dir: Path::new("/"),
            progress: &NoProgress,
            threads: 1,
            artifacts: &SameStore,
            resume_dir: None,
        };
        ctx.input_like(kind, marker).map(|i| i.need.clone())
    }

    #[test]
    fn inputs_are_found_by_need_name_then_kind_then_marker() {
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        std::fs::write(dirs[2].path().join("index.parquet"), b"").unwrap();
        let by_kind = StageInput { kind: Some("extract".into()), ..StageInput::new("frames10", dirs[0].path()) };
        let scan = StageInput { kind: Some("scan".into()), ..StageInput::new("scan", dirs[1].path()) };
        let shell = StageInput::new("my_cache", dirs[2].path());
        let all = [by_kind.clone(), scan.clone(), shell.clone()];
        assert_eq!(found(&all, "extract", "index.parquet").unwrap(), "frames10", "the kind beats the marker");
        assert_eq!(found(&all, "scan", "clips.parquet").unwrap(), "scan");
        let no_kind = [scan, shell];
        assert_eq!(found(&no_kind, "extract", "index.parquet").unwrap(), "my_cache", "a run: stage by its marker file");
        assert!(found(&no_kind, "split", "assignment.parquet").unwrap_err().message.contains("`split`"));
        let two = [by_kind.clone(), StageInput { need: "frames4".into(), ..by_kind }];
        assert!(found(&two, "extract", "index.parquet").unwrap_err().message.contains("several"));
    }

    #[test]
    fn chain_lists_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(StageError::with_source("reading a.mp4", io).chain(), "reading a.mp4: gone");
    }
}
