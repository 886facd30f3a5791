//! The ResNet-18 trunk shared by the three image-ResNet models of the study.
//!
//! He et al., "Deep Residual Learning for Image Recognition", CVPR 2016
//! (<https://arxiv.org/abs/1512.03385>); the same network as torchvision's
//! `torchvision.models.resnet18` up to and including the global average pool, with the same
//! parameter names (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`,
//! `layer2.0.downsample.0.weight`, ...). Only the number of input channels of `conv1` is a
//! parameter: 3 for per-frame use, 3T for early fusion. The head (`fc`) belongs to each model.

use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm2d, conv2d};

/// Feature width after the global average pool.
pub const FEATURES: i64 = 512;

/// Blocks per stage of ResNet-18.
const BLOCKS: [i64; 4] = [2, 2, 2, 2];
/// Output channels per stage.
const WIDTHS: [i64; 4] = [64, 128, 256, 512];

/// torchvision's `BasicBlock`: two 3×3 convolutions with a residual connection, and a 1×1
/// projection (`downsample.0` conv, `downsample.1` BatchNorm) where the shape changes.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = &p / "downsample";
            (conv2d(&d / "0", c_in, c_out, 1, stride, 0), batch_norm2d(&d / "1", c_out))
        });
        Self {
            conv1: conv2d(&p / "conv1", c_in, c_out, 3, stride, 1),
            bn1: batch_norm2d(&p / "bn1", c_out),
            conv2: conv2d(&p / "conv2", c_out, c_out, 3, 1, 1),
            bn2: batch_norm2d(&p / "bn2", c_out),
            downsample,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu().apply(&self.conv2).apply_t(&self.bn2, train);
        let identity = match &self.downsample {
            Some((conv, bn)) => xs.apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (ys + identity).relu()
    }
}

/// ResNet-18 without its classifier: `[N, C, H, W]` → `[N, 512]`.
#[derive(Debug)]
pub struct Resnet18Trunk {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    /// `layer1` .. `layer4`, each a list of blocks.
    layers: Vec<Vec<BasicBlock>>,
}

impl Resnet18Trunk {
    /// Creates the trunk under `p` with `in_channels` input channels (3 for RGB frames).
    pub fn new(p: &nn::Path, in_channels: i64) -> Self {
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
        Self { conv1: conv2d(p / "conv1", in_channels, 64, 7, 2, 3), bn1: batch_norm2d(p / "bn1", 64), layers }
    }

    /// Features after the global average pool, `[N, 512]`.
    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for layer in &self.layers {
            for block in layer {
                ys = block.forward_t(&ys, train);
            }
        }
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

impl ModuleT for Resnet18Trunk {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features_t(xs, train)
    }
}

/// Runs `trunk` on every frame of `[B, T, 3, S, S]` as one batch of B·T images and returns
/// the per-frame features `[B, T, 512]` (the "shared per-frame backbone" of late fusion and
/// the LSTM model).
pub fn per_frame_features(trunk: &Resnet18Trunk, xs: &Tensor, train: bool) -> Tensor {
    let size = xs.size();
    let (b, t) = (size[0], size[1]);
    let frames = xs.flatten(0, 1);
    trunk.features_t(&frames, train).view([b, t, FEATURES])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_torchvision() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _trunk = Resnet18Trunk::new(&vs.root(), 3);
        let vars = vs.variables();
        for name in ["conv1.weight", "bn1.running_var", "layer1.1.conv2.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias"] {
            assert!(vars.contains_key(name), "missing {name}");
        }
        assert!(!vars.contains_key("layer1.0.downsample.0.weight"));
        assert!(vars.keys().all(|k| !k.contains("__")), "automatic names in {:?}", vars.keys());
    }

    #[test]
    fn features_have_512_channels() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let trunk = Resnet18Trunk::new(&vs.root(), 6);
        let xs = Tensor::zeros([2, 6, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(trunk.features_t(&xs, false).size(), vec![2, 512]);
    }
}
