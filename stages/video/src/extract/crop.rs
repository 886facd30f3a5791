//! From per-frame face boxes to one square crop per clip, and the crop + resize itself.
//!
//! Rules (documented in `CACHE-FORMAT.md`):
//! - **Smoothing**: the clip's face box is the per-coordinate median, over the frames where a
//!   face was found, of the box centre (x, y), width and height (median of an even count =
//!   mean of the two middle values). One box per clip: the crop does not jitter, and a
//!   single false detection cannot move it.
//! - **Square**: centred on the smoothed centre, side = `max(w, h) * (1 + 2 * margin)`
//!   (`margin` is the fraction of the box size added on each side).
//! - **Fallback** (no face in any sampled frame): the centred square of side
//!   `min(width, height)`. Flagged `fallback: true` in the index; never another clip's box.
//! - **Borders**: the square is never shifted; parts outside the frame repeat the nearest
//!   edge pixel (edge replication; on RAVDESS's white background that is white).
//! - **Resize**: to `size x size` with `fast_image_resize`, bilinear convolution (which
//!   filters over the whole source footprint, i.e. antialiased when shrinking).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, ImageBufferError, PixelType, ResizeAlg, ResizeError, ResizeOptions, Resizer};

use super::face::FaceBox;

/// The square region of the source frame that becomes the crop (source pixels, integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CropSquare {
    pub x: i64,
    pub y: i64,
    pub side: u32,
}

impl CropSquare {
    /// A square of side `side` (rounded, at least 1) centred on `(cx, cy)`.
    pub fn centred(cx: f32, cy: f32, side: f32) -> Self {
        let side = side.round().max(1.0);
        Self { x: (cx - side / 2.0).round() as i64, y: (cy - side / 2.0).round() as i64, side: side as u32 }
    }

    pub fn centre(&self) -> (f32, f32) {
        (self.x as f32 + self.side as f32 / 2.0, self.y as f32 + self.side as f32 / 2.0)
    }

    fn inside(&self, width: u32, height: u32) -> bool {
        self.x >= 0
            && self.y >= 0
            && self.x + i64::from(self.side) <= i64::from(width)
            && self.y + i64::from(self.side) <= i64::from(height)
    }
}

/// The clip's smoothed face: medians over the frames with a face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedFace {
    /// Median box; its `score` is the median of the per-frame best scores.
    pub face: FaceBox,
    /// Frames (of the T sampled) where a face was found.
    pub found_frames: u32,
}

/// Median smoothing of the per-frame best faces; `None` when no frame has a face.
pub fn smooth(per_frame: &[Option<FaceBox>]) -> Option<SmoothedFace> {
    let found: Vec<&FaceBox> = per_frame.iter().flatten().collect();
    if found.is_empty() {
        return None;
    }
    let cx = median(found.iter().map(|f| f.centre().0));
    let cy = median(found.iter().map(|f| f.centre().1));
    let w = median(found.iter().map(|f| f.w));
    let h = median(found.iter().map(|f| f.h));
    let score = median(found.iter().map(|f| f.score));
    Some(SmoothedFace { face: FaceBox { x: cx - w / 2.0, y: cy - h / 2.0, w, h, score }, found_frames: found.len() as u32 })
}

fn median(values: impl Iterator<Item = f32>) -> f32 {
    let mut v: Vec<f32> = values.collect();
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n == 0 {
        return f32::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The crop square around a (smoothed) face box.
pub fn face_square(face: &FaceBox, margin: f32) -> CropSquare {
    let (cx, cy) = face.centre();
    CropSquare::centred(cx, cy, face.w.max(face.h) * (1.0 + 2.0 * margin))
}

/// The fallback crop: the centred square of the frame's shorter side.
pub fn fallback_square(width: u32, height: u32) -> CropSquare {
    let side = width.min(height).max(1);
    CropSquare { x: i64::from((width - side.min(width)) / 2), y: i64::from((height - side.min(height)) / 2), side }
}

/// Crops squares out of RGB24 frames and resizes them; keeps its buffers between calls.
pub struct Cropper {
    resizer: Resizer,
    padded: Vec<u8>,
}

/// Why the resizer refused a crop (its own messages).
#[derive(Debug, thiserror::Error)]
pub enum CropError {
    #[error(transparent)]
    Buffer(#[from] ImageBufferError),
    #[error(transparent)]
    Resize(#[from] ResizeError),
}

impl Default for Cropper {
    fn default() -> Self {
        Self::new()
    }
}

impl Cropper {
    pub fn new() -> Self {
        Self { resizer: Resizer::new(), padded: Vec::new() }
    }

    /// Writes the `size x size` RGB24 crop of `square` from `rgb` (`width x height`) into
    /// `out` (exactly `size * size * 3` bytes).
    pub fn crop_resize(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        square: CropSquare,
        size: u32,
        out: &mut [u8],
    ) -> Result<(), CropError> {
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let mut dst = Image::from_slice_u8(size, size, out, PixelType::U8x3)?;
        if square.inside(width, height) {
            let src = ImageRef::new(width, height, rgb, PixelType::U8x3)?;
            let options = options.crop(square.x as f64, square.y as f64, f64::from(square.side), f64::from(square.side));
            self.resizer.resize(&src, &mut dst, &options)?;
        } else {
            edge_replicated(rgb, width, height, square, &mut self.padded);
            let src = ImageRef::new(square.side, square.side, &self.padded, PixelType::U8x3)?;
            self.resizer.resize(&src, &mut dst, &options)?;
        }
        Ok(())
    }
}

/// Copies `square` out of the frame into `out`, repeating edge pixels outside the frame.
fn edge_replicated(rgb: &[u8], width: u32, height: u32, square: CropSquare, out: &mut Vec<u8>) {
    let side = i64::from(square.side);
    let (w, h) = (i64::from(width), i64::from(height));
    // Destination columns [0, left) repeat source column 0, [left, right) copy source columns
    // x + c in one run, [right, side) repeat column w - 1.
    let left = (-square.x).clamp(0, side);
    let right = (w - square.x).clamp(left, side);
    out.clear();
    out.reserve((side * side * 3) as usize);
    for r in 0..side {
        let sy = (square.y + r).clamp(0, h - 1) as usize;
        let row = &rgb[sy * width as usize * 3..(sy + 1) * width as usize * 3];
        for _ in 0..left {
            out.extend_from_slice(&row[..3]);
        }
        if right > left {
            let start = (square.x + left) as usize * 3;
            out.extend_from_slice(&row[start..start + (right - left) as usize * 3]);
        }
        for _ in right..side {
            out.extend_from_slice(&row[row.len() - 3..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(cx: f32, cy: f32, s: f32, score: f32) -> Option<FaceBox> {
        Some(FaceBox { x: cx - s / 2.0, y: cy - s / 2.0, w: s, h: s, score })
    }

    #[test]
    fn median_ignores_missing_frames_and_outliers() {
        let frames = vec![face(100.0, 100.0, 50.0, 5.0), None, face(102.0, 98.0, 52.0, 6.0), face(900.0, 10.0, 10.0, 2.5)];
        let s = smooth(&frames).unwrap();
        assert_eq!(s.found_frames, 3);
        assert_eq!(s.face.centre(), (102.0, 98.0));
        assert_eq!(s.face.w, 50.0);
        assert_eq!(s.face.score, 5.0);
        assert_eq!(smooth(&[None, None]), None);
    }

    #[test]
    fn square_adds_margin_on_each_side() {
        let f = face(200.0, 150.0, 100.0, 1.0).unwrap();
        assert_eq!(face_square(&f, 0.25), CropSquare { x: 125, y: 75, side: 150 });
        assert_eq!(fallback_square(1280, 720), CropSquare { x: 280, y: 0, side: 720 });
        assert_eq!(fallback_square(90, 160), CropSquare { x: 0, y: 35, side: 90 });
    }

    #[test]
    fn outside_parts_repeat_edge_pixels() {
        // 2x2 frame: red green / blue white.
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let mut out = Vec::new();
        edge_replicated(&rgb, 2, 2, CropSquare { x: -1, y: -1, side: 4 }, &mut out);
        let px = |r: usize, c: usize| &out[(r * 4 + c) * 3..(r * 4 + c) * 3 + 3];
        assert_eq!(px(0, 0), &[255, 0, 0]);
        assert_eq!(px(1, 1), &[255, 0, 0]);
        assert_eq!(px(1, 2), &[0, 255, 0]);
        assert_eq!(px(0, 3), &[0, 255, 0]);
        assert_eq!(px(3, 0), &[0, 0, 255]);
        assert_eq!(px(3, 3), &[255, 255, 255]);
        assert_eq!(out.len(), 4 * 4 * 3);
    }

    #[test]
    fn inside_and_padded_crops_agree_on_a_flat_frame() {
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h).flat_map(|_| [10u8, 200, 30]).collect();
        let mut c = Cropper::new();
        let mut a = vec![0u8; 16 * 16 * 3];
        let mut b = vec![0u8; 16 * 16 * 3];
        c.crop_resize(&rgb, w, h, CropSquare { x: 4, y: 4, side: 32 }, 16, &mut a).unwrap();
        c.crop_resize(&rgb, w, h, CropSquare { x: -20, y: 30, side: 40 }, 16, &mut b).unwrap();
        assert!(a.chunks(3).all(|p| p == [10, 200, 30]));
        assert_eq!(a, b);
    }
}
