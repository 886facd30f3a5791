//! From cached bytes to model input: uint8 `[B, T, S, S, 3]` (the cache layout) to float
//! `[B, T, 3, S, S]` normalised with the ImageNet mean and standard deviation.
//!
//! Training and inference share these two functions so a model always sees its inputs
//! exactly as it was trained on them. Augmentation works in between, on `[0, 1]` values.

use tch::{Device, Kind, Tensor};

/// ImageNet channel means (RGB), as torchvision's pretrained models expect.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// uint8 `[B, T, S, S, 3]` (any device) to float `[B, T, 3, S, S]` in `[0, 1]` on `device`.
/// The bytes travel to the device as uint8 (4x less to copy) and are converted there.
pub fn to_unit_float(images: &Tensor, device: Device) -> Tensor {
    images.to_device(device).permute([0, 1, 4, 2, 3]).to_kind(Kind::Float) / 255.0
}

/// `[B, T, 3, S, S]` in `[0, 1]` to ImageNet-normalised values, with the given mean and std.
pub fn normalize(xs: &Tensor, mean: [f64; 3], std: [f64; 3]) -> Tensor {
    let opts = (Kind::Float, xs.device());
    let mean = Tensor::from_slice(&mean).to_kind(opts.0).to_device(opts.1).view([1, 1, 3, 1, 1]);
    let std = Tensor::from_slice(&std).to_kind(opts.0).to_device(opts.1).view([1, 1, 3, 1, 1]);
    (xs - mean) / std
}

/// Both steps with the ImageNet statistics: what evaluation and inference feed the model.
pub fn model_input(images: &Tensor, device: Device) -> Tensor {
    normalize(&to_unit_float(images, device), IMAGENET_MEAN, IMAGENET_STD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_values() {
        // One clip, one frame, 1x2 pixels: (255, 0, 0) and (0, 255, 0).
        let bytes: Vec<u8> = vec![255, 0, 0, 0, 255, 0];
        let images = Tensor::from_slice(&bytes).view([1, 1, 1, 2, 3]);
        let x = model_input(&images, Device::Cpu);
        assert_eq!(x.size(), [1, 1, 3, 1, 2]);
        let red_at_first = x.double_value(&[0, 0, 0, 0, 0]);
        assert!((red_at_first - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        let green_at_first = x.double_value(&[0, 0, 1, 0, 0]);
        assert!((green_at_first - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        let green_at_second = x.double_value(&[0, 0, 1, 0, 1]);
        assert!((green_at_second - (1.0 - 0.456) / 0.224).abs() < 1e-5);
    }
}
