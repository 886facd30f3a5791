//! `pipeline predict`: applies a trained model to new videos (any file name, not only RAVDESS).
//!
//! Each video goes through exactly the preprocessing the model was trained on: the `extract`
//! stage itself (same frame sampling, face detection, crop margin and size), with the
//! parameters read from the `extract.json` of the cache the model was trained on, never
//! retyped by the user. A video that cannot be read gets its own error; the others are still
//! predicted.

use std::path::{Path, PathBuf};

use stage_api::{NoProgress, Params, StageContext, StageError};
use stages_video::extract::{run_extract, testing::ClipRecord, ExtractParams};

use crate::cache::{read_cache_index, ClipLoader};
use crate::inference::Predictor;
use crate::train::DeviceChoice;

/// The copy of the cache's `extract.json` a `train` output carries.
pub const PREPROCESSING_FILE: &str = "preprocessing.json";

/// The outcome for one video.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoPrediction {
    pub video: String,
    pub predicted: String,
    pub probabilities: Vec<(String, f32)>,
}

/// The preprocessing parameters recorded next to a model (`preprocessing.json`, a copy of
/// the `extract.json` of the cache it was trained on).
pub fn extract_params(model_dir: &Path) -> Result<(ExtractParams, Params), StageError> {
    let path = model_dir.join(PREPROCESSING_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::with_source(format!("{}: cannot read", path.display()), e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| StageError::with_source(format!("{}: not JSON", path.display()), e))?;
    let params = json
        .get("params")
        .and_then(|p| p.as_object())
        .cloned()
        .ok_or_else(|| StageError::msg(format!("{}: no `params` recorded", path.display())))?;
    stage_api::typed_params(&params).map_err(|e| StageError::msg(format!("{}: {}", path.display(), e.message)))
}

/// Predicts every video; one result per video, in order.
pub fn predict_videos(
    model_dir: &Path,
    videos: &[PathBuf],
    threads: usize,
) -> Result<Vec<Result<VideoPrediction, StageError>>, StageError> {
    tch::set_num_threads(threads.max(1) as i32);
    let predictor = Predictor::load(model_dir, crate::train::device::resolve_device(DeviceChoice::Auto)?)?;
    let (params, canonical) = extract_params(model_dir)?;
    if (i64::from(params.frames), i64::from(params.size)) != (predictor.frames(), predictor.size()) {
        return Err(StageError::msg(format!(
            "{} records T={} S={}, but the model expects T={} S={}",
            model_dir.join(PREPROCESSING_FILE).display(),
            params.frames,
            params.size,
            predictor.frames(),
            predictor.size()
        )));
    }
    let work = tempfile::tempdir().map_err(|e| StageError::with_source("creating a work directory", e))?;
    let clips: Vec<ClipRecord> = videos
        .iter()
        .enumerate()
        .map(|(i, v)| ClipRecord {
            clip_id: format!("video-{i:05}"),
            source: std::path::absolute(v).unwrap_or_else(|_| v.clone()).to_string_lossy().into_owned(),
            modality: 0,
            vocal_channel: 0,
            emotion: String::new(),
            label: -1,
            intensity: 0,
            statement: 0,
            repetition: 0,
            actor: 0,
            width: 0,
            height: 0,
            fps: 0.0,
            frame_count: 0,
            duration_s: 0.0,
        })
        .collect();
    let ctx = StageContext {
        params: &canonical,
        inputs: &[],
        out_dir: work.path(),
        base_dir: Path::new("."),
        progress: &NoProgress,
        threads,
        artifacts: &stage_api::SameStore,
    };
    let decoder = stages_video::extract::decode::Decoder::default();
    // Every video may be rejected; that is reported per video below, not as a failure here.
    let extracted = run_extract(&params, &canonical, clips, &ctx, &decoder);
    let index = if work.path().join("index.parquet").is_file() { read_cache_index(work.path())? } else { Vec::new() };
    let rejects = match (&extracted, rejects_by_clip(work.path())) {
        (_, Ok(rejects)) => rejects,
        // Extraction failed as a whole: its error explains every video below.
        (Err(_), Err(_)) => Vec::new(),
        (Ok(_), Err(e)) => return Err(e),
    };
    let loader = if index.is_empty() { None } else { Some(ClipLoader::open(work.path(), &index)?) };

    let mut results = Vec::with_capacity(videos.len());
    for (i, video) in videos.iter().enumerate() {
        let clip_id = format!("video-{i:05}");
        let name = video.display().to_string();
        let Some(loader) = loader.as_ref().filter(|_| index.iter().any(|c| c.clip_id == clip_id)) else {
            let why = rejects
                .iter()
                .find(|(id, _)| *id == clip_id)
                .map(|(_, reason)| reason.clone())
                .or_else(|| extracted.as_ref().err().map(|e| e.chain()))
                .unwrap_or_else(|| format!("{name}: could not be preprocessed"));
            results.push(Err(StageError::msg(why)));
            continue;
        };
        let probs = predictor.predict(&[loader.clip(&clip_id)?])?.remove(0);
        let best = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k);
        let names = predictor.class_names();
        results.push(Ok(VideoPrediction {
            video: name,
            predicted: names.get(best).cloned().unwrap_or_default(),
            probabilities: names.iter().cloned().zip(probs).collect(),
        }));
    }
    Ok(results)
}

/// (clip_id, reason) of the clips extract rejected, from its `extract.json`.
fn rejects_by_clip(dir: &Path) -> Result<Vec<(String, String)>, StageError> {
    let path = dir.join("extract.json");
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::with_source(format!("{}: cannot read", path.display()), e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| StageError::with_source(format!("{}: not valid JSON", path.display()), e))?;
    let rows = json
        .get("rejects")
        .and_then(|r| r.as_array())
        .ok_or_else(|| StageError::msg(format!("{}: no `rejects` list", path.display())))?;
    rows.iter()
        .map(|r| {
            let field = |name: &str| r.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            match (field("clip_id"), field("reason")) {
                (Some(id), Some(reason)) => Ok((id, reason)),
                _ => Err(StageError::msg(format!("{}: a reject without `clip_id` and `reason`: {r}", path.display()))),
            }
        })
        .collect()
}
