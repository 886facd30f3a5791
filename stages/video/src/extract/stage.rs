//! The `extract` stage: clips.parquet in; face-centred uint8 tensors, index and QA out.
//!
//! Clips are sorted by `clip_id` and processed in windows of `8 x threads` clips: the clips
//! of a window run in parallel (one ffmpeg + detector + cropper per worker), then their
//! results are written in `clip_id` order. The output therefore does not depend on the thread
//! count (byte-identical), and memory holds at most one window of results (small tensors),
//! never the dataset. A clip that fails becomes a reject (`extract.json`, `rejects.parquet`)
//! and the others go on; the stage fails when no clip succeeds, or on any reject with
//! `strict: true`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use stage_api::{typed_params, ParamError, Params, Shard, Stage, StageContext, StageError, StageOutcome};

use super::decode::Decoder;
use super::face::DetectorSettings;
use super::one_clip::{ClipPreprocessor, ClipTensor};
use super::qa::{write_detection_csv, ContactSheet};
use stage_formats::clips::{read_clips_table, ClipRecord, CLIPS_FILE};
use stage_formats::parquet::write_columns;
use stage_formats::tensor_cache::{
    read_index, write_index, ExtractReport, IndexRow, ShardWriter, EXTRACT_REPORT_FILE, INDEX_FILE, SHARDS_DIR,
};

/// Parameters of `uses: extract`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// T: frames sampled per clip.
    #[serde(default = "default_frames")]
    pub frames: u32,
    /// S: side of the square crops.
    #[serde(default = "default_size")]
    pub size: u32,
    /// Fraction of the face box size added on each side of the crop square.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Width of the grey frame the face detector sees.
    #[serde(default = "default_detect_width")]
    pub detect_width: u32,
    /// Sampled frames the detector looks at, spread evenly over the clip (0 = all T). The crop
    /// is one median box per clip, so a few frames give the same box for a fraction of the
    /// detector's cost; when none of them has a face, every other sampled frame is tried
    /// before the fallback.
    #[serde(default = "default_detect_frames")]
    pub detect_frames: u32,
    /// Upper bound of one shard's tensor data, in MiB (a shard holds at least one clip).
    #[serde(default = "default_shard_mb")]
    pub shard_mb: u32,
    /// Fail on the first rejected clip instead of recording it.
    #[serde(default)]
    pub strict: bool,
}

fn default_frames() -> u32 {
    10
}
fn default_size() -> u32 {
    112
}
fn default_margin() -> f64 {
    0.25
}
fn default_detect_width() -> u32 {
    320
}
fn default_detect_frames() -> u32 {
    2
}
fn default_shard_mb() -> u32 {
    256
}

impl ExtractParams {
    fn validate(&self) -> Result<(), ParamError> {
        let check = |ok: bool, name: &str, msg: &str| if ok { Ok(()) } else { Err(ParamError::new(Some(name), msg)) };
        check((1..=1024).contains(&self.frames), "frames", "`frames` must be between 1 and 1024")?;
        check((8..=2048).contains(&self.size), "size", "`size` must be between 8 and 2048")?;
        check(self.margin.is_finite() && (0.0..=2.0).contains(&self.margin), "margin", "`margin` must be between 0 and 2")?;
        check(self.detect_width >= 32, "detect_width", "`detect_width` must be at least 32")?;
        check(self.shard_mb >= 1, "shard_mb", "`shard_mb` must be at least 1")
    }
}

/// The `extract` stage kind.
#[derive(Debug, Clone, Default)]
pub struct ExtractStage {
    decoder: Decoder,
}

impl ExtractStage {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage with another ffmpeg binary (tests: a missing one).
    pub fn with_decoder(decoder: Decoder) -> Self {
        Self { decoder }
    }
}

impl Stage for ExtractStage {
    fn kind(&self) -> &'static str {
        "extract"
    }

    /// v2: detection on `detect_frames` frames; `face_checked_frames` in the index.
    fn version(&self) -> u32 {
        2
    }

    fn resolve_params(&self, params: &Params) -> Result<Params, ParamError> {
        let (p, canonical): (ExtractParams, Params) = typed_params(params)?;
        p.validate()?;
        Ok(canonical)
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutcome, StageError> {
        let (params, canonical, clips) = Self::inputs(ctx)?;
        run_extract(&params, &canonical, clips, ctx, &self.decoder)
    }

    fn shardable(&self) -> bool {
        true
    }

    fn run_shard(&self, ctx: &StageContext<'_>, shard: Shard) -> Result<StageOutcome, StageError> {
        let (params, _, clips) = Self::inputs(ctx)?;
        run_extract_shard(&params, clips, shard, ctx, &self.decoder)
    }

    fn merge(&self, ctx: &StageContext<'_>, parts: &[PathBuf]) -> Result<StageOutcome, StageError> {
        let (params, canonical, clips) = Self::inputs(ctx)?;
        merge_extract(&params, &canonical, clips, parts, ctx)
    }
}

impl ExtractStage {
    /// Typed parameters, their canonical form and the scan table.
    fn inputs(ctx: &StageContext<'_>) -> Result<(ExtractParams, Params, Vec<ClipRecord>), StageError> {
        let (params, canonical): (ExtractParams, Params) =
            typed_params(ctx.params).map_err(|e| StageError::msg(format!("extract parameters: {e}")))?;
        params.validate().map_err(|e| StageError::msg(format!("extract parameters: {e}")))?;
        let scan = ctx.input_like("scan", CLIPS_FILE)?;
        let clips = read_clips_table(&scan.dir.join(CLIPS_FILE))?;
        Ok((params, canonical, clips))
    }
}

/// One extracted clip before it is written.
struct Extracted {
    row: IndexRow,
    tensor: Vec<u8>,
}

/// A clip that could not be extracted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reject {
    clip_id: String,
    source: String,
    reason: String,
}

#[derive(Serialize)]
struct DetectionSummary {
    /// Clips with a face in at least one sampled frame / extracted clips.
    clip_detection_rate: f64,
    /// Frames with a face / frames the detector looked at.
    frame_detection_rate: f64,
    /// Frames the detector looked at / all sampled frames.
    frames_checked: f64,
    clips_with_face: usize,
    fallback_clips: usize,
    median_detect_score: f32,
}

/// Runs the stage on an explicit clip list (the engine path reads it from `scan`).
pub fn run_extract(
    params: &ExtractParams,
    canonical: &Params,
    clips: Vec<ClipRecord>,
    ctx: &StageContext<'_>,
    decoder: &Decoder,
) -> Result<StageOutcome, StageError> {
    let (clips, duplicates) = unique_clips(clips)?;
    let extractor = Extractor::new(params, ctx, decoder, &clips)?;
    let mut assembler = Assembler::new(ctx.out_dir, params, duplicates)?;
    ctx.progress.start(clips.len() as u64, "clips");
    for chunk in clips.chunks(extractor.window()) {
        for (clip, result) in chunk.iter().zip(extractor.extract(chunk)) {
            assembler.add(clip, result, ctx)?;
        }
    }
    assembler.finish(ctx.out_dir, params, canonical, extractor.preprocessor.settings())
}

/// Shard `shard` of the sorted clip list: contiguous clips, extracted into a partial result
/// (`rows.parquet`, `tensors.bin` with the rows' tensors in order, `rejects.json`) that only
/// [`merge_extract`] reads.
pub fn run_extract_shard(
    params: &ExtractParams,
    clips: Vec<ClipRecord>,
    shard: Shard,
    ctx: &StageContext<'_>,
    decoder: &Decoder,
) -> Result<StageOutcome, StageError> {
    let (clips, _duplicates) = unique_clips(clips)?;
    let mine = &clips[shard.range(clips.len())];
    let extractor = Extractor::new(params, ctx, decoder, &clips)?;
    let tensors_path = ctx.out_dir.join(PART_TENSORS);
    let mut tensors = std::io::BufWriter::new(
        std::fs::File::create(&tensors_path)
            .map_err(|e| StageError::with_source(format!("{}: cannot create", tensors_path.display()), e))?,
    );
    let (mut rows, mut rejects) = (Vec::new(), Vec::new());
    ctx.progress.start(mine.len() as u64, "clips");
    for chunk in mine.chunks(extractor.window()) {
        for (clip, result) in chunk.iter().zip(extractor.extract(chunk)) {
            match result {
                Ok(Extracted { row, tensor }) => {
                    std::io::Write::write_all(&mut tensors, &tensor)
                        .map_err(|e| StageError::with_source(format!("{}: cannot write", tensors_path.display()), e))?;
                    rows.push(row);
                }
                Err(e) => rejects.push(Reject { clip_id: clip.clip_id.clone(), source: clip.source.clone(), reason: e.chain() }),
            }
        }
    }
    std::io::Write::flush(&mut tensors).map_err(|e| StageError::with_source(format!("{}: cannot write", tensors_path.display()), e))?;
    write_index(&ctx.out_dir.join(PART_ROWS), &rows)?;
    let json = serde_json::to_string(&rejects).map_err(|e| StageError::with_source("rejects.json", e))?;
    std::fs::write(ctx.out_dir.join(PART_REJECTS), json).map_err(|e| StageError::with_source("writing rejects.json", e))?;
    Ok(StageOutcome::new(format!(
        "shard {} of {}: {} clips extracted, {} rejected",
        shard.index + 1,
        shard.count,
        rows.len(),
        rejects.len()
    )))
}

/// Builds the stage's output from the shards' partial results, in shard order: the same bytes
/// as [`run_extract`] on the whole list (the writer sees the same clips in the same order).
pub fn merge_extract(
    params: &ExtractParams,
    canonical: &Params,
    clips: Vec<ClipRecord>,
    parts: &[PathBuf],
    ctx: &StageContext<'_>,
) -> Result<StageOutcome, StageError> {
    let (clips, duplicates) = unique_clips(clips)?;
    let mut assembler = Assembler::new(ctx.out_dir, params, duplicates)?;
    let by_id: std::collections::HashMap<&str, &ClipRecord> = clips.iter().map(|c| (c.clip_id.as_str(), c)).collect();
    // In usize: T·S·S·3 overflows u32 within the range validation allows (1024 frames of 2048²).
    let clip_bytes = params.frames as usize * params.size as usize * params.size as usize * 3;
    let mut seen = 0;
    for part in parts {
        let rows = read_index(&part.join(PART_ROWS))?;
        let tensors_path = part.join(PART_TENSORS);
        let tensors =
            std::fs::read(&tensors_path).map_err(|e| StageError::with_source(format!("{}: cannot read", tensors_path.display()), e))?;
        let rejects_path = part.join(PART_REJECTS);
        let rejects: Vec<Reject> = std::fs::read(&rejects_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| StageError::msg(format!("{}: {e}", rejects_path.display())))?;
        if tensors.len() != rows.len() * clip_bytes {
            return Err(StageError::msg(format!(
                "{}: {} bytes for {} clips of {clip_bytes} bytes",
                tensors_path.display(),
                tensors.len(),
                rows.len()
            )));
        }
        // Rows and rejects of one shard, back in clip order.
        let mut results: Vec<(&ClipRecord, Result<Extracted, StageError>)> = Vec::with_capacity(rows.len() + rejects.len());
        for (k, row) in rows.into_iter().enumerate() {
            let clip = by_id
                .get(row.clip_id.as_str())
                .ok_or_else(|| StageError::msg(format!("{}: clip {} is not in the scan table", part.display(), row.clip_id)))?;
            results.push((clip, Ok(Extracted { row, tensor: tensors[k * clip_bytes..(k + 1) * clip_bytes].to_vec() })));
        }
        for reject in rejects {
            let clip = by_id
                .get(reject.clip_id.as_str())
                .ok_or_else(|| StageError::msg(format!("{}: clip {} is not in the scan table", part.display(), reject.clip_id)))?;
            results.push((clip, Err(StageError::msg(reject.reason))));
        }
        results.sort_by(|a, b| a.0.clip_id.cmp(&b.0.clip_id));
        seen += results.len();
        for (clip, result) in results {
            assembler.add(clip, result, ctx)?;
        }
    }
    if seen != clips.len() {
        return Err(StageError::msg(format!("the {} shards hold {seen} clips, the scan table {}", parts.len(), clips.len())));
    }
    assembler.finish(ctx.out_dir, params, canonical, DetectorSettings::new(params.detect_width))
}

const PART_ROWS: &str = "rows.parquet";
const PART_TENSORS: &str = "tensors.bin";
const PART_REJECTS: &str = "rejects.json";

/// Sorted by clip_id; the same clip_id twice would be the same recording counted twice: the
/// first is kept, the others are rejects.
fn unique_clips(mut clips: Vec<ClipRecord>) -> Result<(Vec<ClipRecord>, Vec<Reject>), StageError> {
    clips.sort_by(|a, b| a.clip_id.cmp(&b.clip_id).then(a.source.cmp(&b.source)));
    let mut rejects: Vec<Reject> = Vec::new();
    let mut unique: Vec<ClipRecord> = Vec::with_capacity(clips.len());
    for clip in clips {
        match unique.last() {
            Some(prev) if prev.clip_id == clip.clip_id => rejects.push(Reject {
                reason: format!("{}: duplicate clip_id `{}` (already taken from {})", clip.source, clip.clip_id, prev.source),
                clip_id: clip.clip_id,
                source: clip.source,
            }),
            _ => unique.push(clip),
        }
    }
    if unique.is_empty() {
        return Err(StageError::msg("extract: the scan table has no clips"));
    }
    Ok((unique, rejects))
}

/// Decodes, detects and crops clips on a thread pool, a window at a time.
struct Extractor<'a> {
    params: &'a ExtractParams,
    ctx: &'a StageContext<'a>,
    preprocessor: ClipPreprocessor,
    pool: rayon::ThreadPool,
}

impl<'a> Extractor<'a> {
    fn new(params: &'a ExtractParams, ctx: &'a StageContext<'a>, decoder: &'a Decoder, clips: &[ClipRecord]) -> Result<Self, StageError> {
        let what = format!("needed to decode {} clips, first {}", clips.len(), clips[0].source);
        let preprocessor = ClipPreprocessor::new(params, decoder.clone(), &what)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.max(1))
            .build()
            .map_err(|e| StageError::with_source("extract: cannot start the thread pool", e))?;
        Ok(Extractor { params, ctx, preprocessor, pool })
    }

    /// Clips extracted in parallel before their results are written, in order.
    fn window(&self) -> usize {
        8 * self.ctx.threads.max(1)
    }

    /// Each clip's result, in order; an error is the clip's reject reason.
    fn extract(&self, chunk: &[ClipRecord]) -> Vec<Result<Extracted, StageError>> {
        let (params, ctx, preprocessor) = (self.params, self.ctx, &self.preprocessor);
        self.pool.install(|| {
            chunk
                .par_iter()
                .map(|clip| {
                    let result = extract_clip(clip, params, ctx, preprocessor);
                    ctx.progress.advance(1);
                    result
                })
                .collect()
        })
    }
}

/// Writes extracted clips, in clip order, into the tensor cache, index, QA files and report.
struct Assembler {
    shards: ShardWriter,
    sheet: ContactSheet,
    rows: Vec<IndexRow>,
    rejects: Vec<Reject>,
    layout: serde_json::Value,
    /// T, S and `strict` of the parameters.
    frames: u32,
    size: u32,
    strict: bool,
}

impl Assembler {
    fn new(out: &Path, params: &ExtractParams, duplicates: Vec<Reject>) -> Result<Self, StageError> {
        let layout = serde_json::json!({
            "layout": "uint8 [T, S, S, 3] RGB, one tensor per clip named by clip_id",
            "frames": params.frames,
            "size": params.size,
        });
        let shard_bytes = u64::from(params.shard_mb) * 1024 * 1024;
        Ok(Assembler {
            shards: ShardWriter::new(&out.join(SHARDS_DIR), shard_bytes, layout.to_string())?,
            sheet: ContactSheet::new(params.size),
            rows: Vec::new(),
            rejects: duplicates,
            layout,
            frames: params.frames,
            size: params.size,
            strict: params.strict,
        })
    }

    /// Writes an extracted clip, or records why it was rejected (a failure when `strict`).
    fn add(&mut self, clip: &ClipRecord, result: Result<Extracted, StageError>, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let (t, s) = (self.frames, self.size);
        match result {
            Ok(Extracted { mut row, tensor }) => {
                row.shard = self.shards.add(&row.clip_id, &[t as usize, s as usize, s as usize, 3], &tensor)?;
                let frame_bytes = (s * s * 3) as usize;
                let mid = (t as usize / 2) * frame_bytes;
                self.sheet.offer(row.label, &row.emotion, row.actor, &tensor[mid..mid + frame_bytes], s, row.fallback);
                self.rows.push(row);
            }
            Err(e) => {
                let reason = e.chain();
                ctx.progress.note(&format!("rejected {reason}"));
                if self.strict {
                    return Err(StageError::msg(format!("extract (strict): {reason}")));
                }
                self.rejects.push(Reject { clip_id: clip.clip_id.clone(), source: clip.source.clone(), reason });
            }
        }
        Ok(())
    }

    fn finish(
        self,
        out: &Path,
        params: &ExtractParams,
        canonical: &Params,
        settings: DetectorSettings,
    ) -> Result<StageOutcome, StageError> {
        let Assembler { shards, sheet, rows, rejects, layout, .. } = self;
        let t = params.frames;
        let shard_names = shards.finish()?;
        if rows.is_empty() {
            let first = rejects.first().map(|r| r.reason.as_str()).unwrap_or("");
            return Err(StageError::msg(format!(
                "extract: none of the {} clips could be extracted; first problem: {first}",
                rejects.len()
            )));
        }
        if params.strict {
            if let Some(r) = rejects.first() {
                return Err(StageError::msg(format!("extract (strict): {}", r.reason)));
            }
        }

        write_index(&out.join(INDEX_FILE), &rows)?;
        let qa = out.join("qa");
        std::fs::create_dir_all(&qa).map_err(|e| StageError::with_source(format!("{}: cannot create", qa.display()), e))?;
        write_detection_csv(&qa.join("detection.csv"), &rows)?;
        sheet.write(&qa.join("contact_sheet.png"))?;
        write_rejects(&out.join("rejects.parquet"), &rejects)?;

        let detection = summarize_detection(&rows, t);
        let report = ExtractReport {
            params: canonical.clone(),
            clips_in: rows.len() + rejects.len(),
            extracted: rows.len(),
            rejected: rejects.len(),
            rejects: report_value(&rejects)?,
            detection: report_value(&detection)?,
            padded_clips: rows.iter().filter(|r| r.padded).count(),
            redecoded_clips: rows.iter().filter(|r| r.decode_passes > 1).count(),
            shards: shard_names,
            tensor: report_value(&layout)?,
            sampling: "frame i of T = decoded frame floor((2i+1)*N/(2T)), N = frames ffmpeg decoded; N < T repeats frames (padded)".into(),
            crop: "square centred on the median face box, side = max(w,h)*(1+2*margin), edge pixels replicated outside the frame; no face in any frame: centred square of the shorter side (fallback)".into(),
            detector: report_value(&settings)?,
        };
        report.write(out)?;

        Ok(StageOutcome::new(format!(
            "{} clips extracted, {} rejected; faces found in {:.1}% of clips ({:.1}% of the frames checked), {} fallback; {} shard(s)",
            rows.len(),
            rejects.len(),
            100.0 * detection.clip_detection_rate,
            100.0 * detection.frame_detection_rate,
            detection.fallback_clips,
            report.shards.len()
        )))
    }
}

fn summarize_detection(rows: &[IndexRow], t: u32) -> DetectionSummary {
    let with_face = rows.iter().filter(|r| !r.fallback).count();
    let frames_found: i64 = rows.iter().map(|r| r.face_found_frames).sum();
    let frames_checked: i64 = rows.iter().map(|r| r.face_checked_frames).sum();
    let mut scores: Vec<f32> = rows.iter().filter(|r| !r.fallback).map(|r| r.detect_score).collect();
    scores.sort_by(f32::total_cmp);
    DetectionSummary {
        clip_detection_rate: with_face as f64 / rows.len().max(1) as f64,
        frame_detection_rate: frames_found as f64 / frames_checked.max(1) as f64,
        frames_checked: frames_checked as f64 / (rows.len().max(1) as f64 * f64::from(t)),
        clips_with_face: with_face,
        fallback_clips: rows.len() - with_face,
        median_detect_score: scores.get(scores.len() / 2).copied().unwrap_or(0.0),
    }
}

fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<(), StageError> {
    let col = |f: fn(&Reject) -> &str| Arc::new(StringArray::from_iter_values(rejects.iter().map(f))) as ArrayRef;
    write_columns(path, vec![("clip_id", col(|r| &r.clip_id)), ("source", col(|r| &r.source)), ("reason", col(|r| &r.reason))])
}

/// One clip of the scan through the preprocessing, with its index row. The error names the
/// file and the problem.
fn extract_clip(
    clip: &ClipRecord,
    params: &ExtractParams,
    ctx: &StageContext<'_>,
    preprocessor: &ClipPreprocessor,
) -> Result<Extracted, StageError> {
    // A recorded path may point into an upstream artifact this machine has to fetch first.
    let path = ctx.locate_recorded(PathBuf::from(&clip.source))?;
    let hint = u64::try_from(clip.frame_count).ok();
    let ClipTensor { tensor, report } = preprocessor.clip(&path, hint)?;
    let (bx, by, bw, bh, score) = match &report.face {
        Some(face) => (face.x, face.y, face.w, face.h, face.score),
        None => (f32::NAN, f32::NAN, f32::NAN, f32::NAN, 0.0),
    };
    let row = IndexRow {
        clip_id: clip.clip_id.clone(),
        source: clip.source.clone(),
        actor: i64::from(clip.actor),
        label: i64::from(clip.label),
        emotion: clip.emotion.clone(),
        intensity: i64::from(clip.intensity),
        statement: i64::from(clip.statement),
        repetition: i64::from(clip.repetition),
        vocal_channel: i64::from(clip.vocal_channel),
        shard: String::new(),
        tensor: clip.clip_id.clone(),
        frames: i64::from(params.frames),
        size: i64::from(params.size),
        box_x: bx,
        box_y: by,
        box_w: bw,
        box_h: bh,
        detect_score: score,
        face_found_frames: i64::from(report.face_found_frames),
        face_checked_frames: i64::from(report.face_checked_frames),
        fallback: report.face.is_none(),
        crop_x: report.square.x,
        crop_y: report.square.y,
        crop_side: report.square.side as i64,
        source_width: report.source_width as i64,
        source_height: report.source_height as i64,
        decoded_frames: report.decoded_frames as i64,
        padded: report.padded,
        decode_passes: report.decode_passes as i64,
    };
    Ok(Extracted { row, tensor })
}

/// A part of `extract.json` whose type is this crate's, as the JSON the report holds.
fn report_value(part: &impl serde::Serialize) -> Result<serde_json::Value, StageError> {
    serde_json::to_value(part).map_err(|e| StageError::with_source(EXTRACT_REPORT_FILE, e))
}
