//! Renders the frames of one synthetic clip: a static background (white, with the actor's shoulders), a
//! head sprite drawn once per clip (skin shaded darker toward the edge, hair, ears, neck, eye sockets,
//! nose shading and nostrils as blurred dark blobs), and per frame the moving parts (eyes, brows, mouth,
//! nose wrinkle) at the head's current offset.
//!
//! Per frame only the rectangle the head can reach is restored from the background and redrawn; the rest
//! of the 1280x720 frame is never touched after the first one. Everything outside the [`Renderer::window`]
//! (that rectangle plus the shoulders) stays white in every frame, so the encoder is sent only the window
//! ([`Renderer::render_window`]) and ffmpeg pads it back to the full frame with white, which gives exactly
//! the same frames as sending them whole for a third of the bytes through the pipe.

use super::canvas::{smoothstep, Canvas, Rgb, Sprite};
use super::face::{mix, ClipPlan, Look, Pose};

/// Renders one clip frame by frame.
pub struct Renderer {
    plan: ClipPlan,
    background: Canvas,
    frame: Canvas,
    head: Sprite,
    /// Sprite top-left at rest, pixels.
    head_origin: (f32, f32),
    /// The rectangle redrawn per frame: x0, y0, x1, y1.
    region: (usize, usize, usize, usize),
    fps: f32,
    /// The current frame as planar YUV 4:2:0 (BT.601, limited range), kept in step with `frame`.
    yuv: Vec<u8>,
    /// Even-aligned rectangle x0, y0, x1, y1 outside which every frame is white: `region` plus every
    /// non-white pixel of the background.
    window: (usize, usize, usize, usize),
    /// The window of the current frame as planar YUV 4:2:0 of the window's size.
    window_yuv: Vec<u8>,
}

/// Sprite extent in face units, relative to the face centre.
const SPRITE_LEFT: f32 = -1.35;
const SPRITE_RIGHT: f32 = 1.35;
const SPRITE_TOP: f32 = -1.65;
const SPRITE_BOTTOM: f32 = 2.05;

impl Renderer {
    pub fn new(plan: ClipPlan, width: usize, height: usize, fps: f32) -> Self {
        let look = &plan.look;
        let u = look.unit;
        let mut background = Canvas::new(width, height, [255, 255, 255]);
        // Shoulders in a dark shirt, below the neck.
        background.ellipse(look.cx, look.cy + 3.0 * u, 2.0 * u, 1.45 * u, 0.0, look.shirt, 1.0, 0.04 * u);
        let head = head_sprite(look);
        let head_origin = (look.cx + SPRITE_LEFT * u, look.cy + SPRITE_TOP * u);
        let m = plan.max_offset() + 2.0;
        let clamp_x = |v: f32| v.clamp(0.0, width as f32) as usize;
        let clamp_y = |v: f32| v.clamp(0.0, height as f32) as usize;
        // Even bounds, so that the region covers whole 2x2 chroma blocks.
        let even_down = |v: usize| v & !1;
        let even_up = |v: usize, max: usize| ((v + 1) & !1).min(max & !1);
        let region = (
            even_down(clamp_x(head_origin.0 - m)),
            even_down(clamp_y(head_origin.1 - m)),
            even_up(clamp_x(head_origin.0 + head.width as f32 + m + 1.0), width),
            even_up(clamp_y(head_origin.1 + head.height as f32 + m + 1.0), height),
        );
        let frame = background.clone();
        let mut yuv = vec![0u8; width * height + 2 * (width / 2) * (height / 2)];
        rgb_to_yuv420(&frame, &mut yuv, (0, 0, width & !1, height & !1));
        let mut window = region;
        for (y, row) in background.pixels.chunks_exact(width * 3).enumerate() {
            let first = row.chunks_exact(3).position(|p| p != [255, 255, 255]);
            if let (Some(first), Some(last)) = (first, row.chunks_exact(3).rposition(|p| p != [255, 255, 255])) {
                window = (window.0.min(first), window.1.min(y), window.2.max(last + 1), window.3.max(y + 1));
            }
        }
        let mut window = (even_down(window.0), even_down(window.1), even_up(window.2, width), even_up(window.3, height));
        if window.0 >= window.2 || window.1 >= window.3 {
            window = (0, 0, 2, 2); // nothing drawn at all: still a valid (white) picture to pad
        }
        let (ww, wh) = (window.2 - window.0, window.3 - window.1);
        let window_yuv = vec![0u8; ww * wh + 2 * (ww / 2) * (wh / 2)];
        Renderer { plan, background, frame, head, head_origin, region, fps, yuv, window, window_yuv }
    }

    /// The rectangle x0, y0, x1, y1 (even bounds) outside which every frame of the clip is white
    /// (RGB 255, i.e. YUV 235, 128, 128).
    pub fn window(&self) -> (usize, usize, usize, usize) {
        self.window
    }

    pub fn width(&self) -> usize {
        self.frame.width
    }

    pub fn height(&self) -> usize {
        self.frame.height
    }

    /// Renders frame `index` and returns its RGB24 bytes.
    pub fn render(&mut self, index: usize) -> &[u8] {
        let pose = self.plan.pose(index as f32 / self.fps);
        let (x0, y0, x1, y1) = self.region;
        self.frame.restore_region(&self.background, x0, y0, x1, y1);
        let m = self.plan.max_offset();
        let dx = pose.dx.clamp(-m, m).round();
        let dy = pose.dy.clamp(-m, m).round();
        self.frame.blit(&self.head, (self.head_origin.0 + dx) as i64, (self.head_origin.1 + dy) as i64);
        draw_features(&mut self.frame, &self.plan.look, &pose, dx, dy);
        &self.frame.pixels
    }

    /// Renders frame `index` and returns it as planar YUV 4:2:0 (`yuv420p`, BT.601 limited range, the
    /// conversion ffmpeg applies to `rgb24` input by default). Only the redrawn region is converted.
    pub fn render_yuv(&mut self, index: usize) -> &[u8] {
        self.render(index);
        rgb_to_yuv420(&self.frame, &mut self.yuv, self.region);
        &self.yuv
    }

    /// Renders frame `index` and returns the [`window`](Self::window) of its [`render_yuv`](Self::render_yuv)
    /// frame as planar YUV 4:2:0 of the window's size.
    pub fn render_window(&mut self, index: usize) -> &[u8] {
        self.render_yuv(index);
        let (w, h) = (self.frame.width, self.frame.height);
        let (x0, y0, x1, y1) = self.window;
        let (ww, wh) = (x1 - x0, y1 - y0);
        let (luma, chroma) = self.yuv.split_at(w * h);
        let (u_plane, v_plane) = chroma.split_at((w / 2) * (h / 2));
        let (out_luma, out_chroma) = self.window_yuv.split_at_mut(ww * wh);
        let (out_u, out_v) = out_chroma.split_at_mut((ww / 2) * (wh / 2));
        for (y, out) in (y0..y1).zip(out_luma.chunks_exact_mut(ww)) {
            out.copy_from_slice(&luma[y * w + x0..y * w + x1]);
        }
        for (plane, out) in [(u_plane, out_u), (v_plane, out_v)] {
            for (cy, out) in (y0 / 2..y1 / 2).zip(out.chunks_exact_mut(ww / 2)) {
                out.copy_from_slice(&plane[cy * (w / 2) + x0 / 2..cy * (w / 2) + x1 / 2]);
            }
        }
        &self.window_yuv
    }
}

/// Converts the even-aligned rectangle `(x0, y0, x1, y1)` of `rgb` into the planar YUV 4:2:0 buffer `yuv`
/// (BT.601 limited range; chroma is the mean of each 2x2 block). Fixed-point, so it is exact everywhere.
///
/// One pass per pair of rows over slices (no per-pixel index checks); the same arithmetic as
/// [`rgb_to_yuv420_simple`], which a rectangle with an odd bound falls back to.
pub fn rgb_to_yuv420(rgb: &Canvas, yuv: &mut [u8], (x0, y0, x1, y1): (usize, usize, usize, usize)) {
    let (w, h) = (rgb.width, rgb.height);
    let (x1, y1) = (x1.min(w), y1.min(h));
    if [x0, y0, x1, y1, w, h].iter().any(|v| v % 2 == 1) {
        return rgb_to_yuv420_simple(rgb, yuv, (x0, y0, x1, y1));
    }
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let cw = w / 2;
    let (luma, chroma) = yuv.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * (h / 2));
    let luma_of = |p: &[u8]| ((66 * i32::from(p[0]) + 129 * i32::from(p[1]) + 25 * i32::from(p[2]) + 128) >> 8) as u8 + 16;
    for cy in y0 / 2..y1 / 2 {
        let (ya, yb) = (2 * cy, 2 * cy + 1);
        let top = &rgb.pixels[(ya * w + x0) * 3..(ya * w + x1) * 3];
        let bottom = &rgb.pixels[(yb * w + x0) * 3..(yb * w + x1) * 3];
        let (luma_a, luma_b) = luma[ya * w..(yb + 1) * w].split_at_mut(w);
        let (luma_a, luma_b) = (&mut luma_a[x0..x1], &mut luma_b[x0..x1]);
        let u_row = &mut u_plane[cy * cw + x0 / 2..cy * cw + x1 / 2];
        let v_row = &mut v_plane[cy * cw + x0 / 2..cy * cw + x1 / 2];
        let pairs = top.chunks_exact(6).zip(bottom.chunks_exact(6)).zip(luma_a.chunks_exact_mut(2).zip(luma_b.chunks_exact_mut(2)));
        for (((t, b), (la, lb)), (u, v)) in pairs.zip(u_row.iter_mut().zip(v_row.iter_mut())) {
            la[0] = luma_of(&t[0..3]);
            la[1] = luma_of(&t[3..6]);
            lb[0] = luma_of(&b[0..3]);
            lb[1] = luma_of(&b[3..6]);
            let sum = |c: usize| i32::from(t[c]) + i32::from(t[c + 3]) + i32::from(b[c]) + i32::from(b[c + 3]);
            let (r, g, bl) = (sum(0), sum(1), sum(2));
            *u = (((-38 * r - 74 * g + 112 * bl + 512) >> 10) + 128).clamp(0, 255) as u8;
            *v = (((112 * r - 94 * g - 18 * bl + 512) >> 10) + 128).clamp(0, 255) as u8;
        }
    }
}

/// [`rgb_to_yuv420`] pixel by pixel, for any rectangle (the reference the fast path is tested against).
pub fn rgb_to_yuv420_simple(rgb: &Canvas, yuv: &mut [u8], (x0, y0, x1, y1): (usize, usize, usize, usize)) {
    let (w, h) = (rgb.width, rgb.height);
    let (cw, ch) = (w / 2, h / 2);
    let (luma, chroma) = yuv.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    let px = &rgb.pixels;
    for y in y0..y1.min(h) {
        for x in x0..x1.min(w) {
            let i = (y * w + x) * 3;
            let (r, g, b) = (i32::from(px[i]), i32::from(px[i + 1]), i32::from(px[i + 2]));
            luma[y * w + x] = ((66 * r + 129 * g + 25 * b + 128) >> 8) as u8 + 16;
        }
    }
    for cy in y0 / 2..(y1 / 2).min(ch) {
        for cx in x0 / 2..(x1 / 2).min(cw) {
            let (mut r, mut g, mut b) = (0i32, 0i32, 0i32);
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let i = ((2 * cy + dy) * w + 2 * cx + dx) * 3;
                r += i32::from(px[i]);
                g += i32::from(px[i + 1]);
                b += i32::from(px[i + 2]);
            }
            let u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128;
            let v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128;
            u_plane[cy * cw + cx] = u.clamp(0, 255) as u8;
            v_plane[cy * cw + cx] = v.clamp(0, 255) as u8;
        }
    }
}

/// Gaussian blob value at offset `(dx, dy)` with spreads `(sx, sy)`.
#[inline]
fn blob(dx: f32, dy: f32, sx: f32, sy: f32) -> f32 {
    let q = (dx / sx).powi(2) + (dy / sy).powi(2);
    if q > 9.0 {
        0.0
    } else {
        (-0.5 * q).exp()
    }
}

/// `over` compositing of a colour with alpha onto an accumulated (colour, alpha), not premultiplied.
fn over(acc: (Rgb, f32), colour: Rgb, a: f32) -> (Rgb, f32) {
    if a <= 0.0 {
        return acc;
    }
    let (c0, a0) = acc;
    let out_a = a + a0 * (1.0 - a);
    if out_a <= 0.0 {
        return acc;
    }
    let mut c = [0.0; 3];
    for i in 0..3 {
        c[i] = (colour[i] * a + c0[i] * a0 * (1.0 - a)) / out_a;
    }
    (c, out_a)
}

/// The static head: everything that does not change with expression.
fn head_sprite(look: &Look) -> Sprite {
    let u = look.unit;
    let w = ((SPRITE_RIGHT - SPRITE_LEFT) * u).ceil() as usize;
    let h = ((SPRITE_BOTTOM - SPRITE_TOP) * u).ceil() as usize;
    let edge = 2.0 / u; // about two pixels of anti-aliasing, in face units
    let asp = look.aspect;
    Sprite::render(w, h, |px, py| {
        let x = px / u + SPRITE_LEFT;
        let y = py / u + SPRITE_TOP;
        let mut acc: (Rgb, f32) = ([0.0; 3], 0.0);
        // Long hair behind the head, down to the shoulders.
        if look.long_hair {
            let r = (x / 1.2).hypot((y + 0.05) / (asp * 1.08));
            let a = (1.0 - smoothstep(1.0 - edge * 3.0, 1.0 + edge * 3.0, r)) * (1.0 - smoothstep(0.55, 0.95, y));
            acc = over(acc, look.hair, a);
        }
        // Neck, fading into the shirt.
        let neck = (1.0 - smoothstep(0.38, 0.42, x.abs())) * smoothstep(0.6, 0.7, y) * (1.0 - smoothstep(1.6, 2.0, y));
        let neck_shade = 0.72 + 0.1 * smoothstep(1.0, 1.5, y);
        acc = over(acc, scale(look.skin, neck_shade), neck);
        // Ears.
        for side in [-1.0f32, 1.0] {
            let r = ((x - side * 0.98) / 0.13).hypot((y - 0.02) / 0.24);
            let a = 1.0 - smoothstep(1.0 - edge * 8.0, 1.0 + edge * 8.0, r);
            acc = over(acc, scale(look.skin, 0.78 + 0.1 * (1.0 - r).max(0.0)), a);
        }
        // The face: skin darkening toward the edge, with soft dark sockets, nose and nostrils.
        let r = x.hypot(y / asp);
        let face_a = 1.0 - smoothstep(1.0 - edge, 1.0 + edge, r);
        if face_a > 0.0 {
            let mut shade = 1.0 - 0.42 * smoothstep(0.45, 1.02, r);
            let mut dark = 0.0;
            for side in [-1.0f32, 1.0] {
                dark += 0.38 * blob(x - side * look.eye_dx, y - look.eye_y + 0.02, 0.2, 0.12);
                dark += 0.18 * blob(x - side * 0.12, y - 0.2, 0.045, 0.14);
                dark += 0.65 * blob(x - side * 0.085, y - 0.4, 0.035, 0.022);
                // Cheek-bone shadow under the eyes, light cheeks above it.
                dark += 0.12 * blob(x - side * 0.55, y - 0.35, 0.14, 0.2);
            }
            // Under-lip and chin shadows, shadow under the nose tip.
            dark += 0.15 * blob(x, y - (look.mouth_y + 0.2), 0.16, 0.05);
            dark += 0.10 * blob(x, y - 0.46, 0.12, 0.03);
            shade *= 1.0 - dark.min(0.85);
            // A light ridge down the nose and on the forehead.
            shade += 0.06 * blob(x, y - 0.15, 0.05, 0.2) + 0.05 * blob(x, y + 0.55, 0.35, 0.18);
            acc = over(acc, scale(look.skin, shade), face_a);
        }
        // Hair on top, with a hairline that is lower at the temples.
        let rh = x.hypot((y + 0.1) / (asp * 1.04)) / 1.06;
        let hairline = -0.72 + 0.45 * x * x;
        let hair_a = (1.0 - smoothstep(1.0 - edge * 2.0, 1.0 + edge * 2.0, rh)) * (1.0 - smoothstep(hairline - 0.03, hairline + 0.03, y));
        acc = over(acc, look.hair, hair_a);
        acc
    })
}

fn scale(c: Rgb, k: f32) -> Rgb {
    [(c[0] * k).min(255.0), (c[1] * k).min(255.0), (c[2] * k).min(255.0)]
}

/// Eyes, brows, mouth and nose wrinkle for `pose`, the head displaced by `(dx, dy)` pixels.
fn draw_features(c: &mut Canvas, look: &Look, pose: &Pose, dx: f32, dy: f32) {
    let u = look.unit;
    let e = &pose.expression;
    let fx = |x: f32| look.cx + dx + x * u;
    let fy = |y: f32| look.cy + dy + y * u;
    let soft = 0.02 * u;
    // The gains below are about twice a real face's: an expression must stay visible in a
    // 48-pixel crop, where the default pipeline trains (synth v2).
    for side in [-1.0f32, 1.0] {
        // Eye: sclera, iris clipped to the opening, upper lid line.
        let ex = fx(side * look.eye_dx);
        let ey = fy(look.eye_y);
        let half_h = (0.075 * e.eye_open.max(0.0)).max(0.006) * u;
        c.ellipse(ex, ey, 0.15 * u, half_h, 0.0, [232.0, 228.0, 222.0], 0.9, soft * 0.8);
        c.ellipse(ex, ey, 0.065 * u, half_h.min(0.065 * u), 0.0, [45.0, 35.0, 30.0], 0.95, soft * 0.8);
        c.ellipse(ex, ey - half_h, 0.16 * u, 0.02 * u, 0.0, [30.0, 25.0, 25.0], 0.8, soft);
        // Brow: raised or lowered, inner end slanted up (sad, fear) or down (anger).
        let bx = fx(side * (look.eye_dx + 0.01));
        let by = fy(look.eye_y - look.brow_gap - 0.2 * e.brow_raise);
        let angle = side * 0.5 * e.brow_tilt;
        c.ellipse(bx, by, 0.18 * u, look.brow_thick * u, angle, look.hair, 0.9, soft * 1.3);
    }
    if e.nose_wrinkle > 0.01 {
        for side in [-1.0f32, 1.0] {
            c.ellipse(fx(side * 0.09), fy(0.12), 0.07 * u, 0.025 * u, side * 0.6, scale(look.skin, 0.55), 0.5 * e.nose_wrinkle, soft * 1.5);
        }
        c.band(fx(0.0), fy(0.4), 0.17 * u, -0.02 * u, 0.0, 0.01 * u, 0.02 * u, scale(look.skin, 0.6), 0.4 * e.nose_wrinkle, soft);
    }
    // Mouth: lips as a curved band, the open interior dark, upper teeth light.
    let open = e.mouth_open.clamp(0.0, 1.2);
    let half_w = look.mouth_w * (1.0 + e.mouth_width) * u;
    let curve = 0.22 * e.mouth_curve * u;
    let tilt = -0.14 * e.mouth_asym * u;
    let my = fy(look.mouth_y + 0.05 * open) + curve * 0.4;
    c.band(fx(0.0), my, half_w, curve, tilt, 0.02 * u, (0.035 + 0.13 * open) * u, mix(look.lip, [90.0, 40.0, 40.0], 0.2), 0.9, soft);
    if open > 0.02 {
        let inner = 0.12 * open * u;
        c.band(fx(0.0), my, half_w * 0.85, curve * 0.9, tilt, 0.004 * u, inner, [55.0, 22.0, 25.0], 0.95, soft * 0.8);
        if e.teeth > 0.05 {
            let th = (0.035 * u).min(inner * 0.6);
            c.band(
                fx(0.0),
                my - inner * 0.55,
                half_w * 0.7,
                curve * 0.8,
                tilt,
                0.0,
                th,
                [235.0, 232.0, 225.0],
                0.85 * e.teeth.min(1.0),
                soft * 0.6,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ravdess::RavdessName;

    #[test]
    fn the_fast_yuv_conversion_matches_the_per_pixel_one() {
        for stem in ["02-01-07-02-01-01-04", "02-01-05-02-02-01-11"] {
            let plan = ClipPlan::new(0, &RavdessName::parse_stem(stem).unwrap(), 1280, 720, 1.0);
            let mut r = Renderer::new(plan, 1280, 720, 30.0);
            for i in [0, 17, 29] {
                r.render(i);
                let size = r.yuv.len();
                let (mut fast, mut slow) = (vec![7u8; size], vec![7u8; size]);
                for rect in [r.region, (0, 0, 1280, 720), (2, 4, 6, 8), (101, 33, 400, 211)] {
                    rgb_to_yuv420(&r.frame, &mut fast, rect);
                    rgb_to_yuv420_simple(&r.frame, &mut slow, rect);
                    assert!(fast == slow, "{stem} frame {i} rectangle {rect:?}");
                }
            }
        }
    }

    #[test]
    fn the_window_padded_with_white_is_the_whole_frame() {
        for stem in ["02-01-07-02-01-01-04", "02-01-08-02-02-01-11", "02-01-01-01-01-01-01"] {
            let plan = ClipPlan::new(0, &RavdessName::parse_stem(stem).unwrap(), 1280, 720, 1.0);
            let mut r = Renderer::new(plan, 1280, 720, 30.0);
            let (x0, y0, x1, y1) = r.window();
            assert!([x0, y0, x1, y1].iter().all(|v| v % 2 == 0) && x1 <= 1280 && y1 <= 720);
            let (ww, wh) = (x1 - x0, y1 - y0);
            assert!(ww * wh < 1280 * 720 / 2, "{stem}: window {:?} is not much smaller than the frame", r.window());
            for i in [0, 15, 29] {
                let window = r.render_window(i).to_vec();
                let full = r.render_yuv(i).to_vec();
                // Pad as ffmpeg's `pad=...:white` does: Y 235, U = V = 128 outside the window.
                let mut padded = vec![235u8; 1280 * 720];
                padded.resize(1280 * 720 + 2 * 640 * 360, 128);
                let (luma, chroma) = padded.split_at_mut(1280 * 720);
                for y in 0..wh {
                    luma[(y0 + y) * 1280 + x0..(y0 + y) * 1280 + x1].copy_from_slice(&window[y * ww..(y + 1) * ww]);
                }
                let (cw, ch) = (ww / 2, wh / 2);
                for (p, plane) in chroma.chunks_exact_mut(640 * 360).enumerate() {
                    let src = &window[ww * wh + p * cw * ch..];
                    for y in 0..ch {
                        let row = (y0 / 2 + y) * 640 + x0 / 2;
                        plane[row..row + cw].copy_from_slice(&src[y * cw..(y + 1) * cw]);
                    }
                }
                assert!(padded == full, "{stem} frame {i}");
            }
        }
    }
}
