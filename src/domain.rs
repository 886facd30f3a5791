//! What a binary plugs into the engine: the built-in stage kinds, and the work behind the two
//! commands that are domain code (`pipeline predict`, `pipeline metrics diff`). The engine
//! resolves names, runs, stores and formats; the domain says what a model or a metric is.

use std::path::{Path, PathBuf};

use stage_api::StageError;

use crate::registry::Registry;

/// One video's prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    pub video: String,
    pub predicted: String,
    /// Class name and probability, in the model's class order.
    pub probabilities: Vec<(String, f32)>,
}

pub trait Domain {
    /// Every built-in stage kind.
    fn registry(&self) -> Registry;

    /// Runs the model in `model_dir` on `videos`: one result per video, in order (`Err` for a
    /// video that could not be read); the outer `Err` when the model itself cannot be used.
    fn predict(&self, model_dir: &Path, videos: &[PathBuf], threads: usize) -> Result<Vec<Result<Prediction, StageError>>, StageError>;

    /// Compares the metrics files gathered under `old` and `new` (same relative paths): a table
    /// for people, or JSON with `json`. `all` also lists what did not change.
    fn metrics_diff(&self, old: &Path, new: &Path, all: bool, json: bool) -> Result<String, StageError>;

    /// The file at the top of a stage's output that holds its metrics: `runs` counts them and
    /// `metrics diff` gathers them.
    fn metrics_file(&self) -> &'static str;

    /// Whether `dir` holds a trained model `predict` can use, and the score it picks the best
    /// one by (higher is better): `Ok(None)` when `dir` is no model, `Err` when it is one whose
    /// description is damaged (never a made-up score).
    fn model_score(&self, dir: &Path) -> Result<Option<f64>, StageError>;
}
