//! Shared helpers of the extract integration tests: real test videos, generated bad inputs,
//! and running the stage on a clip list in temporary folders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use stage_api::testing::context;
use stage_api::{Params, Shard, Stage, StageError, StageInput, StageOutcome};
use stages_video::extract::testing::{write_clips_table, ClipRecord};
use stages_video::extract::ExtractStage;

/// `../shared/data/real/` beside the repository.
pub fn real(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/real")).join(name)
}

/// A clip-table row for `path` with RAVDESS-like labels; `frame_count` is scan's hint.
pub fn record(clip_id: &str, path: &Path, actor: i32, label: i32, frame_count: i64) -> ClipRecord {
    const NAMES: [&str; 8] = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"];
    ClipRecord {
        clip_id: clip_id.to_owned(),
        source: path.to_string_lossy().into_owned(),
        modality: 1,
        vocal_channel: 1,
        emotion: NAMES[label as usize].to_owned(),
        label,
        intensity: 1,
        statement: 1,
        repetition: 1,
        actor,
        width: 0,
        height: 0,
        fps: 30.0,
        frame_count,
        duration_s: 0.0,
    }
}

/// Runs ffmpeg with `args` (quiet); panics with its stderr on failure (test set-up only).
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The RAVDESS test clip padded back to 1280x720 on white (the command of the data README).
pub fn padded_ravdess(dir: &Path) -> PathBuf {
    let out = dir.join("ravdess_1280x720.mp4");
    if !out.exists() {
        let src = real("01-01-08-02-01-01-19.mp4");
        ffmpeg(&[
            "-i",
            src.to_str().unwrap(),
            "-vf",
            "pad=1280:720:280:0:white",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            out.to_str().unwrap(),
        ]);
    }
    out
}

/// A synthetic clip (ffmpeg's testsrc: no face) of `frames` frames at `w x h`.
pub fn testsrc(dir: &Path, name: &str, w: u32, h: u32, frames: u32) -> PathBuf {
    let out = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={w}x{h}:rate=30"),
        "-frames:v",
        &frames.to_string(),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        out.to_str().unwrap(),
    ]);
    out
}

/// A finished or failed stage run, with its folders kept alive.
pub struct Run {
    pub tmp: tempfile::TempDir,
    pub out: PathBuf,
    pub result: Result<StageOutcome, StageError>,
}

/// Writes `clips` as a scan output and runs `stage` with `params` on `threads` threads.
pub fn run_with(stage: &ExtractStage, clips: &[ClipRecord], params: serde_json::Value, threads: usize) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&scan).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    write_clips_table(&scan.join("clips.parquet"), clips).unwrap();
    let raw: Params = serde_json::from_value(params).unwrap();
    let params = stage.resolve_params(&raw).unwrap();
    let inputs = [StageInput { kind: Some("scan".into()), ..StageInput::new("scan", scan) }];
    let ctx = context(&params, &inputs, &out, tmp.path(), threads);
    let result = stage.run(&ctx);
    Run { tmp, out, result }
}

/// Runs extract as `count` shards (each into its own folder), then merges them into `out`.
pub fn run_sharded(clips: &[ClipRecord], params: serde_json::Value, count: usize, threads: usize) -> Run {
    let stage = ExtractStage::new();
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    std::fs::create_dir_all(&scan).unwrap();
    write_clips_table(&scan.join("clips.parquet"), clips).unwrap();
    let raw: Params = serde_json::from_value(params).unwrap();
    let params = stage.resolve_params(&raw).unwrap();
    let inputs = [StageInput { kind: Some("scan".into()), ..StageInput::new("scan", scan) }];
    let mut parts = Vec::new();
    for index in 0..count {
        let part = tmp.path().join(format!("part{index}"));
        std::fs::create_dir_all(&part).unwrap();
        let ctx = context(&params, &inputs, &part, tmp.path(), threads);
        stage.run_shard(&ctx, Shard { index, count }).unwrap();
        parts.push(part);
    }
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let ctx = context(&params, &inputs, &out, tmp.path(), threads);
    let result = stage.merge(&ctx, &parts);
    Run { tmp, out, result }
}

pub fn run(clips: &[ClipRecord], params: serde_json::Value, threads: usize) -> Run {
    run_with(&ExtractStage::new(), clips, params, threads)
}

/// Where tests leave crops as PNG pictures for a human to look at, when asked
/// (`EXTRACT_CROPS_DIR=/some/dir cargo test -p stages-video --test extract`).
pub fn crops_dir() -> Option<PathBuf> {
    std::env::var_os("EXTRACT_CROPS_DIR").map(PathBuf::from)
}
