//! `pipeline predict`: applies a trained model to new videos (any file name, not only RAVDESS).
//!
//! Each video goes through exactly the preprocessing the model was trained on: the `extract`
//! stage's own per-clip function (`stages_video::extract::one_clip`: same frame sampling, face
//! detection, crop margin and size), with the
//! parameters read from the `extract.json` of the cache the model was trained on, never
//! retyped by the user. A video that cannot be read gets its own error; the others are still
//! predicted.

use std::path::{Path, PathBuf};

use stage_api::{Params, StageError};
use stages_video::extract::decode::Decoder;
use stages_video::extract::one_clip::ClipPreprocessor;
use stages_video::extract::ExtractParams;

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
    let params = stage_formats::tensor_cache::read_extract_params(&path)?;
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
    let (params, _) = extract_params(model_dir)?;
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
    let first = videos.first().map_or(String::new(), |v| v.display().to_string());
    let preprocessor =
        ClipPreprocessor::new(&params, Decoder::default(), &format!("needed to read {} videos, first {first}", videos.len()))?;
    let paths: Vec<&Path> = videos.iter().map(PathBuf::as_path).collect();
    let clips = preprocessor.clips(&paths, threads)?;

    let names = predictor.class_names();
    let mut results = Vec::with_capacity(videos.len());
    for (video, clip) in videos.iter().zip(clips) {
        let clip = match clip {
            Ok(clip) => clip,
            Err(e) => {
                results.push(Err(e.into()));
                continue;
            }
        };
        let probs = predictor.predict(&[clip.tensor.as_slice()])?.remove(0);
        let best = probs.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k);
        results.push(Ok(VideoPrediction {
            video: video.display().to_string(),
            predicted: names.get(best).cloned().unwrap_or_default(),
            probabilities: names.iter().cloned().zip(probs).collect(),
        }));
    }
    Ok(results)
}
