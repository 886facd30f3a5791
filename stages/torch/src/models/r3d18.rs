//! `r3d18`: the 3-D ResNet-18 of torchvision's video models.
//!
//! Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR
//! 2018 (<https://arxiv.org/abs/1711.11248>), the R3D-18 variant; exactly
//! `torchvision.models.video.r3d_18`: a `BasicStem` (Conv3d 3→64, kernel (3, 7, 7), stride
//! (1, 2, 2), padding (1, 3, 3), no bias; BatchNorm3d; ReLU), four stages of two `BasicBlock`s
//! with `Conv3DSimple` (3×3×3) convolutions, 64/128/256/512 channels, stride 2 in time and
//! space from `layer2` on, `AdaptiveAvgPool3d(1)` and `fc`. Parameter names as torchvision's:
//! `stem.0.weight`, `stem.1.*`, `layer1.0.conv1.0.weight`, `layer1.0.conv1.1.*`,
//! `layer2.0.downsample.0.weight`, ..., `fc.weight`. The input `[B, T, 3, S, S]` is permuted
//! to the `[B, 3, T, S, S]` layout torchvision's video models take.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm3d, conv3d, linear_normal};

const WIDTHS: [i64; 4] = [64, 128, 256, 512];
const BLOCKS: [i64; 4] = [2, 2, 2, 2];

/// A 3-D convolution followed by BatchNorm3d (`Sequential(Conv3DSimple, BatchNorm3d)`).
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv<[i64; 3]>,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        let pad = kernel / 2;
        Self { conv: conv3d(&p / "0", c_in, c_out, [kernel; 3], [stride; 3], [pad; 3]), bn: batch_norm3d(&p / "1", c_out) }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// torchvision's video `BasicBlock` (`conv1` = conv + BN + ReLU, `conv2` = conv + BN).
#[derive(Debug)]
struct BasicBlock {
    conv1: ConvBn,
    conv2: ConvBn,
    downsample: Option<ConvBn>,
}

impl BasicBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        Self {
            conv1: ConvBn::new(&p / "conv1", c_in, c_out, 3, stride),
            conv2: ConvBn::new(&p / "conv2", c_out, c_out, 3, 1),
            downsample: (stride != 1 || c_in != c_out).then(|| ConvBn::new(&p / "downsample", c_in, c_out, 1, stride)),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv1.forward_t(xs, train).relu();
        let ys = self.conv2.forward_t(&ys, train);
        let identity = match &self.downsample {
            Some(d) => d.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        (ys + identity).relu()
    }
}

#[derive(Debug)]
pub struct R3d18 {
    stem_conv: nn::Conv<[i64; 3]>,
    stem_bn: nn::BatchNorm,
    layers: Vec<Vec<BasicBlock>>,
    fc: nn::Linear,
}

impl R3d18 {
    pub fn new(p: &nn::Path, num_classes: i64) -> Self {
        let stem = p / "stem";
        let stem_conv = conv3d(&stem / "0", 3, 64, [3, 7, 7], [1, 2, 2], [1, 3, 3]);
        let stem_bn = batch_norm3d(&stem / "1", 64);
        let mut layers = Vec::with_capacity(4);
        let mut c_in = 64;
        for (stage, (&width, &blocks)) in WIDTHS.iter().zip(&BLOCKS).enumerate() {
            let lp = p / format!("layer{}", stage + 1);
            let first_stride = if stage == 0 { 1 } else { 2 };
            let layer = (0..blocks)
                .map(|b| {
                    let (cin, stride) = if b == 0 { (c_in, first_stride) } else { (width, 1) };
                    BasicBlock::new(&lp / b.to_string(), cin, width, stride)
                })
                .collect();
            layers.push(layer);
            c_in = width;
        }
        Self { stem_conv, stem_bn, layers, fc: linear_normal(p / "fc", 512, num_classes) }
    }
}

impl ModuleT for R3d18 {
    /// `[B, T, 3, S, S]` → `[B, num_classes]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.permute([0, 2, 1, 3, 4]).apply(&self.stem_conv).apply_t(&self.stem_bn, train).relu();
        for layer in &self.layers {
            for block in layer {
                ys = block.forward_t(&ys, train);
            }
        }
        ys.adaptive_avg_pool3d([1, 1, 1]).flatten(1, -1).apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_torchvision_video() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let model = R3d18::new(&vs.root(), 8);
        let vars = vs.variables();
        assert_eq!(vars["stem.0.weight"].size(), vec![64, 3, 3, 7, 7]);
        for name in ["stem.1.running_mean", "layer1.0.conv1.0.weight", "layer1.0.conv1.1.bias", "layer3.0.downsample.1.weight"] {
            assert!(vars.contains_key(name), "missing {name}");
        }
        let xs = Tensor::zeros([2, 4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(model.forward_t(&xs, false).size(), vec![2, 8]);
    }
}
