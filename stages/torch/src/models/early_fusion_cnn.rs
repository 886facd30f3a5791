//! `early_fusion_cnn`: a small VGG-style CNN on the T frames stacked as 3T channels.
//!
//! The from-scratch baseline of the study: early fusion (Karpathy et al., "Large-scale Video
//! Classification with Convolutional Neural Networks", CVPR 2014) with VGG-style blocks
//! (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
//! Recognition", ICLR 2015). It has no torchvision counterpart; the names are those PyTorch
//! gives this module:
//!
//! ```python
//! blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
//!                                        nn.ReLU(), nn.MaxPool2d(2)) for c_in, c_out in ...])  # 3T→64→128→256→512
//! classifier = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, num_classes))
//! ```
//!
//! i.e. `blocks.{0..3}.0.{weight,bias}` (convolutions, with bias as `nn.Conv2d`'s default),
//! `blocks.{0..3}.1.*` (BatchNorm), `classifier.0.*` and `classifier.3.*`. The forward pass
//! global-average-pools the last block's 512 channels before the classifier.
//!
//! Dropout draws its masks from the model's own generator (seeded from libtorch's generator
//! when the model is built), not from libtorch's process-wide one, which every training in
//! the process shares: two trainings at once would otherwise draw each other's masks and their
//! results would depend on timing.

use std::sync::Mutex;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::layers::{batch_norm2d, linear};

const WIDTHS: [i64; 4] = [64, 128, 256, 512];
const HIDDEN: i64 = 1024;
const DROPOUT: f64 = 0.5;

#[derive(Debug)]
pub struct EarlyFusionCnn {
    blocks: Vec<(nn::Conv2D, nn::BatchNorm)>,
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout_rng: Mutex<ChaCha8Rng>,
}

/// `nn.Conv2d(c_in, c_out, 3, padding=1)` with PyTorch's default initialisation (bias included).
fn conv3x3(p: nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    let fan_in = (c_in * 9) as f64;
    let bound = 1.0 / fan_in.sqrt();
    let cfg = nn::ConvConfig {
        padding: 1,
        ws_init: nn::Init::Uniform { lo: -bound, up: bound },
        bs_init: nn::Init::Uniform { lo: -bound, up: bound },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, 3, cfg)
}

impl EarlyFusionCnn {
    pub fn new(p: &nn::Path, frames: i64, num_classes: i64) -> Self {
        let bp = p / "blocks";
        let mut c_in = 3 * frames;
        let blocks = WIDTHS
            .iter()
            .enumerate()
            .map(|(i, &c_out)| {
                let b = &bp / i.to_string();
                let block = (conv3x3(&b / "0", c_in, c_out), batch_norm2d(&b / "1", c_out));
                c_in = c_out;
                block
            })
            .collect();
        let cp = p / "classifier";
        let (fc1, fc2) = (linear(&cp / "0", 512, HIDDEN), linear(&cp / "3", HIDDEN, num_classes));
        // Drawn after the weights, so their initialisation is what it always was.
        let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
        Self { blocks, fc1, fc2, dropout_rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)) }
    }

    /// `nn.Dropout(DROPOUT)` in training mode: zero each element with probability `DROPOUT`,
    /// scale the others by `1 / (1 - DROPOUT)`.
    fn dropout(&self, xs: &Tensor) -> Tensor {
        let scale = (1.0 / (1.0 - DROPOUT)) as f32;
        let mask: Vec<f32> = {
            let mut rng = self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..xs.numel()).map(|_| if rng.random::<f64>() < DROPOUT { 0.0 } else { scale }).collect()
        };
        xs * Tensor::from_slice(&mask).view(xs.size().as_slice()).to_device(xs.device()).to_kind(xs.kind())
    }
}

impl super::Model for EarlyFusionCnn {
    fn random_position(&self) -> Option<u128> {
        Some(self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner()).get_word_pos())
    }

    fn set_random_position(&self, position: u128) {
        self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner()).set_word_pos(position);
    }
}

impl ModuleT for EarlyFusionCnn {
    /// `[B, T, 3, S, S]` → `[B, num_classes]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.flatten(1, 2);
        for (conv, bn) in &self.blocks {
            ys = ys.apply(conv).apply_t(bn, train).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        let hidden = ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc1).relu();
        let hidden = if train { self.dropout(&hidden) } else { hidden };
        hidden.apply(&self.fc2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_names() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = EarlyFusionCnn::new(&vs.root(), 4, 8);
        let vars = vs.variables();
        assert_eq!(vars["blocks.0.0.weight"].size(), vec![64, 12, 3, 3]);
        assert_eq!(vars["blocks.3.1.running_var"].size(), vec![512]);
        assert_eq!(vars["classifier.3.weight"].size(), vec![8, 1024]);
        let xs = Tensor::zeros([2, 4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward_t(&xs, true).size(), vec![2, 8]);
    }
}
