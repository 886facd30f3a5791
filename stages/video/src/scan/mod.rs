//! The `scan` stage: turns a RAVDESS folder into a table of usable clips and a table of rejected files.
//!
//! Outputs (in `out_dir`):
//! - `clips.parquet`, one row per accepted recording, sorted by `clip_id`: clip_id (`VV-EE-II-SS-RR-AA`),
//!   source (relative to the folder of `pipeline.yaml` when the video is inside it, else absolute; so the
//!   table, and every key downstream, is the same on machines that keep the workspace at other paths), modality, vocal_channel, emotion (name), label (0..7), intensity, statement,
//!   repetition, actor (int32 except the strings), width, height (int32), fps (float64), frame_count
//!   (int64), duration_s (float64);
//! - `rejects.parquet`, one row per file set aside, sorted by source: source, kind (short code), reason;
//! - `scan.json`: parameters, the root, the prober, counts (seen, accepted, rejected by kind, filtered,
//!   per emotion and per actor).
//!
//! Reject kinds: `bad_name`, `audio_only`, `wrong_folder`, `zero_byte`, `not_video`, `truncated`,
//! `no_video_stream`, `unreadable`, and `duplicate` (another modality of a recording that was kept).
//! `strict: true` fails the stage on any reject except `duplicate`, which is the normal state of the
//! published video zips (each recording comes as `01-` and `02-`).
//!
//! The dataset folder is `root` when given, else the output of a need called `synth`, else
//! `data/ravdess`. Probing (see [`probe`]) runs in parallel over recordings. The stage is
//! shardable: each shard probes a contiguous part of the sorted recordings and writes what it
//! found (`probes.json`, see [`shard_part`]); the merge selects again and reads the probes
//! from the parts, giving the same bytes as one run.

pub mod probe;
pub mod select;
mod shard_part;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ArtifactPaths, ParamError, Params, Progress, Shard, Stage, StageContext, StageError, StageOutcome};

use crate::ravdess::{emotion_list, RavdessName, EMOTIONS};
use probe::{ProbeError, Prober, VideoInfo};
use select::{Filters, ModalityChoice, Reject};

/// Where the dataset is looked for when neither `root` nor a `synth` need is given.
pub const DEFAULT_ROOT: &str = "data/ravdess";
/// The need whose output a scan reads instead of a dataset folder.
const SYNTH_NEED: &str = "synth";

/// Parameters of `uses: scan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanParams {
    /// The dataset folder; absent: the `synth` need's output, else `data/ravdess`.
    #[serde(default)]
    pub root: Option<String>,
    /// `video` (02, falling back to 01 per recording), `02` or `01`.
    #[serde(default = "default_modality")]
    pub modality: String,
    #[serde(default = "default_vocal_channels")]
    pub vocal_channels: Vec<u8>,
    /// Names or ids; resolved to names in label order.
    #[serde(default = "default_emotions")]
    pub emotions: Vec<serde_json::Value>,
    #[serde(default = "default_actors")]
    pub actors: Vec<u8>,
    /// Fail on any reject (other than a duplicate modality).
    #[serde(default)]
    pub strict: bool,
    /// `auto` (ffprobe when on PATH, else ffmpeg), `ffprobe` or `ffmpeg`.
    #[serde(default = "default_prober")]
    pub prober: String,
}

fn default_modality() -> String {
    "video".into()
}
fn default_vocal_channels() -> Vec<u8> {
    vec![1, 2]
}
fn default_emotions() -> Vec<serde_json::Value> {
    EMOTIONS.iter().map(|e| serde_json::Value::from(*e)).collect()
}
fn default_actors() -> Vec<u8> {
    (1..=24).collect()
}
fn default_prober() -> String {
    "auto".into()
}

impl ScanParams {
    fn validated(mut self) -> Result<Self, ParamError> {
        let bad = |p: &str, m: String| ParamError::new(Some(p), m);
        let choice = ModalityChoice::parse(&self.modality)
            .ok_or_else(|| bad("modality", format!("modality must be `video`, `02` or `01`, got `{}`", self.modality)))?;
        self.modality = match choice.preference.as_slice() {
            [_, _] => "video".into(),
            [m] => format!("{:02}", m.code()),
            _ => self.modality,
        };
        let ids = emotion_list(&self.emotions).map_err(|e| bad("emotions", e.to_string()))?;
        self.emotions = ids.iter().map(|&i| serde_json::Value::from(EMOTIONS[usize::from(i) - 1])).collect();
        for (name, list, max) in [("vocal_channels", &mut self.vocal_channels, 2u8), ("actors", &mut self.actors, 24)] {
            list.sort_unstable();
            list.dedup();
            if list.iter().any(|&v| v < 1 || v > max) {
                return Err(bad(name, format!("{name} must list values 1..{max}, got {list:?}")));
            }
        }
        for (name, empty) in
            [("emotions", ids.is_empty()), ("vocal_channels", self.vocal_channels.is_empty()), ("actors", self.actors.is_empty())]
        {
            if empty {
                return Err(bad(name, format!("{name} must not be empty (leave it out to keep all)")));
            }
        }
        if !["auto", "ffprobe", "ffmpeg"].contains(&self.prober.as_str()) {
            return Err(bad("prober", format!("prober must be `auto`, `ffprobe` or `ffmpeg`, got `{}`", self.prober)));
        }
        Ok(self)
    }

    fn filters(&self) -> Filters {
        Filters {
            vocal_channels: self.vocal_channels.clone(),
            emotions: emotion_list(&self.emotions).unwrap_or_default(),
            actors: self.actors.clone(),
        }
    }
}

/// One accepted clip.
#[derive(Debug, Clone)]
pub struct Clip {
    pub name: RavdessName,
    pub source: PathBuf,
    pub info: VideoInfo,
}

/// Everything a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    pub clips: Vec<Clip>,
    pub rejects: Vec<Reject>,
    pub files_seen: usize,
    pub filtered: usize,
    /// Files that are not `.mp4`.
    pub ignored: usize,
}

impl ScanResult {
    /// Rejects that `strict` fails on.
    pub fn problems(&self) -> Vec<&Reject> {
        self.rejects.iter().filter(|r| r.kind != "duplicate").collect()
    }
}

/// Scans `root` (library entry point, used by the stage and by tests).
/// Progress counts recordings probed.
pub fn scan(root: &Path, params: &ScanParams, prober: &Prober, threads: usize, progress: &dyn Progress) -> Result<ScanResult, StageError> {
    let sel = select_recordings(root, params)?;
    let outcomes = probe_recordings(&sel.recordings, &|path| prober.probe(path), threads, progress)?;
    Ok(assemble(sel, outcomes))
}

/// Lists `root` and picks the recordings (and their candidate files) the parameters select.
pub fn select_recordings(root: &Path, params: &ScanParams) -> Result<select::Selection, StageError> {
    let files =
        select::list_files(root).map_err(|e| StageError::with_source(format!("listing the dataset folder {}", root.display()), e))?;
    let choice = ModalityChoice::parse(&params.modality).ok_or_else(|| StageError::msg(format!("bad modality `{}`", params.modality)))?;
    Ok(select::select(&files, &choice, &params.filters()))
}

/// What probing one recording gives: the clip kept (if any) and the candidates rejected.
pub type Selected = (Option<Clip>, Vec<Reject>);

/// A probe of one file: the prober itself, or (when merging shards) what a shard recorded.
pub type ProbeFn<'a> = dyn Fn(&Path) -> Result<VideoInfo, ProbeError> + Sync + 'a;

/// Per recording, in parallel: probes its candidates in order of preference and keeps the
/// first good one; the others become `duplicate` rejects.
pub fn probe_recordings(
    recordings: &[select::Recording],
    probe: &ProbeFn<'_>,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<Selected>, StageError> {
    progress.start(recordings.len() as u64, "recordings");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| StageError::with_source("starting the scan thread pool", e))?;
    Ok(pool.install(|| {
        recordings
            .par_iter()
            .map(|rec| {
                let outcome = probe_recording(rec, probe);
                progress.advance(1);
                outcome
            })
            .collect()
    }))
}

fn probe_recording(rec: &select::Recording, probe: &ProbeFn<'_>) -> Selected {
    let mut rejects = Vec::new();
    let mut kept: Option<Clip> = None;
    for (name, path) in &rec.candidates {
        if let Some(k) = &kept {
            rejects.push(Reject {
                source: path.clone(),
                kind: "duplicate",
                reason: format!(
                    "same recording {} as {} (modality {:02} kept, never counted twice)",
                    rec.clip_id,
                    k.source.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                    k.name.modality.code()
                ),
            });
            continue;
        }
        match probe(path) {
            Ok(info) => kept = Some(Clip { name: *name, source: path.clone(), info }),
            Err(e) => rejects.push(Reject { source: path.clone(), kind: e.kind, reason: e.detail }),
        }
    }
    (kept, rejects)
}

/// The scan's result from the selection and the probe outcomes, sorted.
pub fn assemble(sel: select::Selection, outcomes: Vec<Selected>) -> ScanResult {
    let mut result =
        ScanResult { files_seen: sel.files_seen, filtered: sel.filtered, ignored: sel.ignored, rejects: sel.rejects, ..Default::default() };
    for (clip, rejects) in outcomes {
        result.clips.extend(clip);
        result.rejects.extend(rejects);
    }
    result.clips.sort_by(|a, b| a.name.clip_id().cmp(&b.name.clip_id()).then_with(|| a.source.cmp(&b.source)));
    result.rejects.sort_by(|a, b| a.source.cmp(&b.source));
    result
}

/// `uses: scan`.
pub struct ScanStage;

impl ScanStage {
    fn typed(params: &Params) -> Result<ScanParams, ParamError> {
        let (p, _): (ScanParams, Params) = typed_params(params)?;
        p.validated()
    }

    /// The dataset folder for a run.
    fn root(p: &ScanParams, ctx: &StageContext<'_>) -> Result<PathBuf, StageError> {
        if let Some(root) = &p.root {
            return Ok(ctx.resolve_path(root));
        }
        if !ctx.inputs_of(SYNTH_NEED).is_empty() {
            return Ok(ctx.single_input(SYNTH_NEED)?.dir.clone());
        }
        Ok(ctx.resolve_path(DEFAULT_ROOT))
    }
}

impl Stage for ScanStage {
    fn kind(&self) -> &'static str {
        "scan"
    }

    /// v2: `source` and `root` are relative to the workspace when inside it.
    fn version(&self) -> u32 {
        2
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let p = Self::typed(params)?;
        match serde_json::to_value(&p) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(ParamError::new(None, "scan parameters did not serialise to a mapping")),
        }
    }

    /// The dataset folder when it is outside the pipeline: `root` when given; without `root`
    /// and without a `synth` need, `data/ravdess` when that folder exists (when it does not,
    /// `run` explains how to get it). A scan that reads a `synth` need declares nothing: the
    /// synthetic videos are an upstream output, already part of the key.
    fn raw_inputs(&self, params: &Params, base_dir: &Path, needs: &[String]) -> Result<Vec<PathBuf>, ParamError> {
        let p = Self::typed(params)?;
        Ok(match p.root {
            Some(root) => vec![base_dir.join(root)],
            None if needs.iter().any(|n| n == SYNTH_NEED) => Vec::new(),
            None if base_dir.join(DEFAULT_ROOT).is_dir() => vec![base_dir.join(DEFAULT_ROOT)],
            None => Vec::new(),
        })
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (p, root) = Self::prepare(ctx)?;
        let prober = Self::prober(&p)?;
        let result = scan(&root, &p, &prober, ctx.threads, ctx.progress)?;
        Self::finish(ctx, &p, &root, prober.name(), result)
    }

    /// Probing is the costly part, so shards split the sorted recordings; each shard lists and
    /// selects the whole folder (cheap) but probes only its part.
    fn shardable(&self) -> bool {
        true
    }

    fn run_shard(&self, ctx: &StageContext<'_>, shard: Shard) -> Result<StageOutcome, StageError> {
        let (p, root) = Self::prepare(ctx)?;
        let prober = Self::prober(&p)?;
        let sel = select_recordings(&root, &p)?;
        let range = shard.range(sel.recordings.len());
        let probed = std::sync::Mutex::new(Vec::new());
        let record = |path: &Path| {
            let outcome = prober.probe(path);
            probed.lock().expect("probe list").push(shard_part::ProbeRecord::new(&root, path, &outcome));
            outcome
        };
        probe_recordings(&sel.recordings[range.clone()], &record, ctx.threads, ctx.progress)?;
        let probed = probed.into_inner().expect("probe list");
        shard_part::write(ctx.out_dir, prober.name(), probed)?;
        Ok(StageOutcome::new(format!("probed recordings {}..{} of {}", range.start, range.end, sel.recordings.len())))
    }

    fn merge(&self, ctx: &StageContext<'_>, parts: &[PathBuf]) -> Result<StageOutcome, StageError> {
        let (p, root) = Self::prepare(ctx)?;
        let (prober_name, probes) = shard_part::read(parts)?;
        let sel = select_recordings(&root, &p)?;
        let lookup =
            |path: &Path| probes.get(&shard_part::relative(&root, path)).cloned().unwrap_or_else(|| Err(ProbeError::missing(path)));
        let outcomes = probe_recordings(&sel.recordings, &lookup, ctx.threads, ctx.progress)?;
        if let Some(missing) = outcomes.iter().flat_map(|(_, r)| r).find(|r| r.kind == probe::NOT_PROBED) {
            return Err(StageError::msg(format!(
                "the shards did not probe {} (the dataset folder changed between the shards and the merge?)",
                missing.source.display()
            )));
        }
        Self::finish(ctx, &p, &root, &prober_name, assemble(sel, outcomes))
    }
}

impl ScanStage {
    /// The parameters and the dataset folder (absolute, checked).
    fn prepare(ctx: &StageContext<'_>) -> Result<(ScanParams, PathBuf), StageError> {
        let p = Self::typed(ctx.params).map_err(|e| StageError::msg(e.message))?;
        let root = Self::root(&p, ctx)?;
        if !root.is_dir() {
            return Err(StageError::msg(format!(
                "dataset folder {} does not exist: download RAVDESS (Zenodo record 1188976, the Video_Speech_Actor_NN.zip \
                 files) into it, set `root`, or add a `synth` stage to `needs:`",
                root.display()
            )));
        }
        // Absolute but with symlinks kept: a dataset linked into the workspace stays workspace-relative.
        let root = std::path::absolute(&root).map_err(|e| StageError::with_source(format!("resolving {}", root.display()), e))?;
        Ok((p, root))
    }

    fn prober(p: &ScanParams) -> Result<Prober, StageError> {
        Prober::find(&p.prober).ok_or_else(|| {
            StageError::msg(format!(
                "neither ffprobe nor ffmpeg was found on PATH (prober: {}): install ffmpeg or put a static build on PATH",
                p.prober
            ))
        })
    }

    /// Writes the tables and the summary of `result` (the same for a whole run and a merge).
    fn finish(
        ctx: &StageContext<'_>,
        p: &ScanParams,
        root: &Path,
        prober_name: &str,
        mut result: ScanResult,
    ) -> Result<StageOutcome, StageError> {
        let workspace = std::path::absolute(ctx.base_dir).unwrap_or_else(|_| ctx.base_dir.to_path_buf());
        // Paths into the store are written as the configured store has them (a cluster worker's
        // private store lies elsewhere), then relative to the workspace when inside it.
        result.relativize(&workspace, ctx.artifacts);
        let root = workspace_relative(&ctx.artifacts.portable(root), &workspace);
        let problems = result.problems();
        if p.strict && !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|r| format!("{}: {}", r.source.display(), r.reason)).collect();
            return Err(StageError::msg(format!("strict scan: {} file(s) rejected:\n  {}", list.len(), list.join("\n  "))));
        }
        for r in problems.iter().take(20) {
            ctx.progress.note(&format!("rejected {}: {}", r.source.display(), r.reason));
        }
        table::write_clips(&ctx.out_dir.join(stage_formats::clips::CLIPS_FILE), &result.clips)?;
        table::write_rejects(&ctx.out_dir.join("rejects.parquet"), &result.rejects)?;
        let summary = summary_json(p, &root, prober_name, &result);
        let path = ctx.out_dir.join("scan.json");
        let text = serde_json::to_string_pretty(&summary).map_err(|e| StageError::with_source("serialising scan.json", e))?;
        std::fs::write(&path, text + "\n").map_err(|e| StageError::with_source(format!("writing {}", path.display()), e))?;
        if result.clips.is_empty() {
            return Err(StageError::msg(format!(
                "no usable clip in {} ({} files seen, {} rejected, {} filtered out)",
                root.display(),
                result.files_seen,
                result.rejects.len(),
                result.filtered
            )));
        }
        Ok(StageOutcome::new(format!(
            "{} clips accepted, {} rejected ({} duplicates), {} filtered out",
            result.clips.len(),
            result.rejects.len(),
            result.rejects.len() - problems.len(),
            result.filtered
        )))
    }
}

/// `path` relative to `workspace` when it lies inside it, else unchanged.
pub fn workspace_relative(path: &Path, workspace: &Path) -> PathBuf {
    path.strip_prefix(workspace).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

impl ScanResult {
    /// Rewrites every `source` inside `workspace` relative to it (see the module doc).
    fn relativize(&mut self, workspace: &Path, artifacts: &dyn ArtifactPaths) {
        for c in &mut self.clips {
            c.source = workspace_relative(&artifacts.portable(&c.source), workspace);
        }
        for r in &mut self.rejects {
            r.source = workspace_relative(&artifacts.portable(&r.source), workspace);
        }
    }
}

fn summary_json(p: &ScanParams, root: &Path, prober_name: &str, r: &ScanResult) -> serde_json::Value {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for x in &r.rejects {
        *by_kind.entry(x.kind).or_default() += 1;
    }
    let mut by_emotion: BTreeMap<&str, usize> = EMOTIONS.iter().map(|e| (*e, 0)).collect();
    let mut by_actor: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_modality: BTreeMap<String, usize> = BTreeMap::new();
    for c in &r.clips {
        *by_emotion.entry(c.name.emotion_name()).or_default() += 1;
        *by_actor.entry(format!("{:02}", c.name.actor)).or_default() += 1;
        *by_modality.entry(format!("{:02}", c.name.modality.code())).or_default() += 1;
    }
    serde_json::json!({
        "params": p,
        "root": root.display().to_string(),
        "prober": prober_name,
        "files_seen": r.files_seen,
        "accepted": r.clips.len(),
        "rejected": r.rejects.len(),
        "rejected_by_kind": by_kind,
        "filtered": r.filtered,
        "ignored_not_mp4": r.ignored,
        "accepted_by_emotion": by_emotion,
        "accepted_by_actor": by_actor,
        "accepted_by_modality": by_modality,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(json: &str) -> Result<Params, ParamError> {
        ScanStage.resolve_params(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn spellings_resolve_alike_and_bad_values_are_named() {
        assert_eq!(
            resolve(r#"{"emotions": [8, "happy"], "modality": "2"}"#).unwrap(),
            resolve(r#"{"emotions": ["surprised", "03"], "modality": "02"}"#).unwrap()
        );
        assert_eq!(resolve("{}").unwrap()["actors"].as_array().unwrap().len(), 24);
        for (json, name) in [
            (r#"{"modality": "03"}"#, "modality"),
            (r#"{"emotions": ["joy"]}"#, "emotions"),
            (r#"{"actors": [25]}"#, "actors"),
            (r#"{"vocal_channels": []}"#, "vocal_channels"),
            (r#"{"prober": "x"}"#, "prober"),
            (r#"{"roots": "x"}"#, "roots"),
        ] {
            assert_eq!(resolve(json).unwrap_err().param.as_deref(), Some(name), "{json}");
        }
    }

    #[test]
    fn raw_inputs_is_the_root_when_given() {
        let dir = std::env::temp_dir();
        let p = resolve(r#"{"root": "my/data"}"#).unwrap();
        assert_eq!(ScanStage.raw_inputs(&p, &dir, &[]).unwrap(), vec![dir.join("my/data")]);
        let empty = tempfile::tempdir().unwrap();
        assert!(ScanStage.raw_inputs(&resolve("{}").unwrap(), empty.path(), &[]).unwrap().is_empty());
        std::fs::create_dir_all(empty.path().join(DEFAULT_ROOT)).unwrap();
        assert_eq!(ScanStage.raw_inputs(&resolve("{}").unwrap(), empty.path(), &[]).unwrap(), vec![empty.path().join(DEFAULT_ROOT)]);
    }
}
