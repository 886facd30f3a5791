//! The `synth` stage: a synthetic dataset in the exact RAVDESS format, the pipeline's built-in default
//! input (the real corpus cannot be shipped).
//!
//! Output: `<out>/Actor_NN/02-VV-EE-II-SS-RR-AA.mp4` (H.264, yuv420p, default 1280x720, 30 fps, 3 s), one
//! clip per combination of actor, vocal channel, emotion, intensity, statement and repetition that exists in
//! RAVDESS (no strong neutral, no sung disgust/surprised), optionally with `01-` copies of every clip to
//! exercise scan's modality de-duplication, plus `synth.json` (parameters, counts, seconds). Each clip
//! shows a shaded face (see [`render`]) whose expression and head motion follow the emotion and intensity
//! (see [`face`]). The same parameters give byte-identical video files: every clip has its own seeded
//! generator and x264 runs single-threaded with bit-exact flags; clips are rendered in parallel.
//! `README-synth.md` describes the faces and the measured detection rate.

pub mod canvas;
pub mod encode;
pub mod face;
pub mod render;
pub mod rng;

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ParamError, Params, Stage, StageContext, StageError, StageOutcome};

use crate::ravdess::{emotion_list, Modality, RavdessName, VocalChannel, EMOTIONS, SONG_MAX_EMOTION};
use encode::{encode_clip, VideoFormat};
use face::ClipPlan;
use render::Renderer;

/// Parameters of `uses: synth`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthParams {
    /// Number of actors, `Actor_01..Actor_NN` (1..=24).
    #[serde(default = "default_actors")]
    pub actors: u8,
    /// Emotions by name or id; resolved to names in label order.
    #[serde(default = "default_emotions")]
    pub emotions: Vec<serde_json::Value>,
    /// Intensity codes (1 normal, 2 strong); neutral exists only at 1, so it is written only when 1 is listed.
    #[serde(default = "default_intensities")]
    pub intensities: Vec<u8>,
    /// Number of statements (1 or 2).
    #[serde(default = "one")]
    pub statements: u8,
    /// Number of repetitions (1 or 2).
    #[serde(default = "one")]
    pub repetitions: u8,
    /// Vocal channels (1 speech, 2 song); songs skip disgust and surprised as in RAVDESS.
    #[serde(default = "default_vocal_channels")]
    pub vocal_channels: Vec<u8>,
    /// Also write each clip as an `01-` (audio-video) copy, as the real video zips hold both.
    #[serde(default)]
    pub audio_video_copies: bool,
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    #[serde(default = "default_fps")]
    pub fps: u32,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    /// x264 constant rate factor.
    #[serde(default = "default_crf")]
    pub crf: u32,
    #[serde(default)]
    pub seed: u64,
}

fn default_actors() -> u8 {
    12
}
fn default_emotions() -> Vec<serde_json::Value> {
    EMOTIONS.iter().map(|e| serde_json::Value::from(*e)).collect()
}
fn default_intensities() -> Vec<u8> {
    vec![1, 2]
}
fn one() -> u8 {
    1
}
fn default_vocal_channels() -> Vec<u8> {
    vec![1]
}
fn default_duration() -> f64 {
    3.0
}
fn default_fps() -> u32 {
    30
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_crf() -> u32 {
    23
}

impl SynthParams {
    /// Checks ranges and puts lists into canonical form (sorted, de-duplicated, emotions as names).
    pub fn validated(mut self) -> Result<Self, ParamError> {
        let bad = |p: &str, m: String| ParamError::new(Some(p), m);
        if !(1..=24).contains(&self.actors) {
            return Err(bad("actors", format!("actors must be 1..24, got {}", self.actors)));
        }
        let ids = emotion_list(&self.emotions).map_err(|e| bad("emotions", e.to_string()))?;
        if ids.is_empty() {
            return Err(bad("emotions", "emotions must not be empty".into()));
        }
        self.emotions = ids.iter().map(|&i| serde_json::Value::from(EMOTIONS[usize::from(i) - 1])).collect();
        for (name, list, max) in [("intensities", &mut self.intensities, 2u8), ("vocal_channels", &mut self.vocal_channels, 2)] {
            list.sort_unstable();
            list.dedup();
            if list.is_empty() || list.iter().any(|&v| v < 1 || v > max) {
                return Err(bad(name, format!("{name} must be a non-empty list of 1..{max}, got {list:?}")));
            }
        }
        for (name, v) in [("statements", self.statements), ("repetitions", self.repetitions)] {
            if !(1..=2).contains(&v) {
                return Err(bad(name, format!("{name} must be 1 or 2, got {v}")));
            }
        }
        if !(self.duration_s > 0.0 && self.duration_s <= 60.0) {
            return Err(bad("duration_s", format!("duration_s must be in (0, 60], got {}", self.duration_s)));
        }
        if !(1..=120).contains(&self.fps) {
            return Err(bad("fps", format!("fps must be 1..120, got {}", self.fps)));
        }
        if self.width < 64 || self.height < 64 || self.width % 2 == 1 || self.height % 2 == 1 || self.width > 3840 || self.height > 2160 {
            return Err(bad("width", format!("frame size must be even and between 64 and 3840x2160, got {}x{}", self.width, self.height)));
        }
        if self.crf > 51 {
            return Err(bad("crf", format!("crf must be 0..51, got {}", self.crf)));
        }
        Ok(self)
    }

    /// Every clip (modality 02) the parameters describe, sorted by actor then name.
    pub fn clips(&self) -> Vec<RavdessName> {
        let emotions = emotion_list(&self.emotions).unwrap_or_default();
        let mut out = Vec::new();
        for actor in 1..=self.actors {
            for &vc in &self.vocal_channels {
                let Some(vocal_channel) = VocalChannel::from_code(vc) else { continue };
                for &emotion in &emotions {
                    if vocal_channel == VocalChannel::Song && emotion > SONG_MAX_EMOTION {
                        continue;
                    }
                    for &intensity in &self.intensities {
                        if emotion == 1 && intensity != 1 {
                            continue;
                        }
                        for statement in 1..=self.statements {
                            for repetition in 1..=self.repetitions {
                                out.push(RavdessName {
                                    modality: Modality::VideoOnly,
                                    vocal_channel,
                                    emotion,
                                    intensity,
                                    statement,
                                    repetition,
                                    actor,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn format(&self) -> VideoFormat {
        VideoFormat { width: self.width as usize, height: self.height as usize, fps: self.fps, crf: self.crf }
    }

    /// Frames per clip: `round(duration_s * fps)`, at least one.
    pub fn frames(&self) -> usize {
        ((self.duration_s * f64::from(self.fps)).round() as usize).max(1)
    }
}

/// Writes one clip `name` (and its `01-` copy if asked) under `root/Actor_NN/`.
pub fn write_clip(ffmpeg: &Path, params: &SynthParams, name: &RavdessName, root: &Path) -> Result<(), StageError> {
    let dir = root.join(name.actor_dir());
    std::fs::create_dir_all(&dir).map_err(|e| StageError::with_source(format!("creating {}", dir.display()), e))?;
    let f = params.format();
    let plan = ClipPlan::new(params.seed, name, f.width, f.height, params.duration_s as f32);
    let mut renderer = Renderer::new(plan, f.width, f.height, f.fps as f32);
    let dest = dir.join(name.file_name());
    encode_clip(ffmpeg, f, params.frames(), &dest, &mut renderer)?;
    if params.audio_video_copies {
        let copy = dir.join(RavdessName { modality: Modality::AudioVideo, ..*name }.file_name());
        std::fs::copy(&dest, &copy).map_err(|e| StageError::with_source(format!("copying {} to {}", dest.display(), copy.display()), e))?;
    }
    Ok(())
}

/// `uses: synth`.
pub struct SynthStage;

impl Stage for SynthStage {
    fn kind(&self) -> &'static str {
        "synth"
    }

    /// v2: expressions drawn about twice as strong, normal intensity 0.75 (was 0.6).
    /// v3: x264 `-preset ultrafast` (was `veryfast`): the same rendered frames, different (larger) files.
    fn version(&self) -> u32 {
        3
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let (p, _): (SynthParams, Params) = typed_params(params)?;
        let p = p.validated()?;
        match serde_json::to_value(&p) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(ParamError::new(None, "synth parameters did not serialise to a mapping")),
        }
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (p, _): (SynthParams, Params) = typed_params(ctx.params).map_err(|e| StageError::msg(e.message))?;
        let p = p.validated().map_err(|e| StageError::msg(e.message))?;
        let ffmpeg = crate::tools::ffmpeg()?;
        let clips = p.clips();
        let started = Instant::now();
        ctx.progress.start(clips.len() as u64, "clips");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.max(1))
            .build()
            .map_err(|e| StageError::with_source("starting the synth thread pool", e))?;
        pool.install(|| {
            clips.par_iter().try_for_each(|name| {
                write_clip(&ffmpeg, &p, name, ctx.out_dir)?;
                ctx.progress.advance(1);
                Ok::<_, StageError>(())
            })
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let files = clips.len() * if p.audio_video_copies { 2 } else { 1 };
        let summary = serde_json::json!({
            "params": p,
            "clips": clips.len(),
            "files": files,
            "frames_per_clip": p.frames(),
            "actors": p.actors,
        });
        // No timing or thread count in the file: the output must be the same bytes on every run
        // and machine, or every key downstream would differ (the run log has the time).
        let path = ctx.out_dir.join("synth.json");
        let text = serde_json::to_string_pretty(&summary).map_err(|e| StageError::with_source("serialising synth.json", e))?;
        std::fs::write(&path, text + "\n").map_err(|e| StageError::with_source(format!("writing {}", path.display()), e))?;
        Ok(StageOutcome::new(format!("{} synthetic clips ({} files) in {:.1} s", clips.len(), files, seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Result<Params, ParamError> {
        SynthStage.resolve_params(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn default_set_is_180_clips_of_90_frames() {
        let p: SynthParams = typed_params(&params("{}").unwrap()).unwrap().0;
        let clips = p.clips();
        assert_eq!(clips.len(), 12 * (1 + 7 * 2));
        assert_eq!(p.frames(), 90);
        assert!(clips.iter().all(|c| c.validate().is_ok() && c.modality == Modality::VideoOnly));
    }

    #[test]
    fn spellings_of_the_same_set_resolve_alike_and_songs_skip_disgust_and_surprise() {
        assert_eq!(params(r#"{"emotions": [3, "sad", "happy"]}"#).unwrap(), params(r#"{"emotions": ["happy", "04"]}"#).unwrap());
        let p: SynthParams = typed_params(&params(r#"{"actors": 1, "vocal_channels": [2], "intensities": [2]}"#).unwrap()).unwrap().0;
        assert_eq!(p.clips().len(), 5, "calm..fearful strong; neutral exists only at normal intensity");
    }

    #[test]
    fn bad_parameters_are_named() {
        for (json, name) in [
            (r#"{"actors": 25}"#, "actors"),
            (r#"{"emotions": ["joy"]}"#, "emotions"),
            (r#"{"intensities": [3]}"#, "intensities"),
            (r#"{"statements": 3}"#, "statements"),
            (r#"{"duration_s": 0}"#, "duration_s"),
            (r#"{"width": 1279}"#, "width"),
            (r#"{"colour": 1}"#, "colour"),
        ] {
            assert_eq!(params(json).unwrap_err().param.as_deref(), Some(name), "{json}");
        }
    }
}
