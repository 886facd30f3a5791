//! Probing one video file: frame size, frame rate, frame count and duration.
//!
//! With `ffprobe` on `PATH` the packets of the first video stream are counted (`-count_packets`, a demux
//! without decoding: milliseconds per clip) and compared with the count the container header promises, so
//! a file cut short is caught even when its header survived. Without `ffprobe` (a static ffmpeg unpacked
//! in a home directory often has none) `ffmpeg -i FILE -map 0:v:0 -c copy -f null -` is run through
//! `ffmpeg-sidecar`, which parses the stream description and the final frame count from ffmpeg's log.
//! Every failure becomes a [`ProbeError`] whose kind says what is wrong with the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};

/// What the scan needs to know about a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frame_count: u64,
    pub duration_s: f64,
}

/// Why a file could not be probed; `kind` is a short code for the rejects table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub kind: &'static str,
    pub detail: String,
}

/// Every kind a probe can fail with (the rejects table's codes).
pub const KINDS: [&str; 5] = ["unreadable", "zero_byte", "not_video", "truncated", "no_video_stream"];
/// Not a reject kind: a file the shards of a sharded scan did not probe (the merge fails on it).
pub const NOT_PROBED: &str = "not_probed";

impl ProbeError {
    fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }

    pub(crate) fn missing(path: &Path) -> Self {
        Self::new(NOT_PROBED, format!("{} was not probed by any shard", path.display()))
    }
}

/// Which program probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prober {
    Ffprobe(PathBuf),
    /// `ffmpeg -i` through ffmpeg-sidecar.
    Ffmpeg(PathBuf),
}

impl Prober {
    /// `ffprobe` when on `PATH`, else `ffmpeg`; `None` when neither is.
    pub fn find(prefer: &str) -> Option<Self> {
        let probe = crate::tools::find_on_path("ffprobe").map(Prober::Ffprobe);
        let ffmpeg = crate::tools::find_on_path("ffmpeg").map(Prober::Ffmpeg);
        match prefer {
            "ffprobe" => probe,
            "ffmpeg" => ffmpeg,
            _ => probe.or(ffmpeg),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Prober::Ffprobe(_) => "ffprobe",
            Prober::Ffmpeg(_) => "ffmpeg",
        }
    }

    /// Probes `path`: checks the file is non-empty first, then asks the program.
    pub fn probe(&self, path: &Path) -> Result<VideoInfo, ProbeError> {
        let meta = std::fs::metadata(path).map_err(|e| ProbeError::new("unreadable", format!("cannot read the file: {e}")))?;
        if !meta.is_file() {
            return Err(ProbeError::new("unreadable", "not a regular file"));
        }
        if meta.len() == 0 {
            return Err(ProbeError::new("zero_byte", "zero-byte file"));
        }
        let info = match self {
            Prober::Ffprobe(p) => probe_ffprobe(p, path)?,
            Prober::Ffmpeg(p) => probe_ffmpeg(p, path)?,
        };
        if info.width == 0 || info.height == 0 || info.frame_count == 0 || info.fps.is_nan() || info.fps <= 0.0 {
            return Err(ProbeError::new(
                "not_video",
                format!(
                    "video stream has no frames or no size ({}x{}, {} frames, {} fps)",
                    info.width, info.height, info.frame_count, info.fps
                ),
            ));
        }
        Ok(info)
    }
}

/// Whether the file starts like an ISO media file (an `ftyp` box), i.e. is an mp4 at least by its header.
fn starts_like_mp4(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[4..8] == b"ftyp"
}

/// Classifies an ffmpeg/ffprobe error log about `path`. ffmpeg picks the mp4 demuxer by extension, so a
/// text file named `.mp4` and a cut-off mp4 both give "moov atom not found"; the file's first box tells
/// them apart.
fn classify(path: &Path, log: &str) -> ProbeError {
    let last = log.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message").to_owned();
    let lower = log.to_ascii_lowercase();
    let cut = lower.contains("moov atom not found") || lower.contains("partial file") || lower.contains("end of file");
    if cut && !starts_like_mp4(path) {
        ProbeError::new("not_video", format!("not a video file: no mp4 header ({last})"))
    } else if cut {
        ProbeError::new("truncated", format!("truncated or incomplete mp4 ({last})"))
    } else if lower.contains("invalid data found") || lower.contains("could not find codec parameters") {
        ProbeError::new("not_video", format!("not a video file or corrupt ({last})"))
    } else {
        ProbeError::new("not_video", format!("cannot be read as a video ({last})"))
    }
}

/// `"30000/1001"` -> 29.97; `"0/0"` -> None.
fn fraction(text: &str) -> Option<f64> {
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn probe_ffprobe(ffprobe: &Path, path: &Path) -> Result<VideoInfo, ProbeError> {
    let mut command = Command::new(ffprobe);
    command
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .arg("stream=index,codec_type,width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_packets,duration:format=duration")
        .args(["-of", "json"])
        .arg(path);
    stage_api::process::die_with_parent(&mut command);
    let out = command.output().map_err(|e| ProbeError::new("unreadable", format!("cannot run {}: {e}", ffprobe.display())))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(classify(path, &log));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| ProbeError::new("not_video", format!("unreadable ffprobe output: {e}")))?;
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let Some(v) = streams.iter().find(|s| s["codec_type"] == "video") else {
        let kinds: Vec<String> = streams.iter().filter_map(|s| s["codec_type"].as_str().map(str::to_owned)).collect();
        return Err(ProbeError::new(
            "no_video_stream",
            if kinds.is_empty() {
                "no video stream (no streams at all)".to_owned()
            } else {
                format!("no video stream (only {})", kinds.join(", "))
            },
        ));
    };
    let width = v["width"].as_u64().unwrap_or(0) as u32;
    let height = v["height"].as_u64().unwrap_or(0) as u32;
    let fps = v["avg_frame_rate"].as_str().and_then(fraction).or_else(|| v["r_frame_rate"].as_str().and_then(fraction)).unwrap_or(0.0);
    let read = number(&v["nb_read_packets"]).unwrap_or(0.0) as u64;
    let header = number(&v["nb_frames"]).map(|n| n as u64);
    if let Some(h) = header {
        if read < h {
            return Err(ProbeError::new("truncated", format!("truncated: the header promises {h} frames, only {read} are in the file")));
        }
    }
    let duration_s =
        number(&v["duration"]).or_else(|| number(&json["format"]["duration"])).unwrap_or(if fps > 0.0 { read as f64 / fps } else { 0.0 });
    if !log.trim().is_empty() && log.to_ascii_lowercase().contains("partial file") {
        return Err(classify(path, &log));
    }
    Ok(VideoInfo { width, height, fps, frame_count: read, duration_s })
}

fn probe_ffmpeg(ffmpeg: &Path, path: &Path) -> Result<VideoInfo, ProbeError> {
    let mut command = FfmpegCommand::new_with_path(ffmpeg);
    command.hide_banner().input(path).args(["-map", "0:v:0?", "-c", "copy", "-f", "null", "-"]);
    stage_api::process::die_with_parent(command.as_inner_mut());
    let mut child = command.spawn().map_err(|e| ProbeError::new("unreadable", format!("cannot run {}: {e}", ffmpeg.display())))?;
    let events = child.iter().map_err(|e| ProbeError::new("unreadable", format!("reading ffmpeg's log: {e}")))?;
    let (mut video, mut any_stream, mut duration, mut frames) = (None, Vec::new(), None, None);
    let mut errors = String::new();
    for event in events {
        match event {
            FfmpegEvent::ParsedInputStream(s) => {
                if let (None, Some(v)) = (&video, s.video_data()) {
                    video = Some(v.clone());
                }
                any_stream.push(if s.is_audio() {
                    "audio"
                } else if s.is_video() {
                    "video"
                } else {
                    "other"
                });
            }
            FfmpegEvent::ParsedDuration(d) => duration = Some(d.duration),
            FfmpegEvent::Progress(p) => frames = Some(u64::from(p.frame)),
            FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) | FfmpegEvent::Error(line) => {
                errors.push_str(&line);
                errors.push('\n');
            }
            _ => {}
        }
    }
    let status = child.wait().map_err(|e| ProbeError::new("unreadable", format!("waiting for ffmpeg: {e}")))?;
    let Some(v) = video else {
        if status.success() || !any_stream.is_empty() {
            let only = if any_stream.is_empty() { "no streams at all".to_owned() } else { format!("only {}", any_stream.join(", ")) };
            return Err(ProbeError::new("no_video_stream", format!("no video stream ({only})")));
        }
        return Err(classify(path, &errors));
    };
    if !status.success() {
        return Err(classify(path, &errors));
    }
    let fps = f64::from(v.fps);
    let frame_count = frames.unwrap_or(0);
    let duration_s = duration.unwrap_or(if fps > 0.0 { frame_count as f64 / fps } else { 0.0 });
    // ffmpeg -i has no header frame count; a file whose packets stop well before its stated duration
    // was cut short.
    if duration_s > 0.0 && fps > 0.0 && (frame_count as f64) < 0.9 * duration_s * fps - 1.0 {
        return Err(ProbeError::new(
            "truncated",
            format!(
                "truncated: {frame_count} frames in the file, its {duration_s:.2} s at {fps:.2} fps promise about {:.0}",
                duration_s * fps
            ),
        ));
    }
    if errors.to_ascii_lowercase().contains("partial file") {
        return Err(classify(path, &errors));
    }
    Ok(VideoInfo { width: v.width, height: v.height, fps, frame_count, duration_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_error_logs() {
        assert!((fraction("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(fraction("0/0"), None);
        assert_eq!(fraction("25"), Some(25.0));
        let missing = Path::new("/nonexistent/x.mp4");
        assert_eq!(classify(missing, "[mov,mp4] moov atom not found\nx.mp4: Invalid data found when processing input").kind, "not_video");
        assert_eq!(classify(missing, "x.mp4: Invalid data found when processing input").kind, "not_video");
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.mp4");
        std::fs::write(&cut, b"\0\0\0\x20ftypisom\0\0\x02\0").unwrap();
        assert_eq!(classify(&cut, "[mov,mp4] moov atom not found").kind, "truncated");
    }
}
