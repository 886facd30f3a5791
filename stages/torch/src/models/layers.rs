//! Layer constructors with PyTorch's and torchvision's initialisations.
//!
//! tch's defaults differ from PyTorch's (BatchNorm weights uniform in [0, 1], Linear weights
//! Kaiming-uniform with gain √2). These helpers reproduce what the torchvision models do, so a
//! freshly built model trains like its Python counterpart:
//! - convolutions: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, no bias;
//! - BatchNorm: weight 1, bias 0, eps 1e-5, momentum 0.1;
//! - Linear: PyTorch's default, weight and bias uniform in ±1/√fan_in.

use tch::nn::{self, init::FanInOut, init::NonLinearity, init::NormalOrUniform, Init};

const CONV_INIT: Init = Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanOut, non_linearity: NonLinearity::ReLU };

/// A bias-free 2-D convolution with a square kernel.
pub(crate) fn conv2d(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding, bias: false, ws_init: CONV_INIT, ..Default::default() };
    nn::conv2d(p, c_in, c_out, kernel, cfg)
}

/// A bias-free 3-D convolution; kernel, stride and padding per (time, height, width).
pub(crate) fn conv3d(p: nn::Path, c_in: i64, c_out: i64, kernel: [i64; 3], stride: [i64; 3], padding: [i64; 3]) -> nn::Conv<[i64; 3]> {
    let cfg = nn::ConvConfigND::<[i64; 3]> {
        stride,
        padding,
        dilation: [1, 1, 1],
        groups: 1,
        bias: false,
        ws_init: CONV_INIT,
        bs_init: Init::Const(0.),
        padding_mode: nn::PaddingMode::Zeros,
    };
    nn::conv(p, c_in, c_out, kernel, cfg)
}

fn bn_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig { eps: 1e-5, momentum: 0.1, ws_init: Init::Const(1.), bs_init: Init::Const(0.), ..Default::default() }
}

pub(crate) fn batch_norm2d(p: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, channels, bn_config())
}

pub(crate) fn batch_norm3d(p: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm3d(p, channels, bn_config())
}

/// `nn.Linear` with PyTorch's default initialisation.
pub(crate) fn linear(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let bound = 1.0 / (c_in as f64).sqrt();
    let cfg = nn::LinearConfig {
        ws_init: Init::Uniform { lo: -bound, up: bound },
        bs_init: Some(Init::Uniform { lo: -bound, up: bound }),
        bias: true,
    };
    nn::linear(p, c_in, c_out, cfg)
}

/// `nn.Linear` initialised as torchvision's video ResNets do: weight N(0, 0.01), bias 0.
pub(crate) fn linear_normal(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let cfg = nn::LinearConfig { ws_init: Init::Randn { mean: 0., stdev: 0.01 }, bs_init: Some(Init::Const(0.)), bias: true };
    nn::linear(p, c_in, c_out, cfg)
}
