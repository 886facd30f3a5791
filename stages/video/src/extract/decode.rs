//! Decoding the sampled frames of one clip with one ffmpeg process.
//!
//! ffmpeg decodes the whole video stream once (inter-coded video cannot skip frames), but a
//! `select` filter placed first in the chain drops every frame that is not sampled before any
//! pixel-format conversion, so only the T sampled frames are converted to RGB24 and piped
//! out:
//!
//! ```text
//! ffmpeg -nostdin -threads 1 -i CLIP -map 0:v:0 -an -sn -dn -filter_threads 1
//!        -vf select=eq(n\,6)+eq(n\,18)+... -fps_mode passthrough -f image2pipe -c:v ppm -pix_fmt rgb24 -
//! ```
//!
//! Which frames to select depends on the frame count `N`, which a container may state wrongly
//! (off by one is common). We therefore run at `-loglevel verbose` and read the number of
//! frames ffmpeg actually decoded from its closing statistics (`... 122 frames decoded;`).
//! The selection is computed from the expected count (scan's `frame_count`); if the decoded
//! count differs *and* changes the sampled indices (or a selected index did not exist), the
//! clip is decoded a second time with the true count. The usual case is one decode per clip;
//! `decode_passes` in the index says when it was two. Without an expected count, a first
//! pass only counts frames.
//!
//! Frames come back as binary PPM (`-c:v ppm`: a `P6 W H 255` header + raw RGB24, no
//! encoding cost) so each frame says its own size. ffmpeg runs through `std::process`, not
//! `ffmpeg-sidecar`: the sidecar starts reading stdout only after its parser has recognised
//! the output streams in an `-loglevel info` log, and at the `verbose` level we need for the
//! decoded-frame count it never does, so ffmpeg blocks on a full pipe (observed as a hang).
//!
//! `ffmpeg -threads 1` per process: clips run in parallel on the stage's thread pool, so one
//! core per ffmpeg is the efficient split.

use std::ffi::OsString;
use std::path::Path;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::sampling::{sample_indices, unique_indices};

/// Why a clip could not be decoded. Every variant's message names the problem; the caller
/// adds the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("ffmpeg was not found (tried to run `{program}`); install ffmpeg and put it on PATH")]
    FfmpegMissing { program: String },
    #[error("could not run ffmpeg: {0}")]
    Spawn(std::io::Error),
    #[error("ffmpeg could not decode it: {detail}")]
    Ffmpeg { detail: String },
    #[error("ffmpeg could not decode it: {0}")]
    Pipe(PipeError),
    #[error("it has no video frames (ffmpeg decoded 0 frames)")]
    ZeroFrames,
    #[error("ffmpeg returned {got} of the {expected} selected frames after a decode with the exact frame count {count}")]
    FrameMismatch { got: usize, expected: usize, count: u64 },
    #[error("ffmpeg returned frames of {got} bytes, expected {expected} for {width}x{height} RGB24")]
    BadFrameSize { got: usize, expected: usize, width: u32, height: u32 },
}

/// Why ffmpeg's stream of frames (binary PPMs on its standard output) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("reading ffmpeg's output: {0}")]
    Read(std::io::Error),
    #[error("truncated frame header from ffmpeg: {0}")]
    TruncatedHeader(std::io::Error),
    /// A header token longer than any valid one.
    #[error("malformed frame header from ffmpeg")]
    LongToken,
    #[error("malformed frame header from ffmpeg: {0:?}")]
    BadNumber(Vec<String>),
    #[error("unexpected frame format from ffmpeg: {0:?}")]
    NotRgb24(Vec<String>),
    #[error("truncated {width}x{height} frame from ffmpeg: {error}")]
    TruncatedFrame { width: u32, height: u32, error: std::io::Error },
}

/// The sampled RGB24 frames of one clip.
#[derive(Debug, Clone)]
pub struct SampledFrames {
    pub width: u32,
    pub height: u32,
    /// Frames ffmpeg decoded (N).
    pub decoded_count: u64,
    /// Decoded-frame index of each of the T output frames (see `sampling.rs`).
    pub indices: Vec<u64>,
    /// One RGB24 frame per *distinct* index, ascending; `frame_for(i)` maps outputs to these.
    pub frames: Vec<Vec<u8>>,
    /// How many times ffmpeg ran over the clip (1 normally; 2 when the container's frame
    /// count was wrong; a counting pass adds one when no count was known).
    pub decode_passes: u32,
}

impl SampledFrames {
    /// The RGB24 pixels of output frame `i` (`0 <= i < T`).
    pub fn frame_for(&self, i: usize) -> &[u8] {
        let unique = unique_indices(&self.indices);
        let pos = unique.binary_search(&self.indices[i]).unwrap_or(0);
        &self.frames[pos]
    }

    /// The distinct frames in output order, `T` entries borrowing the decoded buffers.
    pub fn output_frames(&self) -> Vec<&[u8]> {
        let unique = unique_indices(&self.indices);
        let mut pos = 0;
        self.indices
            .iter()
            .map(|idx| {
                while unique[pos] != *idx {
                    pos += 1;
                }
                self.frames[pos].as_slice()
            })
            .collect()
    }
}

/// Runs ffmpeg; holds the program to run (default `ffmpeg` from PATH).
#[derive(Debug, Clone)]
pub struct Decoder {
    program: OsString,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { program: OsString::from("ffmpeg") }
    }
}

/// What one ffmpeg run returned.
struct Pass {
    width: u32,
    height: u32,
    frames: Vec<Vec<u8>>,
    decoded: u64,
}

impl Decoder {
    /// A decoder running `program` instead of `ffmpeg` from PATH.
    pub fn with_program(program: impl Into<OsString>) -> Self {
        Self { program: program.into() }
    }

    /// Checks that ffmpeg runs at all (once per stage, so that a missing ffmpeg is one clear
    /// error instead of one reject per clip).
    pub fn check(&self) -> Result<(), DecodeError> {
        let status = std::process::Command::new(&self.program)
            .arg("-version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(DecodeError::Ffmpeg { detail: format!("`ffmpeg -version` exited with {s}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(DecodeError::FfmpegMissing { program: self.program.to_string_lossy().into_owned() })
            }
            Err(e) => Err(DecodeError::Spawn(e)),
        }
    }

    /// Decodes `path` and returns its `t` uniformly sampled frames. `expected_frames` is the
    /// container's frame count (a hint; see the module doc).
    pub fn sample(&self, path: &Path, t: u32, expected_frames: Option<u64>) -> Result<SampledFrames, DecodeError> {
        let mut passes = 0;
        let mut guess = match expected_frames.filter(|&n| n > 0) {
            Some(n) => n,
            None => {
                passes += 1;
                let counted = self.run(path, &[])?;
                if counted.decoded == 0 {
                    return Err(DecodeError::ZeroFrames);
                }
                counted.decoded
            }
        };
        loop {
            let indices = sample_indices(guess, t);
            let wanted = unique_indices(&indices);
            passes += 1;
            let pass = self.run(path, &wanted)?;
            if pass.decoded == 0 {
                return Err(DecodeError::ZeroFrames);
            }
            let exact = sample_indices(pass.decoded, t);
            if exact == indices && pass.frames.len() == wanted.len() {
                return Ok(SampledFrames {
                    width: pass.width,
                    height: pass.height,
                    decoded_count: pass.decoded,
                    indices,
                    frames: pass.frames,
                    decode_passes: passes,
                });
            }
            if guess == pass.decoded {
                // The selection was made from the true count and still came back short.
                return Err(DecodeError::FrameMismatch { got: pass.frames.len(), expected: wanted.len(), count: guess });
            }
            guess = pass.decoded;
        }
    }

    /// One ffmpeg run outputting the frames at `select` (ascending) as RGB24; an empty
    /// `select` only counts frames.
    fn run(&self, path: &Path, select: &[u64]) -> Result<Pass, DecodeError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-hide_banner", "-nostats", "-loglevel", "level+verbose", "-nostdin", "-threads", "1", "-i"]);
        cmd.arg(path.as_os_str());
        cmd.args(["-map", "0:v:0", "-an", "-sn", "-dn", "-filter_threads", "1"]);
        if select.is_empty() {
            cmd.args(["-f", "null", "-"]);
        } else {
            let expr = select.iter().map(|n| format!("eq(n\\,{n})")).collect::<Vec<_>>().join("+");
            cmd.args(["-vf", &format!("select={expr}"), "-fps_mode", "passthrough"]);
            cmd.args(["-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        stage_api::process::die_with_parent(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DecodeError::FfmpegMissing { program: self.program.to_string_lossy().into_owned() })
            }
            Err(e) => return Err(DecodeError::Spawn(e)),
        };
        // stderr on its own thread so that neither pipe can fill up and block ffmpeg.
        let mut stderr = child.stderr.take().expect("piped");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut frames = Vec::with_capacity(select.len());
        let (mut width, mut height) = (0, 0);
        let read = loop {
            match read_ppm(&mut stdout) {
                Ok(Some((w, h, data))) => {
                    (width, height) = (w, h);
                    frames.push(data);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if read.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(DecodeError::Spawn)?;
        let log = log.join().unwrap_or_default();
        if !status.success() {
            let errors: Vec<&str> = log.lines().filter(|l| l.contains("[error]") || l.contains("[fatal]")).collect();
            let detail = if errors.is_empty() { format!("ffmpeg exited with {status}") } else { summarize(&errors) };
            return Err(DecodeError::Ffmpeg { detail });
        }
        read.map_err(DecodeError::Pipe)?;
        let decoded = log
            .lines()
            .find_map(frames_decoded)
            .ok_or_else(|| DecodeError::Ffmpeg { detail: "ffmpeg did not report how many frames it decoded".to_owned() })?;
        Ok(Pass { width, height, frames, decoded })
    }
}

/// Reads one binary PPM (`P6 W H 255` + RGB24) from ffmpeg's pipe; `None` at the end.
fn read_ppm(r: &mut impl BufRead) -> Result<Option<(u32, u32, Vec<u8>)>, PipeError> {
    if r.fill_buf().map_err(PipeError::Read)?.is_empty() {
        return Ok(None);
    }
    // Header: four whitespace-separated tokens, then one whitespace byte.
    let mut tokens: Vec<String> = Vec::with_capacity(4);
    let mut current = String::new();
    while tokens.len() < 4 {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).map_err(PipeError::TruncatedHeader)?;
        if byte[0].is_ascii_whitespace() {
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
        } else if current.len() < 16 {
            current.push(byte[0] as char);
        } else {
            return Err(PipeError::LongToken);
        }
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| PipeError::BadNumber(tokens.clone()));
    if tokens[0] != "P6" || num(&tokens[3])? != 255 {
        return Err(PipeError::NotRgb24(tokens));
    }
    let (w, h) = (num(&tokens[1])?, num(&tokens[2])?);
    let mut data = vec![0u8; w as usize * h as usize * 3];
    r.read_exact(&mut data).map_err(|error| PipeError::TruncatedFrame { width: w, height: h, error })?;
    Ok(Some((w, h, data)))
}

/// Parses ffmpeg's verbose closing line `Input stream #0:0 (video): 122 packets read (..); 122 frames decoded;`.
fn frames_decoded(line: &str) -> Option<u64> {
    if !line.contains("Input stream") || !line.contains("(video)") {
        return None;
    }
    let end = line.find(" frames decoded")?;
    let start = line[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |p| p + 1);
    line[start..end].parse().ok()
}

/// The distinct error lines of ffmpeg (without their `[... @ 0x..] [error]` prefixes), at
/// most three, `; `-separated.
fn summarize(errors: &[&str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        let e = ["[error] ", "[fatal] "].iter().find_map(|tag| e.find(tag).map(|p| &e[p + tag.len()..])).unwrap_or(e);
        let e = e.trim();
        if !e.is_empty() && !seen.contains(&e) {
            seen.push(e);
        }
    }
    let keep: Vec<&str> = seen.iter().rev().take(3).rev().copied().collect();
    keep.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decoded_frame_count() {
        let line = "[verbose]   Input stream #0:0 (video): 122 packets read (1197988 bytes); 122 frames decoded; ";
        assert_eq!(frames_decoded(line), Some(122));
        assert_eq!(frames_decoded("  Input stream #0:1 (audio): 10 packets read (5 bytes); 9 frames decoded; "), None);
        assert_eq!(frames_decoded("frame=  122 fps=0.0"), None);
    }

    #[test]
    fn output_frames_repeat_distinct_frames() {
        let s = SampledFrames {
            width: 1,
            height: 1,
            decoded_count: 2,
            indices: vec![0, 0, 1, 1, 1],
            frames: vec![vec![1, 1, 1], vec![2, 2, 2]],
            decode_passes: 1,
        };
        let out: Vec<u8> = s.output_frames().iter().map(|f| f[0]).collect();
        assert_eq!(out, vec![1, 1, 2, 2, 2]);
        assert_eq!(s.frame_for(3)[0], 2);
    }

    #[test]
    fn summary_keeps_distinct_lines() {
        let e = ["[mov,mp4 @ 0x1] [error] moov atom not found", "[error] moov atom not found", "[fatal] x.mp4: Invalid data"];
        assert_eq!(summarize(&e), "moov atom not found; x.mp4: Invalid data");
    }
}
