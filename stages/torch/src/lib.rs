//! The stages that need libtorch, and the `pipeline-torch` worker that runs them (see
//! [`stage_api::worker`]): the `pipeline` binary never loads libtorch itself.
//!
//! - [`models`] holds the five architectures of the study, one file each.
//! - [`train`] is the training stage: data feeding, augmentation, optimiser and schedule,
//!   the epoch loop, checkpoints and history.
//! - [`evaluate`] runs a trained model on its test split and writes the metrics.
//! - [`external`] reads the predictions of a model trained elsewhere, for `evaluate`.
//! - [`inference`] loads a trained model directory and predicts class probabilities.
//! - [`predict`] is `pipeline predict`: new videos through the model's own preprocessing.
//! - [`libtorch`] turns libtorch's errors (raised by tch as panics) into stage errors.
//!
//! The torch-free parts (parameters, splits) are `stages-learn`'s and the tensor cache is
//! `stage-formats`'; they are re-exported here under the same names.

pub mod evaluate;
pub mod external;
pub mod inference;
pub mod libtorch;
pub mod models;
pub mod predict;
pub mod preprocess;
pub mod train;

pub use stages_learn::{split, CLASS_NAMES, TORCH_WORKER};

/// The tensor cache (`stage-formats`), and the step from its bytes to a tensor.
pub mod cache {
    use stage_api::StageError;
    pub use stage_formats::tensor_cache::*;

    /// A CPU uint8 tensor `[B, T, S, S, 3]` holding the given clips in order.
    pub fn batch_tensor(loader: &ClipLoader, clip_ids: &[&str]) -> Result<tch::Tensor, StageError> {
        let (bytes, shape) = loader.batch_bytes(clip_ids)?;
        Ok(tch::Tensor::from_slice(&bytes).view(shape))
    }
}

/// The stages the worker runs.
pub fn stages() -> Vec<Box<dyn stage_api::Stage>> {
    vec![Box::new(train::TRAIN), Box::new(evaluate::EVALUATE)]
}
