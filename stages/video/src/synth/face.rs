//! What a synthetic face looks like: per-actor appearance ([`Look`]), per-emotion expression targets
//! ([`Expression`]) and the time course of one clip ([`ClipPlan`]).
//!
//! All geometry is in face units `u` (half the face width in pixels) relative to the face centre, so the
//! same face renders at any frame size. An expression is a set of continuous controls (mouth opening,
//! width, curvature and asymmetry; brow height and slant; eye openness; nose wrinkle; teeth); each emotion
//! moves them away from neutral in its own direction, intensity (normal 0.75, strong 1.0) scales the move,
//! and every clip draws its own jitter, onset time, speech rhythm, blinks and head motion from a generator
//! seeded by the dataset seed and the clip's name.

use super::canvas::Rgb;
use super::rng::Rng;
use crate::ravdess::{RavdessName, VocalChannel};

/// Per-actor appearance: identical in every clip of the actor.
#[derive(Debug, Clone)]
pub struct Look {
    pub skin: Rgb,
    pub hair: Rgb,
    pub lip: Rgb,
    pub shirt: Rgb,
    /// Half the face width in pixels.
    pub unit: f32,
    /// Face centre at rest, pixels.
    pub cx: f32,
    pub cy: f32,
    /// Face height / width.
    pub aspect: f32,
    pub eye_dx: f32,
    pub eye_y: f32,
    pub brow_gap: f32,
    pub brow_thick: f32,
    pub mouth_y: f32,
    pub mouth_w: f32,
    /// Hair down the sides of the head.
    pub long_hair: bool,
}

impl Look {
    /// The look of actor `actor` for a `width x height` frame.
    pub fn for_actor(seed: u64, actor: u8, width: usize, height: usize) -> Self {
        let mut r = Rng::from_label(seed, &format!("actor {actor:02}"));
        let light: Rgb = [236.0, 198.0, 172.0];
        let dark: Rgb = [150.0, 102.0, 74.0];
        let t = r.unit();
        let skin = mix(light, dark, t);
        let hairs: [Rgb; 4] = [[35.0, 28.0, 24.0], [70.0, 46.0, 30.0], [110.0, 75.0, 45.0], [52.0, 40.0, 34.0]];
        let hair = hairs[(r.next_u64() % hairs.len() as u64) as usize];
        let lip = mix(skin, [150.0, 60.0, 60.0], 0.45);
        let g = r.range(25.0, 70.0);
        let shirt = [g, g, g + r.range(0.0, 15.0)];
        let scale = height as f32 / 720.0;
        let unit = r.range(100.0, 132.0) * scale;
        let cx = width as f32 * (0.5 + r.range(-0.1, 0.1));
        let cy = height as f32 * r.range(0.43, 0.51);
        Look {
            skin,
            hair,
            lip,
            shirt,
            unit,
            cx,
            cy,
            aspect: r.range(1.24, 1.36),
            eye_dx: r.range(0.35, 0.41),
            eye_y: r.range(-0.10, -0.04),
            brow_gap: r.range(0.19, 0.24),
            brow_thick: r.range(0.035, 0.05),
            mouth_y: r.range(0.55, 0.62),
            mouth_w: r.range(0.26, 0.32),
            long_hair: actor.is_multiple_of(2),
        }
    }
}

/// Linear mix of two colours.
pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// The face controls at one instant. Neutral is all zero except `eye_open = 1`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Expression {
    /// 0 closed .. 1 wide open.
    pub mouth_open: f32,
    /// Relative change of mouth width (-0.3 narrow .. +0.35 wide).
    pub mouth_width: f32,
    /// Corners up (smile, > 0) or down (frown, < 0), about -1..1.
    pub mouth_curve: f32,
    /// One corner raised (disgust), about 0..1.
    pub mouth_asym: f32,
    /// Brows up (> 0) or down (< 0), about -1..1.
    pub brow_raise: f32,
    /// Inner brow ends up (> 0: sad, fear) or down (< 0: anger).
    pub brow_tilt: f32,
    /// Eye openness, 1 neutral, 0 closed, 1.6 wide.
    pub eye_open: f32,
    /// Wrinkled nose (disgust), 0..1.
    pub nose_wrinkle: f32,
    /// Visible upper teeth, 0..1.
    pub teeth: f32,
}

impl Expression {
    pub fn neutral() -> Self {
        Expression { eye_open: 1.0, ..Default::default() }
    }

    /// The move away from neutral of emotion `emotion` (1..=8) at full (strong) intensity.
    pub fn delta(emotion: u8) -> Self {
        let z = Expression::default();
        match emotion {
            2 => Expression { mouth_curve: 0.5, mouth_width: 0.08, eye_open: -0.45, brow_raise: -0.1, ..z },
            3 => Expression { mouth_curve: 1.0, mouth_width: 0.32, mouth_open: 0.3, teeth: 1.0, eye_open: -0.3, brow_raise: 0.15, ..z },
            4 => Expression { mouth_curve: -0.85, mouth_width: -0.1, brow_tilt: 0.9, brow_raise: 0.1, eye_open: -0.35, ..z },
            5 => Expression {
                brow_raise: -0.75,
                brow_tilt: -1.0,
                eye_open: -0.3,
                mouth_width: -0.2,
                mouth_curve: -0.35,
                mouth_open: 0.06,
                teeth: 0.6,
                ..z
            },
            6 => Expression {
                brow_raise: 0.6,
                brow_tilt: 0.8,
                eye_open: 0.45,
                mouth_open: 0.25,
                mouth_width: 0.35,
                mouth_curve: -0.45,
                teeth: 0.8,
                ..z
            },
            7 => Expression {
                mouth_asym: 1.0,
                mouth_curve: -0.3,
                nose_wrinkle: 1.0,
                brow_raise: -0.35,
                brow_tilt: -0.3,
                eye_open: -0.35,
                mouth_width: -0.05,
                ..z
            },
            8 => Expression { brow_raise: 1.0, eye_open: 0.6, mouth_open: 0.85, mouth_width: -0.25, ..z },
            _ => z,
        }
    }

    fn plus_scaled(self, d: Expression, k: f32) -> Self {
        Expression {
            mouth_open: self.mouth_open + d.mouth_open * k,
            mouth_width: self.mouth_width + d.mouth_width * k,
            mouth_curve: self.mouth_curve + d.mouth_curve * k,
            mouth_asym: self.mouth_asym + d.mouth_asym * k,
            brow_raise: self.brow_raise + d.brow_raise * k,
            brow_tilt: self.brow_tilt + d.brow_tilt * k,
            eye_open: self.eye_open + d.eye_open * k,
            nose_wrinkle: self.nose_wrinkle + d.nose_wrinkle * k,
            teeth: self.teeth + d.teeth * k,
        }
    }

    fn jittered(self, r: &mut Rng, spread: f32) -> Self {
        Expression {
            mouth_open: self.mouth_open * r.jitter(spread),
            mouth_width: self.mouth_width * r.jitter(spread),
            mouth_curve: self.mouth_curve * r.jitter(spread),
            mouth_asym: self.mouth_asym * r.jitter(spread),
            brow_raise: self.brow_raise * r.jitter(spread),
            brow_tilt: self.brow_tilt * r.jitter(spread),
            eye_open: self.eye_open * r.jitter(spread),
            nose_wrinkle: self.nose_wrinkle * r.jitter(spread),
            teeth: self.teeth,
        }
    }
}

/// Strength of the expression for an intensity code: 1 normal, 2 strong.
pub fn intensity_scale(intensity: u8) -> f32 {
    if intensity >= 2 {
        1.0
    } else {
        0.75
    }
}

/// Everything that varies over one clip, drawn once from the clip's generator.
#[derive(Debug, Clone)]
pub struct ClipPlan {
    pub look: Look,
    emotion: u8,
    /// Expression delta already scaled by intensity and jittered.
    delta: Expression,
    /// Head-motion strength (intensity and jitter).
    motion: f32,
    onset: f32,
    rise: f32,
    talk_start: f32,
    talk_end: f32,
    talk_freq: f32,
    talk_amp: f32,
    phase: f32,
    side: f32,
    blinks: Vec<f32>,
}

/// The face at one frame: expression plus head offset in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Pose {
    pub expression: Expression,
    pub dx: f32,
    pub dy: f32,
}

impl ClipPlan {
    /// The plan of clip `name` (its modality is ignored: `01` and `02` show the same picture).
    pub fn new(seed: u64, name: &RavdessName, width: usize, height: usize, duration_s: f32) -> Self {
        let look = Look::for_actor(seed, name.actor, width, height);
        let mut r = Rng::from_label(seed, &name.clip_id());
        let k = intensity_scale(name.intensity) * r.jitter(0.12);
        let delta = Expression::delta(name.emotion).jittered(&mut r, 0.15);
        let delta = Expression::default().plus_scaled(delta, k);
        let song = name.vocal_channel == VocalChannel::Song;
        let d = duration_s.max(0.1);
        let onset = r.range(0.05, 0.25) * d;
        let rise = r.range(0.15, 0.3) * d;
        let talk_start = r.range(0.15, 0.3) * d;
        let talk_end = talk_start + r.range(0.5, 0.65) * d;
        let (talk_freq, talk_amp) = if song { (r.range(1.0, 1.6), r.range(0.35, 0.5)) } else { (r.range(3.5, 5.0), r.range(0.15, 0.25)) };
        let n_blinks = 1 + (r.next_u64() % 2) as usize;
        let blinks = (0..n_blinks).map(|_| r.range(0.1, 0.95) * d).collect();
        ClipPlan {
            look,
            emotion: name.emotion,
            delta,
            motion: k * r.jitter(0.2),
            onset,
            rise,
            talk_start,
            talk_end,
            talk_freq,
            talk_amp,
            phase: r.range(0.0, std::f32::consts::TAU),
            side: r.sign(),
            blinks,
        }
    }

    /// The pose at time `t` seconds.
    pub fn pose(&self, t: f32) -> Pose {
        use std::f32::consts::TAU;
        let env = smooth(self.onset, self.onset + self.rise, t);
        let fast = smooth(self.onset, self.onset + 0.35 * self.rise, t);
        let mut e = Expression::neutral().plus_scaled(self.delta, if self.emotion == 8 { fast } else { env });
        // Speech or song: the jaw opens and closes inside the talking window.
        let window = smooth(self.talk_start, self.talk_start + 0.15, t) * (1.0 - smooth(self.talk_end - 0.15, self.talk_end, t));
        let syllable = 0.5 + 0.5 * (TAU * self.talk_freq * t + self.phase).sin();
        let talk = self.talk_amp * window * syllable * syllable;
        e.mouth_open += talk;
        for &b in &self.blinks {
            let x = (t - b).abs() / 0.08;
            if x < 1.0 {
                e.eye_open *= 0.1 + 0.9 * x * x;
            }
        }
        let s = |f: f32| (TAU * f * t + self.phase).sin();
        let m = self.motion;
        let (dx, dy) = match self.emotion {
            2 => (0.04 * m * s(0.35), 0.015 * m * s(0.7)),
            3 => (0.02 * m * s(0.8), -0.05 * m * env * s(1.6).abs()),
            4 => (0.015 * s(0.25), 0.10 * m * env),
            5 => (0.05 * m * env * s(2.6), 0.03 * m * env),
            6 => (0.012 * m * env * s(7.3), -0.05 * m * env + 0.01 * m * s(6.1)),
            7 => (0.09 * m * env * self.side, -0.02 * m * env),
            8 => (0.0, -0.09 * m * fast),
            _ => (0.01 * s(0.2), 0.0),
        };
        let u = self.look.unit;
        Pose { expression: e, dx: dx * u, dy: (dy + 0.008 * talk) * u }
    }

    /// The largest head offset the plan can produce, in pixels (bounds the region redrawn per frame).
    pub fn max_offset(&self) -> f32 {
        0.16 * self.look.unit * self.motion.max(1.0)
    }
}

fn smooth(e0: f32, e1: f32, x: f32) -> f32 {
    super::canvas::smoothstep(e0, e1, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_emotion_but_neutral_moves_the_face_and_strong_moves_it_more() {
        let n = |s: &str| RavdessName::parse_stem(s).unwrap();
        let neutral = ClipPlan::new(1, &n("02-01-01-01-01-01-01"), 1280, 720, 3.0).pose(2.9).expression;
        assert!((neutral.eye_open - 1.0).abs() < 1e-6 || neutral.eye_open < 1.0);
        for emotion in 2..=8u8 {
            let d = Expression::delta(emotion);
            assert_ne!(d, Expression::default(), "emotion {emotion}");
            let normal = ClipPlan::new(1, &n(&format!("02-01-{emotion:02}-01-01-01-01")), 1280, 720, 3.0);
            let strong = ClipPlan::new(1, &n(&format!("02-01-{emotion:02}-02-01-01-01")), 1280, 720, 3.0);
            let size = |p: &ClipPlan| {
                let e = p.delta;
                e.mouth_curve.abs() + e.brow_raise.abs() + e.brow_tilt.abs() + e.eye_open.abs() + e.mouth_open.abs()
            };
            assert!(size(&strong) > size(&normal), "emotion {emotion}");
        }
    }

    #[test]
    fn an_actor_looks_the_same_in_every_clip_and_actors_differ() {
        let a = Look::for_actor(3, 5, 1280, 720);
        let b = Look::for_actor(3, 5, 1280, 720);
        let c = Look::for_actor(3, 6, 1280, 720);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{c:?}"));
    }
}
