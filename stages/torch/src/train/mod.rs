//! The `train` stage: trains one architecture on the training split of a tensor cache,
//! selects the epoch with the best validation accuracy, and writes that model.
//!
//! Modules, one job each:
//! - [`dataset`]: joins the cache index with the split assignment into examples, checks classes;
//! - [`data`]: the producer thread that assembles batches from the memory-mapped cache;
//! - [`augment`]: per-clip random crop / flip / rotation / colour jitter on the device;
//! - [`schedule`]: ReduceLROnPlateau and early stopping on validation accuracy;
//! - [`adam`]: the optimiser, with its state out in the open;
//! - [`amp`]: loss scaling for fp16 autocast on CUDA;
//! - [`epoch`]: one training pass and one evaluation pass;
//! - [`checkpoint`]: `model.safetensors` + `model.json`, strict loading;
//! - `history.parquet` / `history.csv` are written with `stage_formats::history`;
//! - [`resume`]: the state kept after every epoch, from which a killed training continues;
//! - [`run`]: the stage's run, tying them together.
//!
//! Frames (T) and size (S) come from the cache, never from parameters.

pub mod adam;
pub mod amp;
pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod dataset;
pub mod device;
pub mod epoch;
pub mod resume;
pub mod run;
pub mod schedule;
use stage_api::worker::WorkerStage;
use stage_api::{Params, StageContext, StageError, StageOutcome};

pub use checkpoint::ModelCard;
pub use stages_learn::device::DeviceChoice;
pub use stages_learn::train::TrainParams;

/// The `train` stage as the worker runs it: described by [`stages_learn::train::TrainStage`]
/// (what the engine keys and validates), trained by [`train`].
pub const TRAIN: WorkerStage<stages_learn::train::TrainStage> = WorkerStage { describe: stages_learn::train::TrainStage, work: train };

/// Trains one architecture (the `train` stage's work).
pub fn train(ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
    let (params, canonical): (TrainParams, Params) =
        stage_api::typed_params(ctx.params).map_err(|e| StageError::msg(format!("train parameters: {e}")))?;
    params.validate().map_err(|e| StageError::msg(format!("train parameters: {e}")))?;
    crate::libtorch::catch("training", || run::run(ctx, &params, &canonical))
}
