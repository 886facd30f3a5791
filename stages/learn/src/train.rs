//! The `train` stage's parameters and its place in the engine: kind, version, validation and
//! raw inputs. Training itself needs libtorch and runs in the `pipeline-torch` worker
//! (`stages_torch::train`, which documents the training loop).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stage_api::worker::{run_in_worker, WorkerPart};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

use crate::arch::{Arch, TemporalPool};
use crate::device::DeviceChoice;
use crate::pretrained::{WeightSource, WeightsError};
use crate::TORCH_WORKER;

/// `with:` of a `train` stage; every field but `arch` has the study's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    pub arch: Arch,
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "defaults::plateau_factor")]
    pub plateau_factor: f64,
    #[serde(default = "defaults::plateau_patience")]
    pub plateau_patience: usize,
    #[serde(default = "defaults::early_stopping_patience")]
    pub early_stopping_patience: usize,
    #[serde(default = "defaults::yes")]
    pub augment: bool,
    /// Inverse-frequency cross-entropy weights.
    #[serde(default)]
    pub class_weights: bool,
    #[serde(default)]
    pub seed: u64,
    /// CPU threads for libtorch; 0 = what the engine grants the stage.
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub device: DeviceChoice,
    /// fp16 autocast with loss scaling (CUDA only; ignored on the CPU).
    #[serde(default)]
    pub amp: bool,
    /// Weights to start from: `torchvision:resnet18` / `torchvision:r3d_18` (downloaded once
    /// into the per-user cache and checked), an `https://` URL, or a path to a `.pth` /
    /// `.safetensors` file or a `train` output folder; see [`crate::pretrained`].
    #[serde(default)]
    pub pretrained: Option<String>,
    /// How `late_fusion_resnet18` merges frame features.
    #[serde(default)]
    pub temporal_pool: TemporalPool,
    /// The fold of a k-fold split this training uses: a matrix value shared with the `split`
    /// stage (`matrix: {fold: [...]}`), which pairs the instances; the split input decides the
    /// data. Left out of the key when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<serde_json::Value>,
}

mod defaults {
    pub fn epochs() -> usize {
        30
    }
    pub fn batch_size() -> usize {
        8
    }
    pub fn lr() -> f64 {
        1e-4
    }
    pub fn weight_decay() -> f64 {
        1e-4
    }
    pub fn plateau_factor() -> f64 {
        0.5
    }
    pub fn plateau_patience() -> usize {
        2
    }
    pub fn early_stopping_patience() -> usize {
        5
    }
    pub fn yes() -> bool {
        true
    }
}

impl TrainParams {
    /// Range checks that serde's types do not express.
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |name: &str, why: String| Err(ParamError::new(Some(name), why));
        if self.epochs == 0 {
            return bad("epochs", "`epochs` must be at least 1".into());
        }
        if self.batch_size < 2 {
            return bad("batch_size", format!("`batch_size` must be at least 2 (BatchNorm), got {}", self.batch_size));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("`lr` must be a positive number, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("`weight_decay` must be >= 0, got {}", self.weight_decay));
        }
        if !(self.plateau_factor > 0.0 && self.plateau_factor < 1.0) {
            return bad("plateau_factor", format!("`plateau_factor` must be in (0, 1), got {}", self.plateau_factor));
        }
        if self.early_stopping_patience == 0 {
            return bad("early_stopping_patience", "`early_stopping_patience` must be at least 1".into());
        }
        self.pretrained_source().map_err(|why| ParamError::new(Some("pretrained"), why.to_string()))?;
        Ok(())
    }

    pub fn pretrained_source(&self) -> Result<Option<WeightSource>, WeightsError> {
        self.pretrained.as_deref().map(WeightSource::parse).transpose()
    }

    /// Where the `pretrained` weights are on this machine (downloaded and checked first when
    /// they come from the network); paths resolve against the pipeline folder.
    pub fn pretrained_path(&self, base_dir: &Path) -> Result<Option<PathBuf>, WeightsError> {
        self.pretrained_source()?.map(|source| source.resolve(base_dir)).transpose()
    }

    /// Where the `pretrained` weights are or will be, without fetching anything.
    fn pretrained_location(&self, base_dir: &Path) -> Result<Option<PathBuf>, WeightsError> {
        self.pretrained_source()?.map(|source| source.location(base_dir)).transpose()
    }
}

/// The `train` stage kind as the engine sees it: parameters, key and version; the work runs
/// in the `pipeline-torch` worker.
pub struct TrainStage;

impl Stage for TrainStage {
    fn kind(&self) -> &'static str {
        "train"
    }

    /// 3: the CNN's dropout masks come from its own generator (its trainings change).
    /// 4: our own Adam (its moments can be saved for resuming), whose rounding differs from
    /// libtorch's in the last bits, so every training's bytes change.
    fn version(&self) -> u32 {
        4
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let (typed, canonical): (TrainParams, Params) = typed_params(params)?;
        typed.validate()?;
        Ok(canonical)
    }

    fn raw_inputs(&self, params: &Params, base_dir: &Path, _needs: &[String]) -> Result<Vec<PathBuf>, ParamError> {
        let (typed, _): (TrainParams, Params) = typed_params(params)?;
        let location = typed.pretrained_location(base_dir).map_err(|why| ParamError::new(Some("pretrained"), why.to_string()))?;
        Ok(location.into_iter().collect())
    }

    /// Downloads `torchvision:` / URL weights into the per-user cache (once) and checks them.
    fn prepare_raw_inputs(&self, params: &Params, base_dir: &Path) -> Result<(), StageError> {
        let (typed, _): (TrainParams, Params) = typed_params(params).map_err(|e| StageError::msg(e.message))?;
        typed.pretrained_path(base_dir)?;
        Ok(())
    }

    /// In the libtorch worker (`stages_torch::train`).
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        run_in_worker(TORCH_WORKER, self.kind(), ctx, WorkerPart::Whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_study_settings() {
        let params: Params = serde_json::from_str(r#"{"arch": "r3d18"}"#).unwrap();
        let canonical = TrainStage.resolve_params(&params).unwrap();
        let p: TrainParams = serde_json::from_value(serde_json::Value::Object(canonical)).unwrap();
        assert_eq!((p.epochs, p.batch_size, p.lr, p.weight_decay), (30, 8, 1e-4, 1e-4));
        assert_eq!((p.plateau_factor, p.plateau_patience, p.early_stopping_patience), (0.5, 2, 5));
        assert!(p.augment && !p.class_weights && !p.amp);
        assert_eq!(p.device, DeviceChoice::Auto);
    }

    #[test]
    fn bad_params_are_named() {
        let bad = |json: &str| TrainStage.resolve_params(&serde_json::from_str(json).unwrap()).unwrap_err();
        assert!(bad(r#"{"arch": "vgg"}"#).message.contains("early_fusion_cnn"));
        assert_eq!(bad(r#"{"arch": "r3d18", "lr": 0}"#).param.as_deref(), Some("lr"));
        assert_eq!(bad(r#"{"arch": "r3d18", "frames": 4}"#).param.as_deref(), Some("frames"));
        assert!(bad(r#"{"arch": "r3d18", "device": "tpu"}"#).message.contains("auto"));
    }
}
