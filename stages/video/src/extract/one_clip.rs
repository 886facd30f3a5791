//! The extract stage's preprocessing of one video, as a library: decode T sampled frames,
//! find the face, choose the square crop, crop and resize to S x S. The stage runs it on every
//! clip of a scan (and writes the tensor cache); `pipeline predict` runs it on a user's videos,
//! so a model sees exactly what it was trained on.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustface::Model;
use stage_api::StageError;

use super::crop::{face_square, fallback_square, smooth, CropError, CropSquare, Cropper};
use super::decode::{DecodeError, Decoder};
use super::face::{bundled_model, DetectorSettings, FaceBox, FaceDetector};
use super::sampling::{is_padded, spread_indices};
use super::stage::ExtractParams;

/// One preprocessed video.
pub struct ClipTensor {
    /// `[T, S, S, 3]` RGB bytes.
    pub tensor: Vec<u8>,
    pub report: CropReport,
}

/// Why one video could not be preprocessed: `{path}: {problem}`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", .path.display())]
pub struct ClipError {
    pub path: PathBuf,
    pub problem: ClipProblem,
}

/// What went wrong with a video (the message [`ClipError`] puts after the file).
#[derive(Debug, thiserror::Error)]
pub enum ClipProblem {
    #[error("cannot read the video ({0})")]
    Unreadable(std::io::Error),
    #[error("not a file")]
    NotAFile,
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error("the video has no frames (ffmpeg decoded 0)")]
    NoFrames,
    #[error("{0}")]
    Decode(DecodeError),
    #[error("ffmpeg returned frames of size {width}x{height}")]
    FrameSize { width: u32, height: u32 },
    #[error("cannot crop: {0}")]
    Crop(CropError),
}

impl From<ClipError> for StageError {
    fn from(e: ClipError) -> Self {
        StageError::msg(e.to_string())
    }
}

/// How the crop of a [`ClipTensor`] was chosen (the index columns of the tensor cache).
#[derive(Debug, Clone)]
pub struct CropReport {
    /// The smoothed face box and its detector score; `None` when no sampled frame had a face.
    pub face: Option<FaceBox>,
    /// Output frames whose decoded frame had a face.
    pub face_found_frames: i32,
    /// Output frames whose decoded frame the detector looked at.
    pub face_checked_frames: i32,
    pub square: CropSquare,
    pub source_width: u32,
    pub source_height: u32,
    pub decoded_frames: u32,
    /// Fewer distinct frames than T: some were repeated.
    pub padded: bool,
    pub decode_passes: u32,
}

/// Preprocesses videos with the extract stage's parameters, one detector and cropper per
/// thread (rustface's detector is not `Send`, so each thread builds its own on first use).
pub struct ClipPreprocessor {
    params: ExtractParams,
    decoder: Decoder,
    model: Model,
    settings: DetectorSettings,
}

struct Worker {
    settings: DetectorSettings,
    detector: FaceDetector,
    cropper: Cropper,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

impl ClipPreprocessor {
    /// Checks that ffmpeg runs and loads the bundled face model. `what` names the work in the
    /// error when ffmpeg is missing (`needed to decode 360 clips, first a.mp4`).
    pub fn new(params: &ExtractParams, decoder: Decoder, what: &str) -> Result<Self, StageError> {
        decoder.check().map_err(|e| StageError::msg(format!("extract: {e} ({what})")))?;
        let model = bundled_model().map_err(|e| StageError::with_source("extract: cannot parse the bundled face model", e))?;
        Ok(Self { params: params.clone(), decoder, model, settings: DetectorSettings::new(params.detect_width) })
    }

    pub fn settings(&self) -> DetectorSettings {
        self.settings
    }

    /// Preprocesses every video on a pool of `threads` threads; results in input order.
    pub fn clips(&self, videos: &[&Path], threads: usize) -> Result<Vec<Result<ClipTensor, ClipError>>, StageError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| StageError::with_source("extract: cannot start the thread pool", e))?;
        Ok(pool.install(|| videos.par_iter().map(|v| self.clip(v, None)).collect()))
    }

    /// Decodes, detects, crops and resizes one video; `frame_count` (from a probe) saves a
    /// decoding pass when known. The error names the file and the problem.
    pub fn clip(&self, path: &Path, frame_count: Option<u64>) -> Result<ClipTensor, ClipError> {
        WORKER.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|w| w.settings != self.settings) {
                *slot = Some(Worker {
                    settings: self.settings,
                    detector: FaceDetector::new(self.model.clone(), self.settings),
                    cropper: Cropper::new(),
                });
            }
            preprocess(path, frame_count, &self.params, &self.decoder, slot.as_mut().expect("set above"))
                .map_err(|problem| ClipError { path: path.to_owned(), problem })
        })
    }
}

fn preprocess(
    path: &Path,
    frame_count: Option<u64>,
    params: &ExtractParams,
    decoder: &Decoder,
    worker: &mut Worker,
) -> Result<ClipTensor, ClipProblem> {
    match std::fs::metadata(path) {
        Err(e) => return Err(ClipProblem::Unreadable(e)),
        Ok(m) if !m.is_file() => return Err(ClipProblem::NotAFile),
        Ok(m) if m.len() == 0 => return Err(ClipProblem::Empty),
        Ok(_) => {}
    }
    let (t, s) = (params.frames, params.size);
    let sampled = decoder.sample(path, t, frame_count.filter(|&n| n > 0)).map_err(|e| match e {
        DecodeError::ZeroFrames => ClipProblem::NoFrames,
        other => ClipProblem::Decode(other),
    })?;
    let (w, h) = (sampled.width, sampled.height);
    if w == 0 || h == 0 {
        return Err(ClipProblem::FrameSize { width: w, height: h });
    }

    // Detection on a spread subset of the distinct decoded frames (all of them when the subset
    // finds no face), mapped onto the T outputs.
    let n = sampled.frames.len();
    let mut distinct: Vec<Option<FaceBox>> = vec![None; n];
    let mut checked = vec![false; n];
    for i in spread_indices(n, params.detect_frames) {
        distinct[i] = worker.detector.detect_rgb(&sampled.frames[i], w, h);
        checked[i] = true;
    }
    if distinct.iter().all(Option::is_none) {
        for i in 0..n {
            if !checked[i] {
                distinct[i] = worker.detector.detect_rgb(&sampled.frames[i], w, h);
                checked[i] = true;
            }
        }
    }
    let mut per_output: Vec<Option<FaceBox>> = Vec::with_capacity(t as usize);
    let mut checked_outputs = 0i32;
    let mut pos = 0;
    for (i, idx) in sampled.indices.iter().enumerate() {
        if i > 0 && *idx != sampled.indices[i - 1] {
            pos += 1;
        }
        per_output.push(distinct[pos]);
        checked_outputs += i32::from(checked[pos]);
    }
    let smoothed = smooth(&per_output);
    let square: CropSquare = match &smoothed {
        Some(sf) => face_square(&sf.face, params.margin as f32),
        None => fallback_square(w, h),
    };

    let frame_bytes = s as usize * s as usize * 3;
    let mut tensor = vec![0u8; t as usize * frame_bytes];
    let outputs = sampled.output_frames();
    for (i, frame) in outputs.iter().enumerate() {
        if i > 0 && sampled.indices[i] == sampled.indices[i - 1] {
            // A repeated frame (padded clip): same crop as the previous output.
            let (done, rest) = tensor.split_at_mut(i * frame_bytes);
            rest[..frame_bytes].copy_from_slice(&done[(i - 1) * frame_bytes..]);
            continue;
        }
        let dst = &mut tensor[i * frame_bytes..(i + 1) * frame_bytes];
        worker.cropper.crop_resize(frame, w, h, square, s, dst).map_err(ClipProblem::Crop)?;
    }
    let report = CropReport {
        face: smoothed.as_ref().map(|sf| sf.face),
        face_found_frames: smoothed.as_ref().map_or(0, |sf| sf.found_frames as i32),
        face_checked_frames: checked_outputs,
        square,
        source_width: w,
        source_height: h,
        decoded_frames: sampled.decoded_count as u32,
        padded: is_padded(sampled.decoded_count, t),
        decode_passes: sampled.decode_passes,
    };
    Ok(ClipTensor { tensor, report })
}
