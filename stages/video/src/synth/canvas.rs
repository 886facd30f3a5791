//! The drawing primitives of the synthetic face renderer: an RGB24 frame plus soft (blurred-edged) shapes.
//!
//! The face detector the pipeline uses (SeetaFace through rustface) is trained on photographs: it finds
//! faces by their pattern of soft dark regions (eye sockets, brows, nostrils, mouth) on lighter skin, not by
//! outlines. Hard-edged flat cartoon shapes are not detected, so every shape here has a smooth falloff over
//! `soft` pixels. Each primitive touches only its own bounding box, which keeps a frame cheap: the
//! background is copied once per frame and only the face region is redrawn.

/// An RGB24 image, rows top to bottom.
#[derive(Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// An RGB colour in 0..=255 floats.
pub type Rgb = [f32; 3];

/// An RGBA image drawn once (the static part of a head) and then blended onto frames at an offset.
pub struct Sprite {
    pub width: usize,
    pub height: usize,
    /// RGB, premultiplied by alpha.
    pub rgb: Vec<[f32; 3]>,
    pub alpha: Vec<f32>,
    /// Per row, the columns `first..end` that hold every pixel with non-zero alpha (`0..0` when none).
    spans: Vec<(usize, usize)>,
    /// RGB24 of every pixel as [`Canvas::blit`] writes it where the alpha is 1 (whatever lies below).
    solid: Vec<u8>,
}

/// Smooth 0..1 step between `e0` and `e1`.
#[inline]
pub fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Canvas {
    pub fn new(width: usize, height: usize, colour: [u8; 3]) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&colour);
        }
        Self { width, height, pixels }
    }

    /// Copies the rows `y0..y1`, columns `x0..x1` of `from` (same size) into `self`.
    pub fn restore_region(&mut self, from: &Canvas, x0: usize, y0: usize, x1: usize, y1: usize) {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for y in y0..y1 {
            let a = (y * self.width + x0) * 3;
            let b = (y * self.width + x1) * 3;
            self.pixels[a..b].copy_from_slice(&from.pixels[a..b]);
        }
    }

    /// Clamped pixel-space bounding box of a shape around `(cx, cy)` with half extents `(rx, ry)`.
    fn bbox(&self, cx: f32, cy: f32, rx: f32, ry: f32) -> Option<(usize, usize, usize, usize)> {
        let x0 = (cx - rx).floor().max(0.0) as usize;
        let y0 = (cy - ry).floor().max(0.0) as usize;
        let x1 = ((cx + rx).ceil() + 1.0).min(self.width as f32);
        let y1 = ((cy + ry).ceil() + 1.0).min(self.height as f32);
        if x1 <= 0.0 || y1 <= 0.0 || x0 as f32 >= x1 || y0 as f32 >= y1 {
            return None;
        }
        Some((x0, y0, x1 as usize, y1 as usize))
    }

    #[inline]
    fn blend(&mut self, x: usize, y: usize, colour: Rgb, a: f32) {
        let i = (y * self.width + x) * 3;
        for (p, col) in self.pixels[i..i + 3].iter_mut().zip(colour) {
            let old = f32::from(*p);
            *p = (old + (col - old) * a + 0.5) as u8;
        }
    }

    /// A soft ellipse centred at `(cx, cy)` with semi-axes `(rx, ry)` rotated by `angle` radians, painted
    /// with `colour` at `opacity`; the edge fades over about `soft` pixels (Gaussian-like profile).
    #[allow(clippy::too_many_arguments)]
    pub fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, angle: f32, colour: Rgb, opacity: f32, soft: f32) {
        if rx <= 0.0 || ry <= 0.0 || opacity <= 0.0 {
            return;
        }
        let reach = rx.max(ry) + soft;
        let Some((x0, y0, x1, y1)) = self.bbox(cx, cy, reach, reach) else { return };
        let (s, c) = angle.sin_cos();
        // Signed distance to the ellipse to first order: (r - 1) / |grad r| for the normalised radius r.
        for y in y0..y1 {
            let dy = y as f32 + 0.5 - cy;
            for x in x0..x1 {
                let dx = x as f32 + 0.5 - cx;
                let u = dx * c + dy * s;
                let v = -dx * s + dy * c;
                let (qu, qv) = (u / (rx * rx), v / (ry * ry));
                let r = ((u / rx).powi(2) + (v / ry).powi(2)).sqrt();
                let grad = (qu * qu + qv * qv).sqrt() / r.max(1e-6);
                let dist = if r > 1e-6 { (r - 1.0) / grad } else { -rx.min(ry) };
                let a = opacity * (1.0 - smoothstep(-soft, soft, dist));
                if a > 0.002 {
                    self.blend(x, y, colour, a);
                }
            }
        }
    }

    /// A soft band along a parabola, used for mouths: for `t` in -1..1
    /// across `half_width`, the centre line is `cy - curve * t^2 + tilt * t` and the half thickness is
    /// `thick_edge + thick_mid * sqrt(1 - t^2)`. The ends fade out over the last `soft` pixels.
    #[allow(clippy::too_many_arguments)]
    pub fn band(
        &mut self,
        cx: f32,
        cy: f32,
        half_width: f32,
        curve: f32,
        tilt: f32,
        thick_edge: f32,
        thick_mid: f32,
        colour: Rgb,
        opacity: f32,
        soft: f32,
    ) {
        if half_width <= 1.0 || opacity <= 0.0 {
            return;
        }
        let reach_y = curve.abs() + tilt.abs() + thick_edge + thick_mid + soft;
        let Some((x0, y0, x1, y1)) = self.bbox(cx, cy, half_width + soft, reach_y) else { return };
        for x in x0..x1 {
            let dx = x as f32 + 0.5 - cx;
            let t = (dx / half_width).clamp(-1.0, 1.0);
            let end = 1.0 - smoothstep(half_width - soft, half_width + soft, dx.abs());
            if end <= 0.0 {
                continue;
            }
            let centre = cy - curve * t * t + tilt * t;
            let half = thick_edge + thick_mid * (1.0 - t * t).max(0.0).sqrt();
            for y in y0..y1 {
                let dist = (y as f32 + 0.5 - centre).abs() - half;
                let a = opacity * end * (1.0 - smoothstep(-soft, soft, dist));
                if a > 0.002 {
                    self.blend(x, y, colour, a);
                }
            }
        }
    }

    /// Blends `sprite` with its top-left corner at `(ox, oy)` (may be partly outside).
    ///
    /// Per row only the sprite's non-transparent span is visited, and opaque pixels are copied from the
    /// sprite's precomputed RGB24 (the blend below gives exactly those bytes at alpha 1).
    pub fn blit(&mut self, sprite: &Sprite, ox: i64, oy: i64) {
        let w = self.width as i64;
        for sy in 0..sprite.height {
            let y = oy + sy as i64;
            if y < 0 || y >= self.height as i64 {
                continue;
            }
            let (first, end) = sprite.spans[sy];
            let lo = (first as i64).max(-ox);
            let hi = (end as i64).min(w - ox);
            if lo >= hi {
                continue;
            }
            let (lo, hi) = (lo as usize, hi as usize);
            let row = sy * sprite.width;
            let start = (y * w + ox + lo as i64) as usize * 3;
            let dst = &mut self.pixels[start..start + (hi - lo) * 3];
            let alpha = &sprite.alpha[row + lo..row + hi];
            let src = &sprite.rgb[row + lo..row + hi];
            let solid = &sprite.solid[(row + lo) * 3..(row + hi) * 3];
            for (((p, &a), s), o) in dst.chunks_exact_mut(3).zip(alpha).zip(src).zip(solid.chunks_exact(3)) {
                if a >= 1.0 {
                    p.copy_from_slice(o);
                } else if a > 0.0 {
                    for (p, s) in p.iter_mut().zip(s) {
                        let old = f32::from(*p);
                        *p = (s + old * (1.0 - a) + 0.5).clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
}

impl Sprite {
    /// Renders a sprite of `width x height` by calling `shade(x, y) -> (rgb, alpha)` per pixel centre.
    pub fn render(width: usize, height: usize, mut shade: impl FnMut(f32, f32) -> (Rgb, f32)) -> Self {
        let mut rgb = Vec::with_capacity(width * height);
        let mut alpha = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (c, a) = shade(x as f32 + 0.5, y as f32 + 0.5);
                let a = a.clamp(0.0, 1.0);
                rgb.push([c[0] * a, c[1] * a, c[2] * a]);
                alpha.push(a);
            }
        }
        let spans = alpha
            .chunks_exact(width.max(1))
            .map(|row| match row.iter().position(|&a| a > 0.0) {
                Some(first) => (first, row.iter().rposition(|&a| a > 0.0).map_or(first, |l| l + 1)),
                None => (0, 0),
            })
            .collect::<Vec<_>>();
        let spans = if width == 0 { vec![(0, 0); height] } else { spans };
        // At alpha 1 the blend is `s + old * 0.0 + 0.5` = `s + 0.5`, whatever `old` is.
        let solid = rgb.iter().flat_map(|c| c.map(|v| (v + 0.5).clamp(0.0, 255.0) as u8)).collect();
        Self { width, height, rgb, alpha, spans, solid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipse_darkens_its_centre_and_leaves_far_pixels_alone() {
        let mut c = Canvas::new(64, 64, [255, 255, 255]);
        c.ellipse(32.0, 32.0, 10.0, 5.0, 0.3, [0.0, 0.0, 0.0], 1.0, 2.0);
        let at = |x: usize, y: usize| c.pixels[(y * 64 + x) * 3];
        assert_eq!(at(32, 32), 0);
        assert_eq!(at(2, 2), 255);
        assert!(at(32, 37) > 0 && at(32, 37) < 255, "soft edge, got {}", at(32, 37));
    }

    #[test]
    fn shapes_partly_outside_the_canvas_are_clipped() {
        let mut c = Canvas::new(16, 16, [255, 255, 255]);
        c.ellipse(-3.0, 20.0, 8.0, 8.0, 0.0, [0.0; 3], 1.0, 1.0);
        c.band(15.0, 0.0, 10.0, 3.0, 1.0, 2.0, 2.0, [0.0; 3], 1.0, 1.0);
        c.ellipse(-100.0, -100.0, 8.0, 8.0, 0.0, [0.0; 3], 1.0, 1.0);
        let sprite = Sprite::render(8, 8, |_, _| ([0.0; 3], 1.0));
        c.blit(&sprite, -4, 12);
        assert_eq!(c.pixels[(15 * 16) * 3], 0);
    }

    /// The blend of every sprite pixel, as `blit` did before it skipped transparent spans and copied opaque
    /// pixels: the fast path must give the same bytes.
    fn blit_every_pixel(c: &mut Canvas, sprite: &Sprite, ox: i64, oy: i64) {
        for sy in 0..sprite.height {
            for sx in 0..sprite.width {
                let (x, y) = (ox + sx as i64, oy + sy as i64);
                let a = sprite.alpha[sy * sprite.width + sx];
                if x < 0 || y < 0 || x >= c.width as i64 || y >= c.height as i64 || a <= 0.0 {
                    continue;
                }
                let i = (y as usize * c.width + x as usize) * 3;
                for (p, s) in c.pixels[i..i + 3].iter_mut().zip(sprite.rgb[sy * sprite.width + sx]) {
                    *p = (s + f32::from(*p) * (1.0 - a) + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    #[test]
    fn blit_gives_the_same_bytes_as_blending_every_pixel() {
        // A soft disc with a transparent border, opaque middle and a gradient background to blend over.
        let sprite = Sprite::render(40, 30, |x, y| {
            let r = ((x - 20.0) / 14.0).hypot((y - 15.0) / 11.0);
            ([200.0 - 3.0 * x, 90.0 + y, 40.0], 1.0 - smoothstep(0.8, 1.0, r))
        });
        let mut bg = Canvas::new(64, 48, [255, 255, 255]);
        bg.ellipse(30.0, 30.0, 25.0, 12.0, 0.2, [20.0, 60.0, 90.0], 0.8, 4.0);
        for (ox, oy) in [(10, 9), (-15, -7), (40, 30), (0, 0), (-39, 20), (63, 47), (-50, 0), (70, 10)] {
            let (mut fast, mut slow) = (bg.clone(), bg.clone());
            fast.blit(&sprite, ox, oy);
            blit_every_pixel(&mut slow, &sprite, ox, oy);
            assert!(fast.pixels == slow.pixels, "offset ({ox}, {oy})");
        }
    }
}
