//! Renders the frames of one synthetic clip: a static background (white, with the actor's shoulders), a
//! head sprite drawn once per clip (skin shaded darker toward the edge, hair, ears, neck, eye sockets,
//! nose shading and nostrils as blurred dark blobs), and per frame the moving parts (eyes, brows, mouth,
//! nose wrinkle) at the head's current offset.
//!
//! Per frame only the rectangle the head can reach is restored from the background and redrawn; the rest
//! of the 1280x720 frame is never touched after the first one.

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
        Renderer { plan, background, frame, head, head_origin, region, fps, yuv }
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
}

/// Converts the even-aligned rectangle `(x0, y0, x1, y1)` of `rgb` into the planar YUV 4:2:0 buffer `yuv`
/// (BT.601 limited range; chroma is the mean of each 2x2 block). Fixed-point, so it is exact everywhere.
pub fn rgb_to_yuv420(rgb: &Canvas, yuv: &mut [u8], (x0, y0, x1, y1): (usize, usize, usize, usize)) {
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
            c.band(fx(0.0), my - inner * 0.55, half_w * 0.7, curve * 0.8, tilt, 0.0, th, [235.0, 232.0, 225.0], 0.85 * e.teeth.min(1.0), soft * 0.6);
        }
    }
}
