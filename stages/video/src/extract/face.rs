//! Face detection on one frame with rustface (SeetaFace frontal detector, model bundled).
//!
//! Detection runs on a grey copy of the frame downscaled to `detect_width` pixels wide (never
//! upscaled): the cascade's cost grows with the pixel count and RAVDESS faces (about 250 px
//! tall in 1280x720, about 100 px at 320 wide) stay well above the smallest face looked for
//! (1/8 of the detector frame's width, at least 20 px). Boxes are
//! mapped back to source pixels. The best face of a frame is the one with the highest score.
//!
//! The model file `model/seeta_fd_frontal_v1.0.bin` is the one shipped inside the rustface
//! crate (BSD-2-Clause, see `model/SEETAFACE-LICENSE`), embedded so that nothing is read
//! from disk at run time.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rustface::{Detector, ImageData, Model};

static MODEL_BYTES: &[u8] = include_bytes!("model/seeta_fd_frontal_v1.0.bin");

/// A face box in source-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// The detector's score (SeetaFace's classifier output; higher is more face-like).
    pub score: f32,
}

impl FaceBox {
    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
}

/// Detector settings (kept in `extract.json`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DetectorSettings {
    /// Width of the grey frame the detector sees.
    pub detect_width: u32,
    /// Smallest face in detector pixels.
    pub min_face_size: u32,
    /// SeetaFace score threshold.
    pub score_thresh: f64,
    pub pyramid_scale_factor: f32,
    pub slide_window_step: u32,
}

impl DetectorSettings {
    pub fn new(detect_width: u32) -> Self {
        // Faces narrower than 1/8 of the frame width are not looked for (40 px at the default
        // 320): the smallest pyramid scales dominate the detector's cost, and a face that small
        // would be upscaled more than 2x into a 112 px crop anyway.
        let min_face_size = (detect_width / 8).max(20);
        Self { detect_width, min_face_size, score_thresh: 2.0, pyramid_scale_factor: 0.8, slide_window_step: 4 }
    }
}

/// The bundled model, parsed.
pub fn bundled_model() -> Result<Model, std::io::Error> {
    rustface::read_model(MODEL_BYTES)
}

/// One detector plus its scratch buffers; not `Sync`, so one per worker thread.
pub struct FaceDetector {
    detector: Box<dyn Detector>,
    settings: DetectorSettings,
    resizer: Resizer,
    grey: Vec<u8>,
}

impl FaceDetector {
    pub fn new(model: Model, settings: DetectorSettings) -> Self {
        let mut detector = rustface::create_detector_with_model(model);
        detector.set_min_face_size(settings.min_face_size);
        detector.set_score_thresh(settings.score_thresh);
        detector.set_pyramid_scale_factor(settings.pyramid_scale_factor);
        detector.set_slide_window_step(settings.slide_window_step, settings.slide_window_step);
        Self { detector, settings, resizer: Resizer::new(), grey: Vec::new() }
    }

    /// The best face in an RGB24 frame of `width x height`, in source pixels. The frame is
    /// downscaled in RGB first (SIMD) and converted to grey at the small size, so the
    /// per-pixel grey conversion never touches the full frame.
    pub fn detect_rgb(&mut self, rgb: &[u8], width: u32, height: u32) -> Option<FaceBox> {
        if width == 0 || height == 0 || rgb.len() < width as usize * height as usize * 3 {
            return None;
        }
        let (dw, dh) = self.detect_size(width, height);
        let small;
        let pixels = if dw == width {
            rgb
        } else {
            let src = ImageRef::new(width, height, rgb, PixelType::U8x3).ok()?;
            let mut dst = Image::new(dw, dh, PixelType::U8x3);
            let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            self.resizer.resize(&src, &mut dst, &options).ok()?;
            small = dst.into_vec();
            small.as_slice()
        };
        rgb_to_grey(pixels, &mut self.grey);
        let grey = std::mem::take(&mut self.grey);
        let found = self.detect_small(&grey, dw, dh).map(|f| scale_box(f, width as f32 / dw as f32, height as f32 / dh as f32));
        self.grey = grey;
        found
    }

    /// The detector frame size for a `width x height` source: `detect_width` wide (never
    /// upscaled), height in proportion.
    fn detect_size(&self, width: u32, height: u32) -> (u32, u32) {
        let dw = self.settings.detect_width.clamp(1, width);
        let dh = ((u64::from(height) * u64::from(dw) + u64::from(width) / 2) / u64::from(width)).max(1) as u32;
        if dw == width {
            (width, height)
        } else {
            (dw, dh)
        }
    }

    /// The best face of a grey frame already at detector size.
    fn detect_small(&mut self, pixels: &[u8], pw: u32, ph: u32) -> Option<FaceBox> {
        if pw.min(ph) < self.settings.min_face_size {
            return None; // smaller than the smallest face the detector looks for
        }
        let faces = self.detector.detect(&ImageData::new(pixels, pw, ph));
        let best = faces.iter().max_by(|a, b| a.score().partial_cmp(&b.score()).unwrap_or(std::cmp::Ordering::Equal))?;
        let b = best.bbox();
        Some(FaceBox { x: b.x() as f32, y: b.y() as f32, w: b.width() as f32, h: b.height() as f32, score: best.score() as f32 })
    }

    /// The best face in a grey frame of `width x height`, in source pixels.
    pub fn detect_grey(&mut self, grey: &[u8], width: u32, height: u32) -> Option<FaceBox> {
        if width == 0 || height == 0 || grey.len() < width as usize * height as usize {
            return None;
        }
        let (dw, dh) = self.detect_size(width, height);
        if dw == width {
            return self.detect_small(grey, width, height);
        }
        let src = ImageRef::new(width, height, grey, PixelType::U8).ok()?;
        let mut dst = Image::new(dw, dh, PixelType::U8);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer.resize(&src, &mut dst, &options).ok()?;
        let small = dst.into_vec();
        self.detect_small(&small, dw, dh).map(|f| scale_box(f, width as f32 / dw as f32, height as f32 / dh as f32))
    }
}

/// A box from detector pixels to source pixels.
fn scale_box(f: FaceBox, sx: f32, sy: f32) -> FaceBox {
    FaceBox { x: f.x * sx, y: f.y * sy, w: f.w * sx, h: f.h * sy, score: f.score }
}

/// BT.601 luma of RGB24 pixels (integer weights 77/150/29, /256).
pub fn rgb_to_grey(rgb: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(rgb.chunks_exact(3).map(|p| ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128) >> 8) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_model_loads_and_blank_frame_has_no_face() {
        let model = bundled_model().unwrap();
        let mut d = FaceDetector::new(model, DetectorSettings::new(320));
        let white = vec![255u8; 640 * 360 * 3];
        assert_eq!(d.detect_rgb(&white, 640, 360), None);
        // Degenerate sizes are no face, not a panic.
        assert_eq!(d.detect_rgb(&[], 0, 0), None);
        assert_eq!(d.detect_rgb(&[0; 3], 1, 1), None);
    }

    #[test]
    fn grey_uses_luma_weights() {
        let mut g = Vec::new();
        rgb_to_grey(&[255, 255, 255, 0, 0, 0, 255, 0, 0], &mut g);
        assert_eq!(g, vec![255, 0, 77]);
    }
}
