//! Training-time augmentation on tensors, on the training device, with one transform per clip
//! applied identically to all of its frames (a clip is one moment of one face; jittering
//! frames independently would invent motion).
//!
//! Per clip: a random crop of 90–100 % of the side at a random position, resized back to
//! `S x S`; a horizontal flip with probability 1/2; a rotation of ±20°; brightness and
//! contrast factors in [0.8, 1.2]. The geometric part is one affine map per clip
//! (`affine_grid` + bilinear `grid_sample`, zeros outside the image as torchvision's rotation
//! fills); the photometric part scales values and pulls them towards or away from the clip's
//! mean grey level (torchvision's `adjust_contrast`), then clamps to [0, 1].
//!
//! Parameters are drawn on the CPU from a seeded generator, so a seed gives the same
//! augmentations on any device and any thread timing.

use rand::{Rng, RngExt};
use tch::{Kind, Tensor};

/// Crop side as a fraction of the frame side: U[MIN_CROP, 1].
const MIN_CROP: f64 = 0.9;
/// Rotation range in degrees: U[-MAX_ROTATION, MAX_ROTATION].
const MAX_ROTATION: f64 = 20.0;
/// Brightness and contrast factors: U[1 - JITTER, 1 + JITTER].
const JITTER: f64 = 0.2;

/// The transform of one clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipTransform {
    /// Crop side / frame side.
    pub crop: f64,
    /// Crop centre in normalised coordinates ([-1, 1], 0 = frame centre).
    pub center: (f64, f64),
    pub flip: bool,
    pub rotation_deg: f64,
    pub brightness: f64,
    pub contrast: f64,
}

impl ClipTransform {
    /// Leaves a clip unchanged.
    pub const IDENTITY: ClipTransform =
        ClipTransform { crop: 1.0, center: (0.0, 0.0), flip: false, rotation_deg: 0.0, brightness: 1.0, contrast: 1.0 };

    /// Draws a random transform.
    pub fn sample<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let crop = rng.random_range(MIN_CROP..=1.0);
        let slack = 1.0 - crop;
        let mut offset = || {
            if slack > 0.0 {
                rng.random_range(-slack..=slack)
            } else {
                0.0
            }
        };
        let center = (offset(), offset());
        ClipTransform {
            crop,
            center,
            flip: rng.random_bool(0.5),
            rotation_deg: rng.random_range(-MAX_ROTATION..=MAX_ROTATION),
            brightness: rng.random_range(1.0 - JITTER..=1.0 + JITTER),
            contrast: rng.random_range(1.0 - JITTER..=1.0 + JITTER),
        }
    }

    /// The 2x3 matrix mapping output to input coordinates (`affine_grid`'s `theta`).
    fn theta(&self) -> [f64; 6] {
        let (sin, cos) = self.rotation_deg.to_radians().sin_cos();
        let sx = if self.flip { -self.crop } else { self.crop };
        let s = self.crop;
        [cos * sx, -sin * s, self.center.0, sin * sx, cos * s, self.center.1]
    }
}

/// Applies `transforms[b]` to every frame of clip `b` of `xs` (`[B, T, 3, S, S]`, values in
/// [0, 1], any device). Returns a tensor of the same shape on the same device.
pub fn augment(xs: &Tensor, transforms: &[ClipTransform]) -> Tensor {
    let size = xs.size();
    let (b, t, c, h, w) = (size[0], size[1], size[2], size[3], size[4]);
    assert_eq!(b as usize, transforms.len(), "one transform per clip");
    let device = xs.device();
    let theta: Vec<f32> = transforms.iter().flat_map(|tr| tr.theta()).map(|v| v as f32).collect();
    // One sampling grid per clip, shared by its frames.
    let theta = Tensor::from_slice(&theta).to_device(device).view([b, 2, 3]);
    let grid =
        Tensor::affine_grid_generator(&theta, [b, c, h, w], false).unsqueeze(1).expand([b, t, h, w, 2], false).reshape([b * t, h, w, 2]);
    // interpolation 0 = bilinear, padding 0 = zeros.
    let mut out = xs.reshape([b * t, c, h, w]).grid_sampler_2d(&grid, 0, 0, false).view([b, t, c, h, w]);

    let per_clip = |f: fn(&ClipTransform) -> f64| {
        let v: Vec<f32> = transforms.iter().map(|tr| f(tr) as f32).collect();
        Tensor::from_slice(&v).to_device(device).view([b, 1, 1, 1, 1])
    };
    let _ = out.g_mul_(&per_clip(|tr| tr.brightness)).clamp_(0.0, 1.0);
    // The clip's mean grey level (ITU-R 601 luma, as torchvision's rgb_to_grayscale); luma is
    // linear, so it is taken of the per-channel means.
    let luma = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).to_device(device).view([1, 1, 3, 1, 1]);
    let channel_means = out.mean_dim([1, 3, 4].as_slice(), true, Kind::Float);
    let grey_mean = (channel_means * luma).sum_dim_intlist([2].as_slice(), true, Kind::Float);
    // (x - m) * c + m = x * c + m * (1 - c)
    let contrast = per_clip(|tr| tr.contrast);
    let shift = grey_mean * (1.0 - &contrast);
    let _ = out.g_mul_(&contrast).g_add_(&shift).clamp_(0.0, 1.0);
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tch::Device;

    use super::*;

    /// Two clips of 3 frames, 3x8x8, every frame of a clip identical.
    fn clips() -> Tensor {
        tch::manual_seed(1);
        let frame = Tensor::rand([2, 1, 3, 8, 8], (Kind::Float, Device::Cpu));
        frame.expand([2, 3, 3, 8, 8], false).contiguous()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn identity_leaves_clips_unchanged() {
        let xs = clips();
        let out = augment(&xs, &[ClipTransform::IDENTITY; 2]);
        assert!(max_diff(&out, &xs) < 1e-5);
    }

    #[test]
    fn flip_mirrors_columns() {
        let xs = clips();
        let flip = ClipTransform { flip: true, ..ClipTransform::IDENTITY };
        let out = augment(&xs, &[flip, ClipTransform::IDENTITY]);
        assert!(max_diff(&out.get(0), &xs.get(0).flip([3])) < 1e-5);
        assert!(max_diff(&out.get(1), &xs.get(1)) < 1e-5);
    }

    #[test]
    fn random_transforms_keep_shape_and_treat_all_frames_alike() {
        let xs = clips();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let transforms = [ClipTransform::sample(&mut rng), ClipTransform::sample(&mut rng)];
        assert_ne!(transforms[0], transforms[1]);
        let out = augment(&xs, &transforms);
        assert_eq!(out.size(), xs.size());
        assert!(out.min().double_value(&[]) >= 0.0 && out.max().double_value(&[]) <= 1.0);
        for clip in 0..2 {
            assert!(max_diff(&out.get(clip), &xs.get(clip)) > 1e-3, "clip {clip} was not changed");
            for frame in 1..3 {
                assert!(max_diff(&out.get(clip).get(frame), &out.get(clip).get(0)) < 1e-6);
            }
        }
    }

    #[test]
    fn sampling_is_seeded_and_within_ranges() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200).map(|_| ClipTransform::sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        for tr in draw(5) {
            assert!((0.9..=1.0).contains(&tr.crop));
            assert!(tr.center.0.abs() <= 1.0 - tr.crop + 1e-12 && tr.center.1.abs() <= 1.0 - tr.crop + 1e-12);
            assert!(tr.rotation_deg.abs() <= 20.0);
            assert!((0.8..=1.2).contains(&tr.brightness) && (0.8..=1.2).contains(&tr.contrast));
        }
        assert!(draw(5).iter().any(|t| t.flip) && draw(5).iter().any(|t| !t.flip));
    }
}

#[cfg(test)]
mod timing {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tch::Device;

    use super::*;

    /// Run with `--ignored --nocapture`: input preparation cost per batch of 8 x T=10 x S=112.
    #[test]
    #[ignore]
    fn time_augment_at_study_size() {
        tch::set_num_threads(2);
        let images = Tensor::randint(255, [8, 10, 112, 112, 3], (Kind::Uint8, Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut t = [0f64; 3];
        for _ in 0..10 {
            let transforms: Vec<_> = (0..8).map(|_| ClipTransform::sample(&mut rng)).collect();
            let a = std::time::Instant::now();
            let xs = crate::preprocess::to_unit_float(&images, Device::Cpu);
            t[0] += a.elapsed().as_secs_f64();
            let b = std::time::Instant::now();
            let ys = augment(&xs, &transforms);
            t[1] += b.elapsed().as_secs_f64();
            let c = std::time::Instant::now();
            let _ = crate::preprocess::normalize(&ys, crate::preprocess::IMAGENET_MEAN, crate::preprocess::IMAGENET_STD);
            t[2] += c.elapsed().as_secs_f64();
        }
        println!("per batch: to_float {:.1} ms, augment {:.1} ms, normalize {:.1} ms", t[0] * 100.0, t[1] * 100.0, t[2] * 100.0);
    }
}
