//! `late_fusion_resnet18`: one ResNet-18 shared by all frames, features merged over time.
//!
//! Late fusion as in Karpathy et al., "Large-scale Video Classification with Convolutional
//! Neural Networks", CVPR 2014, with the ResNet-18 of He et al. 2016 as the per-frame network.
//! torchvision counterpart: `torchvision.models.resnet18` with `fc = nn.Identity()` held as
//! `backbone` (so its parameters are `backbone.conv1.weight`, ...), then the temporal mean
//! (or concatenation) of the T 512-d features and `fc = nn.Linear(512 or 512·T, num_classes)`.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::linear;
use super::resnet::{per_frame_features, Resnet18Trunk, FEATURES};
use super::TemporalPool;

#[derive(Debug)]
pub struct LateFusionResnet18 {
    backbone: Resnet18Trunk,
    pool: TemporalPool,
    fc: nn::Linear,
}

impl LateFusionResnet18 {
    pub fn new(p: &nn::Path, frames: i64, num_classes: i64, pool: TemporalPool) -> Self {
        let head_in = match pool {
            TemporalPool::Mean => FEATURES,
            TemporalPool::Concat => FEATURES * frames,
        };
        Self { backbone: Resnet18Trunk::new(&(p / "backbone"), 3), pool, fc: linear(p / "fc", head_in, num_classes) }
    }
}

impl ModuleT for LateFusionResnet18 {
    /// `[B, T, 3, S, S]` → `[B, num_classes]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let features = per_frame_features(&self.backbone, xs, train);
        let fused = match self.pool {
            TemporalPool::Mean => features.mean_dim(1, false, None),
            TemporalPool::Concat => features.flatten(1, 2),
        };
        fused.apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_head_sees_every_frame() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = LateFusionResnet18::new(&vs.root(), 3, 5, TemporalPool::Concat);
        assert_eq!(vs.variables()["fc.weight"].size(), vec![5, 3 * 512]);
        assert!(vs.variables().contains_key("backbone.layer4.1.conv2.weight"));
        let xs = Tensor::zeros([2, 3, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward_t(&xs, false).size(), vec![2, 5]);
    }
}
