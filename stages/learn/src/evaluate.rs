//! The `evaluate` stage's parameters and its place in the engine. The evaluation itself runs a
//! model and so runs in the `pipeline-torch` worker (`stages_torch::evaluate`).
//!
//! Needs exactly one `train` instance (give `evaluate` the same `matrix:` as `train`, and the
//! engine pairs `evaluate[arch=x]` with `train[arch=x]`), plus `extract` and `split`.

use serde::{Deserialize, Serialize};
use stage_api::worker::{run_in_worker, WorkerPart};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

use crate::device::DeviceChoice;
use crate::TORCH_WORKER;

/// Unlike other stages, `evaluate` accepts keys it does not know: they are matrix values
/// (`arch`, `frames`, `fold`, ...) that pair it with the matching `train` instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateParams {
    /// Which split to evaluate on (`test`, or `val`).
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Copied from the matrix (e.g. `arch`); ignored by the stage itself, used to pair with
    /// the matching `train` instance.
    #[serde(flatten)]
    pub matrix: std::collections::BTreeMap<String, serde_json::Value>,
}

fn default_split() -> String {
    "test".into()
}

fn default_batch() -> usize {
    16
}

/// The `evaluate` stage kind as the engine sees it; the work runs in the `pipeline-torch` worker.
pub struct EvaluateStage;

impl Stage for EvaluateStage {
    fn kind(&self) -> &'static str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        1
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let (p, canonical): (EvaluateParams, Params) = typed_params(params)?;
        if p.split != "test" && p.split != "val" {
            return Err(ParamError::new(Some("split"), format!("`split` must be `test` or `val`, not `{}`", p.split)));
        }
        if p.batch_size == 0 {
            return Err(ParamError::new(Some("batch_size"), "`batch_size` must be at least 1"));
        }
        Ok(canonical)
    }

    /// In the libtorch worker (`stages_torch::evaluate`).
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        run_in_worker(TORCH_WORKER, self.kind(), ctx, WorkerPart::Whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_values_are_accepted_and_split_is_checked() {
        let ok: Params = serde_json::from_str(r#"{"arch": "r3d18"}"#).unwrap();
        let resolved = EvaluateStage.resolve_params(&ok).unwrap();
        assert_eq!(resolved["split"], "test");
        assert_eq!(resolved["arch"], "r3d18");
        let bad: Params = serde_json::from_str(r#"{"split": "train"}"#).unwrap();
        assert!(EvaluateStage.resolve_params(&bad).is_err());
    }
}
