//! Learning stages without libtorch, so the `pipeline` binary can plan, key and schedule them
//! without loading it:
//!
//! - [`split`] assigns clips to train/val/test by actor (runs in the engine's process);
//! - [`train`] and [`evaluate`] are the parameters, validation and versions of those stages;
//!   their work runs in the `pipeline-torch` worker (crate `stages-torch`), see
//!   [`stage_api::worker`];
//! - [`pretrained`] fetches and checks the weights a `train` stage starts from;
//! - [`arch`] and [`device`] name the architectures and devices a `train` stage may ask for.

pub mod arch;
pub mod device;
pub mod evaluate;
pub mod pretrained;
pub mod split;
pub mod train;

/// The worker program that runs the stages needing libtorch.
pub const TORCH_WORKER: &str = "pipeline-torch";

/// RAVDESS emotion names by label (0..7); the class order of every model.
pub use stage_formats::CLASS_NAMES;

/// The stage kinds this crate provides, for the engine's registry.
pub fn stages() -> Vec<Box<dyn stage_api::Stage>> {
    vec![Box::new(split::SplitStage), Box::new(train::TrainStage), Box::new(evaluate::EvaluateStage)]
}
