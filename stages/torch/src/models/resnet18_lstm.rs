//! `resnet18_lstm`: per-frame ResNet-18 features fed to a one-layer LSTM.
//!
//! The CNN-LSTM of Donahue et al., "Long-term Recurrent Convolutional Networks for Visual
//! Recognition and Description", CVPR 2015 (<https://arxiv.org/abs/1411.4389>), with the
//! ResNet-18 of He et al. 2016 as the frame encoder. PyTorch counterpart: `backbone =
//! torchvision.models.resnet18()` with `fc = nn.Identity()`, `lstm = nn.LSTM(512, 512,
//! batch_first=True)`, `fc = nn.Linear(512, num_classes)` on the last hidden state. The LSTM
//! weights are named as PyTorch names them (`lstm.weight_ih_l0`, `lstm.weight_hh_l0`,
//! `lstm.bias_ih_l0`, `lstm.bias_hh_l0`, gates in PyTorch's i, f, g, o order) and initialised
//! as PyTorch does (uniform in ±1/√hidden).

use tch::nn::{self, ModuleT, RNN};
use tch::Tensor;

use super::layers::linear;
use super::resnet::{per_frame_features, Resnet18Trunk, FEATURES};

/// Hidden size of the LSTM.
pub const HIDDEN: i64 = 512;

#[derive(Debug)]
pub struct Resnet18Lstm {
    backbone: Resnet18Trunk,
    lstm: nn::LSTM,
    fc: nn::Linear,
}

/// `nn.LSTM(input, hidden, batch_first=True)` with PyTorch's initialisation.
pub(crate) fn torch_lstm(p: nn::Path, input: i64, hidden: i64) -> nn::LSTM {
    let bound = 1.0 / (hidden as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    let cfg = nn::RNNConfig {
        batch_first: true,
        w_ih_init: init,
        w_hh_init: init,
        b_ih_init: Some(init),
        b_hh_init: Some(init),
        ..Default::default()
    };
    nn::lstm(p, input, hidden, cfg)
}

impl Resnet18Lstm {
    pub fn new(p: &nn::Path, num_classes: i64) -> Self {
        Self {
            backbone: Resnet18Trunk::new(&(p / "backbone"), 3),
            lstm: torch_lstm(p / "lstm", FEATURES, HIDDEN),
            fc: linear(p / "fc", HIDDEN, num_classes),
        }
    }
}

impl ModuleT for Resnet18Lstm {
    /// `[B, T, 3, S, S]` → `[B, num_classes]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let features = per_frame_features(&self.backbone, xs, train);
        let (_outputs, state) = self.lstm.seq(&features);
        // h_n: [layers = 1, B, hidden]; its only layer is the last hidden state.
        state.h().select(0, 0).apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstm_weights_are_named_like_pytorch() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = Resnet18Lstm::new(&vs.root(), 8);
        let vars = vs.variables();
        assert_eq!(vars["lstm.weight_ih_l0"].size(), vec![4 * HIDDEN, FEATURES]);
        assert_eq!(vars["lstm.weight_hh_l0"].size(), vec![4 * HIDDEN, HIDDEN]);
        assert_eq!(vars["lstm.bias_ih_l0"].size(), vec![4 * HIDDEN]);
        assert_eq!(vars["lstm.bias_hh_l0"].size(), vec![4 * HIDDEN]);
        let xs = Tensor::zeros([2, 4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward_t(&xs, true).size(), vec![2, 8]);
    }
}
