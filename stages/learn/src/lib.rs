//! Learning stages: actor-based splits (`split`), training (`train`) and the inference API
//! the evaluation stage and `pipeline predict` use.
//!
//! - [`cache`] reads the `extract` stage's tensor cache (index + memory-mapped shards).
//! - [`split`] assigns clips to train/val/test by actor.
//! - [`models`] holds the five architectures of the study.
//! - [`train`] is the training stage: data feeding, augmentation, optimiser and schedule,
//!   the epoch loop, checkpoints and history.
//! - [`inference`] loads a trained model directory and predicts class probabilities.

pub mod cache;
pub mod evaluate;
pub mod inference;
pub mod inputs;
pub mod models;
pub mod predict;
pub mod preprocess;
pub mod split;
pub mod table;
pub mod train;

/// RAVDESS emotion names by label (0..7); the class order of every model.
pub const CLASS_NAMES: [&str; 8] = [
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
];

/// The stage kinds this crate provides, for the engine's registry.
pub fn stages() -> Vec<Box<dyn stage_api::Stage>> {
    vec![Box::new(split::SplitStage), Box::new(train::TrainStage), Box::new(evaluate::EvaluateStage)]
}
