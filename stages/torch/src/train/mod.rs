//! The `train` stage: trains one architecture on the training split of a tensor cache,
//! selects the epoch with the best validation accuracy, and writes that model.
//!
//! Modules, one job each:
//! - [`dataset`]: joins the cache index with the split assignment into examples, checks classes;
//! - [`data`]: the producer thread that assembles batches from the memory-mapped cache;
//! - [`augment`]: per-clip random crop / flip / rotation / colour jitter on the device;
//! - [`schedule`]: ReduceLROnPlateau and early stopping on validation accuracy;
//! - [`amp`]: loss scaling for fp16 autocast on CUDA;
//! - [`epoch`]: one training pass and one evaluation pass;
//! - [`checkpoint`]: `model.safetensors` + `model.json`, strict loading;
//! - [`history`]: `history.parquet` / `history.csv`;
//! - [`run`]: the stage's run, tying them together.
//!
//! Frames (T) and size (S) come from the cache, never from parameters.

pub mod amp;
pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod dataset;
pub mod device;
pub mod epoch;
pub mod history;
pub mod run;
pub mod schedule;
use stage_api::{Params, ParamError, Stage, StageContext, StageError, StageOutcome};

pub use checkpoint::ModelCard;
pub use stages_learn::device::DeviceChoice;
pub use stages_learn::train::TrainParams;

/// The `train` stage as the worker runs it: what the engine knows of it comes from
/// [`stages_learn::train::TrainStage`]; `run` trains.
pub struct TrainStage;

impl Stage for TrainStage {
    fn kind(&self) -> &'static str {
        stages_learn::train::TrainStage.kind()
    }

    fn version(&self) -> u32 {
        stages_learn::train::TrainStage.version()
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        stages_learn::train::TrainStage.resolve_params(params)
    }

    fn raw_inputs(&self, params: &Params, base_dir: &std::path::Path, needs: &[String]) -> Result<Vec<std::path::PathBuf>, ParamError> {
        stages_learn::train::TrainStage.raw_inputs(params, base_dir, needs)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (params, canonical): (TrainParams, Params) = stage_api::typed_params(ctx.params)
            .map_err(|e| StageError::msg(format!("train parameters: {e}")))?;
        params
            .validate()
            .map_err(|e| StageError::msg(format!("train parameters: {e}")))?;
        run::run(ctx, &params, &canonical)
    }
}
