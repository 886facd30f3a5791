//! `early_fusion_resnet18`: ResNet-18 on the T frames of a clip stacked as 3T channels.
//!
//! Early fusion as in Karpathy et al., "Large-scale Video Classification with Convolutional
//! Neural Networks", CVPR 2014 (<https://cs.stanford.edu/people/karpathy/deepvideo/>), on the
//! ResNet-18 of He et al. 2016. torchvision counterpart: `torchvision.models.resnet18` with
//! `conv1 = nn.Conv2d(3 * T, 64, 7, 2, 3, bias=False)` and `fc = nn.Linear(512, num_classes)`;
//! the parameter names are exactly torchvision's (`conv1.weight`, ..., `fc.bias`), so with
//! T = 1 this *is* torchvision's resnet18. Channel order: frame 0's R, G, B, then frame 1's, ...

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::linear;
use super::resnet::{Resnet18Trunk, FEATURES};

#[derive(Debug)]
pub struct EarlyFusionResnet18 {
    trunk: Resnet18Trunk,
    fc: nn::Linear,
}

impl EarlyFusionResnet18 {
    pub fn new(p: &nn::Path, frames: i64, num_classes: i64) -> Self {
        Self { trunk: Resnet18Trunk::new(p, 3 * frames), fc: linear(p / "fc", FEATURES, num_classes) }
    }
}

impl ModuleT for EarlyFusionResnet18 {
    /// `[B, T, 3, S, S]` → `[B, num_classes]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let stacked = xs.flatten(1, 2);
        self.trunk.features_t(&stacked, train).apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv1_takes_3t_channels() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = EarlyFusionResnet18::new(&vs.root(), 4, 8);
        assert_eq!(vs.variables()["conv1.weight"].size(), vec![64, 12, 7, 7]);
        let xs = Tensor::zeros([2, 4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward_t(&xs, false).size(), vec![2, 8]);
    }
}
