//! The five architectures of the study, built on tch with torchvision's parameter names.
//!
//! Every model takes a float tensor `[B, T, 3, S, S]` (frames already normalised with the
//! ImageNet mean/std) and returns logits `[B, num_classes]`. [`build`] creates the variables
//! under a [`tch::nn::Path`] and returns the model as a [`tch::nn::ModuleT`], so the same
//! `forward_t(xs, train)` call drives training (batch statistics, dropout) and evaluation.
//!
//! | [`Arch`] | file | torchvision counterpart |
//! |---|---|---|
//! | `early_fusion_cnn` | [`early_fusion_cnn`] | none (a VGG-style 4-block CNN on 3T channels) |
//! | `early_fusion_resnet18` | [`early_fusion_resnet18`] | `resnet18` with a 3T-channel `conv1` |
//! | `late_fusion_resnet18` | [`late_fusion_resnet18`] | `resnet18` trunk as `backbone.*` |
//! | `r3d18` | [`r3d18`] | `video.r3d_18` |
//! | `resnet18_lstm` | [`resnet18_lstm`] | `resnet18` trunk as `backbone.*` + `nn.LSTM` |
//!
//! Parameter names equal the ones PyTorch gives the same modules, so a user's torchvision
//! checkpoint (`resnet18` on ImageNet, `r3d_18` on Kinetics-400) loads with
//! [`load_pretrained`], see [`import`].

pub mod early_fusion_cnn;
pub mod early_fusion_resnet18;
pub mod import;
pub mod late_fusion_resnet18;
mod layers;
pub mod r3d18;
pub mod resnet;
pub mod resnet18_lstm;

use stage_api::StageError;

pub use import::{load_pretrained, LoadReport};

pub use stages_learn::arch::{Arch, TemporalPool};

/// What to build: the architecture and the input/output sizes it is built for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Frames per clip (T).
    pub frames: i64,
    /// Frame side in pixels (S).
    pub size: i64,
    pub num_classes: i64,
    /// Used by `late_fusion_resnet18` only.
    #[serde(default)]
    pub temporal_pool: TemporalPool,
}

impl stage_formats::model_card::CardSpec for ModelSpec {
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
}

impl ModelSpec {
    /// The input shape the model expects for a batch of `batch` clips: `[B, T, 3, S, S]`.
    pub fn input_shape(&self, batch: i64) -> [i64; 5] {
        [batch, self.frames, 3, self.size, self.size]
    }

    /// Checks that the sizes make a buildable model.
    pub fn validate(&self) -> Result<(), StageError> {
        let arch = self.arch;
        if self.frames < 1 {
            return Err(StageError::msg(format!("{arch}: frames must be at least 1, got {}", self.frames)));
        }
        if self.num_classes < 1 {
            return Err(StageError::msg(format!("{arch}: num_classes must be at least 1, got {}", self.num_classes)));
        }
        // Four 2x poolings (early_fusion_cnn) or a stride-32 trunk (ResNets) need 16 pixels.
        if self.size < 16 {
            return Err(StageError::msg(format!("{arch}: frame size must be at least 16 pixels, got {}", self.size)));
        }
        Ok(())
    }

    /// Checks that `xs` has the shape [`ModelSpec::input_shape`] describes (any batch size).
    pub fn check_input(&self, xs: &tch::Tensor) -> Result<(), StageError> {
        let size = xs.size();
        let ok = size.len() == 5 && size[1..] == self.input_shape(0)[1..];
        if ok {
            Ok(())
        } else {
            Err(StageError::msg(format!(
                "{}: expected input [B, {}, 3, {}, {}], got {size:?}",
                self.arch, self.frames, self.size, self.size
            )))
        }
    }
}

/// A built model: `forward_t`, and the position of the random draws it makes itself (dropout
/// masks), so that a training resumed after a kill continues the same draws.
pub trait Model: tch::nn::ModuleT {
    /// How far the model's own generator has gone; `None` for a model that draws nothing.
    fn random_position(&self) -> Option<u128> {
        None
    }

    /// Moves the model's generator to `position` (from [`Model::random_position`] of a model
    /// built from the same seed).
    fn set_random_position(&self, _position: u128) {}
}

impl Model for early_fusion_resnet18::EarlyFusionResnet18 {}
impl Model for late_fusion_resnet18::LateFusionResnet18 {}
impl Model for r3d18::R3d18 {}
impl Model for resnet18_lstm::Resnet18Lstm {}

/// Builds the model `spec` describes with fresh (torchvision-style) initial weights under `vs`.
///
/// The returned module's `forward_t` takes `[B, T, 3, S, S]` and returns `[B, num_classes]`;
/// it panics on another input shape (check with [`ModelSpec::check_input`] first).
pub fn build(vs: &tch::nn::Path, spec: &ModelSpec) -> Result<Box<dyn Model>, StageError> {
    spec.validate()?;
    Ok(match spec.arch {
        Arch::EarlyFusionCnn => Box::new(early_fusion_cnn::EarlyFusionCnn::new(vs, spec.frames, spec.num_classes)),
        Arch::EarlyFusionResnet18 => Box::new(early_fusion_resnet18::EarlyFusionResnet18::new(vs, spec.frames, spec.num_classes)),
        Arch::LateFusionResnet18 => {
            Box::new(late_fusion_resnet18::LateFusionResnet18::new(vs, spec.frames, spec.num_classes, spec.temporal_pool))
        }
        Arch::R3d18 => Box::new(r3d18::R3d18::new(vs, spec.num_classes)),
        Arch::Resnet18Lstm => Box::new(resnet18_lstm::Resnet18Lstm::new(vs, spec.num_classes)),
    })
}

/// The number of trainable parameters (what `sum(p.numel() for p in model.parameters())` gives
/// in PyTorch; BatchNorm running statistics are buffers and do not count).
pub fn parameter_count(vs: &tch::nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
