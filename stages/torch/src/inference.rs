//! Using a trained model: [`Predictor`] loads a `train` output folder (`model.json` +
//! `model.safetensors`, strictly) and turns clips in the cache layout (uint8 `[T, S, S, 3]`)
//! into class probabilities, in eval mode and with the normalisation recorded in the card.
//! The evaluation stage and `pipeline predict` use it.
//!
//! ```no_run
//! # fn main() -> Result<(), stage_api::StageError> {
//! use stages_torch::inference::Predictor;
//! let predictor = Predictor::load("out/train".as_ref(), tch::Device::Cpu)?;
//! let clip = vec![0u8; (predictor.frames() * predictor.size() * predictor.size() * 3) as usize];
//! let probabilities = predictor.predict(&[&clip])?;
//! assert_eq!(probabilities[0].len(), predictor.class_names().len());
//! # Ok(()) }
//! ```

use std::path::Path;

use stage_api::StageError;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::models::{self, ModelSpec};
use crate::preprocess::{normalize, to_unit_float};
use crate::train::checkpoint::{load_weights, ModelCard, WEIGHTS_FILE};

/// Clips per forward pass.
const BATCH: usize = 16;

/// A loaded model, ready to predict.
pub struct Predictor {
    card: ModelCard,
    // Keeps the variables alive for `model`.
    _vs: VarStore,
    model: Box<dyn models::Model>,
    device: Device,
}

impl Predictor {
    /// Loads `<model_dir>/model.json` and `<model_dir>/model.safetensors` onto `device`.
    pub fn load(model_dir: &Path, device: Device) -> Result<Self, StageError> {
        let card = ModelCard::read(model_dir)?;
        let vs = VarStore::new(device);
        let model = models::build(&vs.root(), &card.spec)?;
        load_weights(&vs, &model_dir.join(WEIGHTS_FILE))?;
        Ok(Self { card, _vs: vs, model, device })
    }

    /// Everything `model.json` says.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn spec(&self) -> ModelSpec {
        self.card.spec.clone()
    }

    /// Frames per clip the model expects (T).
    pub fn frames(&self) -> i64 {
        self.card.spec.frames
    }

    /// Frame side the model expects (S).
    pub fn size(&self) -> i64 {
        self.card.spec.size
    }

    /// Class names by output index.
    pub fn class_names(&self) -> &[String] {
        &self.card.class_names
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Softmax probabilities for each clip (uint8 `[T, S, S, 3]` bytes, as in the cache).
    pub fn predict(&self, clips: &[&[u8]]) -> Result<Vec<Vec<f32>>, StageError> {
        let (t, s) = (self.frames(), self.size());
        let expected = (t * s * s * 3) as usize;
        if let Some((i, bad)) = clips.iter().enumerate().find(|(_, c)| c.len() != expected) {
            return Err(StageError::msg(format!(
                "clip {i} has {} bytes, the model expects T={t} S={s} ({expected} bytes = {t}x{s}x{s}x3)",
                bad.len()
            )));
        }
        let mut out = Vec::with_capacity(clips.len());
        for chunk in clips.chunks(BATCH) {
            let bytes: Vec<u8> = chunk.concat();
            let images = Tensor::from_slice(&bytes).view([chunk.len() as i64, t, s, s, 3]);
            let probs = self.predict_tensor(&images)?;
            let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&probs).map_err(|e| StageError::with_source("reading probabilities", e))?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Softmax probabilities `[B, classes]` (CPU, f32) for uint8 images `[B, T, S, S, 3]`.
    pub fn predict_tensor(&self, images: &Tensor) -> Result<Tensor, StageError> {
        let (t, s) = (self.frames(), self.size());
        let size = images.size();
        if size.len() != 5 || size[1..] != [t, s, s, 3] || images.kind() != Kind::Uint8 {
            return Err(StageError::msg(format!("expected uint8 clips [B, {t}, {s}, {s}, 3], got {:?} {size:?}", images.kind())));
        }
        let probs = tch::no_grad(|| {
            let xs = normalize(&to_unit_float(images, self.device), self.card.mean, self.card.std);
            self.model.forward_t(&xs, false).to_kind(Kind::Float).softmax(-1, Kind::Float)
        });
        Ok(probs.to_device(Device::Cpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, TemporalPool};
    use crate::preprocess::model_input;
    use crate::train::checkpoint::{card_for_spec, save_weights};

    fn card(spec: &ModelSpec) -> ModelCard {
        let names = (0..spec.num_classes).map(|c| format!("class{c}")).collect();
        ModelCard { epochs_run: 1, best_epoch: 1, best_val_accuracy: 0.5, device: "cpu".into(), ..card_for_spec(spec, names) }
    }

    #[test]
    fn saved_model_predicts_exactly_like_the_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec { arch: Arch::EarlyFusionCnn, frames: 2, size: 16, num_classes: 3, temporal_pool: TemporalPool::Mean };
        let vs = VarStore::new(Device::Cpu);
        let model = models::build(&vs.root(), &spec).unwrap();
        // Move the BatchNorm running statistics away from their initial values.
        tch::manual_seed(5);
        let warm = Tensor::randn(spec.input_shape(4), (Kind::Float, Device::Cpu)) * 2.0 + 0.5;
        let _ = model.forward_t(&warm, true);
        save_weights(&vs, &dir.path().join(WEIGHTS_FILE)).unwrap();
        card(&spec).write(dir.path()).unwrap();

        let clips: Vec<Vec<u8>> = (0..3u8).map(|k| (0..2 * 16 * 16 * 3).map(|i| (i as u8).wrapping_mul(k + 7)).collect()).collect();
        let refs: Vec<&[u8]> = clips.iter().map(Vec::as_slice).collect();
        let predictor = Predictor::load(dir.path(), Device::Cpu).unwrap();
        let got = predictor.predict(&refs).unwrap();

        let images = Tensor::from_slice(&clips.concat()).view([3, 2, 16, 16, 3]);
        let expected = tch::no_grad(|| model.forward_t(&model_input(&images, Device::Cpu), false).softmax(-1, Kind::Float));
        let expected = Vec::<Vec<f32>>::try_from(&expected).unwrap();
        assert_eq!(got, expected);
        assert_eq!(predictor.class_names()[2], "class2");

        let err = predictor.predict(&[&clips[0][..10]]).unwrap_err();
        assert!(err.message.contains("T=2 S=16"), "{}", err.message);
    }
}
