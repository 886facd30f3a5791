//! The `extract` stage's tensor cache, which `split`, `train`, `evaluate` and `report` read:
//!
//! - `index.parquet`: one [`IndexRow`] per clip (labels, where its tensor lives, and how it
//!   was cropped);
//! - `shards/shard-NNNNN.safetensors`: each clip as a uint8 tensor `[T, S, S, 3]`, written by
//!   [`ShardWriter`] and read, memory-mapped, by [`ClipLoader`];
//! - `extract.json`: the stage's report (parameters, counts, detection summary).
//!
//! The reader needs only the columns training uses (labels, shard, tensor, geometry); the
//! crop and detection columns default to "not recorded", so a cache built by another tool
//! (pandas + safetensors) is read too. `CACHE-FORMAT.md` in `stages/video` documents the
//! columns for such tools.

mod loader;
mod report;
mod shards;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float32Array, StringArray};
use stage_api::StageError;

pub use loader::ClipLoader;
pub use report::{read_extract_params, ExtractReport};
pub use shards::{ShardWriter, METADATA_KEY};

use crate::parquet::{int32_column, write_columns, Table};

/// The index in an `extract` output.
pub const INDEX_FILE: &str = "index.parquet";
/// The folder of the shards in an `extract` output.
pub const SHARDS_DIR: &str = "shards";
/// The `extract` stage's report in its output (also copied next to a trained model).
pub const EXTRACT_REPORT_FILE: &str = "extract.json";

/// One row of `index.parquet`: a clip, where its tensor lives, and how it was cropped.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    pub clip_id: String,
    pub source: String,
    pub actor: i64,
    /// Emotion label 0..7 (see [`crate::CLASS_NAMES`]).
    pub label: i64,
    pub emotion: String,
    pub intensity: i64,
    pub statement: i64,
    pub repetition: i64,
    pub vocal_channel: i64,
    /// Shard file name (inside `shards/`).
    pub shard: String,
    /// Tensor name inside the shard.
    pub tensor: String,
    /// Frames per clip (T).
    pub frames: i64,
    /// Frame side in pixels (S).
    pub size: i64,
    /// Smoothed face box in source pixels; NaN when `fallback`.
    pub box_x: f32,
    pub box_y: f32,
    pub box_w: f32,
    pub box_h: f32,
    /// Median of the per-frame best detector scores; 0 when `fallback`.
    pub detect_score: f32,
    /// Output frames (of T) with a face, among those the detector looked at.
    pub face_found_frames: i64,
    /// Output frames (of T) the detector looked at (see `detect_frames`).
    pub face_checked_frames: i64,
    pub fallback: bool,
    /// The square actually cropped (source pixels; may extend past the frame).
    pub crop_x: i64,
    pub crop_y: i64,
    pub crop_side: i64,
    pub source_width: i64,
    pub source_height: i64,
    /// Frames ffmpeg decoded (N).
    pub decoded_frames: i64,
    /// N < T: frames repeated by the sampling rule.
    pub padded: bool,
    pub decode_passes: i64,
}

impl IndexRow {
    /// A row with the labels and tensor location set and nothing recorded about the crop
    /// (tests, and tools that build a cache themselves).
    pub fn new(clip_id: &str, actor: i64, label: i64, shard: &str, frames: i64, size: i64) -> Self {
        Self {
            clip_id: clip_id.to_owned(),
            source: String::new(),
            actor,
            label,
            emotion: crate::CLASS_NAMES.get(label as usize).copied().unwrap_or("unknown").to_owned(),
            intensity: 1,
            statement: 1,
            repetition: 1,
            vocal_channel: 1,
            shard: shard.to_owned(),
            tensor: clip_id.to_owned(),
            frames,
            size,
            box_x: f32::NAN,
            box_y: f32::NAN,
            box_w: f32::NAN,
            box_h: f32::NAN,
            detect_score: 0.0,
            face_found_frames: 0,
            face_checked_frames: 0,
            fallback: true,
            crop_x: 0,
            crop_y: 0,
            crop_side: 0,
            source_width: 0,
            source_height: 0,
            decoded_frames: 0,
            padded: false,
            decode_passes: 0,
        }
    }
}

/// Writes `index.parquet` (rows in the given order; integers as int32, as always).
pub fn write_index(path: &Path, rows: &[IndexRow]) -> Result<(), StageError> {
    let s = |g: fn(&IndexRow) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(g))) as ArrayRef;
    let i = |name: &str, g: fn(&IndexRow) -> i64| int32_column(path, rows, name, |r| &r.clip_id, g);
    let x = |g: fn(&IndexRow) -> f32| Arc::new(Float32Array::from_iter_values(rows.iter().map(g))) as ArrayRef;
    let b = |g: fn(&IndexRow) -> bool| Arc::new(BooleanArray::from(rows.iter().map(g).collect::<Vec<_>>())) as ArrayRef;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("clip_id", s(|r| &r.clip_id)),
        ("source", s(|r| &r.source)),
        ("actor", i("actor", |r| r.actor)?),
        ("label", i("label", |r| r.label)?),
        ("emotion", s(|r| &r.emotion)),
        ("intensity", i("intensity", |r| r.intensity)?),
        ("statement", i("statement", |r| r.statement)?),
        ("repetition", i("repetition", |r| r.repetition)?),
        ("vocal_channel", i("vocal_channel", |r| r.vocal_channel)?),
        ("shard", s(|r| &r.shard)),
        ("tensor", s(|r| &r.tensor)),
        ("frames", i("frames", |r| r.frames)?),
        ("size", i("size", |r| r.size)?),
        ("box_x", x(|r| r.box_x)),
        ("box_y", x(|r| r.box_y)),
        ("box_w", x(|r| r.box_w)),
        ("box_h", x(|r| r.box_h)),
        ("detect_score", x(|r| r.detect_score)),
        ("face_found_frames", i("face_found_frames", |r| r.face_found_frames)?),
        ("face_checked_frames", i("face_checked_frames", |r| r.face_checked_frames)?),
        ("fallback", b(|r| r.fallback)),
        ("crop_x", i("crop_x", |r| r.crop_x)?),
        ("crop_y", i("crop_y", |r| r.crop_y)?),
        ("crop_side", i("crop_side", |r| r.crop_side)?),
        ("source_width", i("source_width", |r| r.source_width)?),
        ("source_height", i("source_height", |r| r.source_height)?),
        ("decoded_frames", i("decoded_frames", |r| r.decoded_frames)?),
        ("padded", b(|r| r.padded)),
        ("decode_passes", i("decode_passes", |r| r.decode_passes)?),
    ];
    write_columns(path, columns)
}

/// Reads an index file (`index.parquet`, or the rows of one part of a sharded extract).
pub fn read_index(path: &Path) -> Result<Vec<IndexRow>, StageError> {
    let t = Table::read(path)?;
    let (clip_id, emotion, shard, tensor) = (t.strings("clip_id")?, t.strings("emotion")?, t.strings("shard")?, t.strings("tensor")?);
    let (actor, label, frames, size) = (t.integers("actor")?, t.integers("label")?, t.integers("frames")?, t.integers("size")?);
    let (intensity, statement, repetition) = (t.integers("intensity")?, t.integers("statement")?, t.integers("repetition")?);
    let vocal_channel = t.integers("vocal_channel")?;
    let source = t.strings_or("source", "")?;
    let float = |name: &str, default: f64| -> Result<Vec<f32>, StageError> {
        Ok(t.floats_or(name, default)?.into_iter().map(|v| v as f32).collect())
    };
    let (box_x, box_y, box_w, box_h) =
        (float("box_x", f64::NAN)?, float("box_y", f64::NAN)?, float("box_w", f64::NAN)?, float("box_h", f64::NAN)?);
    let detect_score = float("detect_score", 0.0)?;
    let (found, checked) = (t.integers_or("face_found_frames", 0)?, t.integers_or("face_checked_frames", 0)?);
    let (fallback, padded) = (t.bools_or("fallback", true)?, t.bools_or("padded", false)?);
    let (crop_x, crop_y, crop_side) = (t.integers_or("crop_x", 0)?, t.integers_or("crop_y", 0)?, t.integers_or("crop_side", 0)?);
    let (source_width, source_height) = (t.integers_or("source_width", 0)?, t.integers_or("source_height", 0)?);
    let (decoded_frames, decode_passes) = (t.integers_or("decoded_frames", 0)?, t.integers_or("decode_passes", 0)?);
    Ok((0..t.num_rows())
        .map(|i| IndexRow {
            clip_id: clip_id[i].clone(),
            source: source[i].clone(),
            actor: actor[i],
            label: label[i],
            emotion: emotion[i].clone(),
            intensity: intensity[i],
            statement: statement[i],
            repetition: repetition[i],
            vocal_channel: vocal_channel[i],
            shard: shard[i].clone(),
            tensor: tensor[i].clone(),
            frames: frames[i],
            size: size[i],
            box_x: box_x[i],
            box_y: box_y[i],
            box_w: box_w[i],
            box_h: box_h[i],
            detect_score: detect_score[i],
            face_found_frames: found[i],
            face_checked_frames: checked[i],
            fallback: fallback[i],
            crop_x: crop_x[i],
            crop_y: crop_y[i],
            crop_side: crop_side[i],
            source_width: source_width[i],
            source_height: source_height[i],
            decoded_frames: decoded_frames[i],
            padded: padded[i],
            decode_passes: decode_passes[i],
        })
        .collect())
}

/// Reads `<dir>/index.parquet` of a published cache, checking that no clip appears twice.
pub fn read_cache_index(dir: &Path) -> Result<Vec<IndexRow>, StageError> {
    let path = dir.join(INDEX_FILE);
    if !path.is_file() {
        return Err(StageError::msg(format!("{}: missing; is `{}` the output of an `extract` stage?", path.display(), dir.display())));
    }
    let clips = read_index(&path)?;
    let mut seen = HashMap::new();
    for c in &clips {
        if let Some(previous) = seen.insert(c.clip_id.as_str(), c) {
            return Err(StageError::msg(format!(
                "{}: clip `{}` appears twice (shards {} and {})",
                path.display(),
                c.clip_id,
                previous.shard,
                c.shard
            )));
        }
    }
    Ok(clips)
}

/// The clip geometry every row of a cache shares: `(frames, size)`.
pub fn cache_geometry(dir: &Path, clips: &[IndexRow]) -> Result<(i64, i64), StageError> {
    let index = dir.join(INDEX_FILE);
    let first = clips.first().ok_or_else(|| StageError::msg(format!("{}: the cache index has no clips", index.display())))?;
    if let Some(odd) = clips.iter().find(|c| (c.frames, c.size) != (first.frames, first.size)) {
        return Err(StageError::msg(format!(
            "{}: clips of different shapes in one cache: `{}` has T={} S={}, `{}` has T={} S={}",
            index.display(),
            first.clip_id,
            first.frames,
            first.size,
            odd.clip_id,
            odd.frames,
            odd.size
        )));
    }
    if first.frames < 1 || first.size < 1 {
        return Err(StageError::msg(format!("{}: invalid clip shape T={} S={}", index.display(), first.frames, first.size)));
    }
    Ok((first.frames, first.size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{write_cache, FakeClip};

    fn clip(id: &str, actor: i64, label: i64, fill: u8) -> FakeClip {
        FakeClip { clip_id: id.into(), actor, label, data: vec![fill; 2 * 4 * 4 * 3] }
    }

    #[test]
    fn index_rows_round_trip_with_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        let mut row = IndexRow::new("01-02-03-01-01-01-07", 7, 2, "shard-00000.safetensors", 10, 112);
        (row.box_x, row.crop_side, row.fallback, row.decode_passes, row.source) = (3.5, 400, false, 2, "/v/a.mp4".into());
        write_index(&path, &[row.clone()]).unwrap();
        let back = read_index(&path).unwrap();
        assert_eq!((back[0].box_x, back[0].crop_side, back[0].fallback, back[0].decode_passes), (3.5, 400, false, 2));
        assert_eq!(
            (back[0].clip_id.as_str(), back[0].source.as_str(), back[0].emotion.as_str()),
            (row.clip_id.as_str(), "/v/a.mp4", "happy")
        );
        row.actor = i64::from(i32::MAX) + 1;
        let err = write_index(&path, &[row]).unwrap_err();
        assert!(err.message.contains("`actor`") && err.message.contains("int32"), "{}", err.message);
    }

    #[test]
    fn index_and_clips_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), 2, 4, &[clip("a", 1, 0, 7), clip("b", 2, 3, 9)]).unwrap();
        let clips = read_cache_index(dir.path()).unwrap();
        assert_eq!(clips.len(), 2);
        assert_eq!((clips[1].actor, clips[1].label, clips[1].emotion.as_str()), (2, 3, "sad"));
        let loader = ClipLoader::open(dir.path(), &clips).unwrap();
        assert_eq!(loader.clip("b").unwrap(), &[9u8; 96][..]);
        let (bytes, shape) = loader.batch_bytes(&["b", "a"]).unwrap();
        assert_eq!(shape, [2, 2, 4, 4, 3]);
        assert_eq!((bytes[0], bytes[96]), (9, 7));
        assert!(loader.clip("zzz").unwrap_err().message.contains("zzz"));
    }

    #[test]
    fn missing_index_duplicates_and_wrong_shape_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_cache_index(dir.path()).unwrap_err();
        assert!(err.message.contains("index.parquet"), "{}", err.message);
        write_cache(dir.path(), 2, 4, &[clip("a", 1, 0, 7)]).unwrap();
        let mut clips = read_cache_index(dir.path()).unwrap();
        clips[0].size = 8;
        let err = ClipLoader::open(dir.path(), &clips).err().unwrap();
        assert!(err.message.contains("expected U8 [2, 8, 8, 3]"), "{}", err.message);
        let twice = [clips[0].clone(), clips[0].clone()];
        write_index(&dir.path().join(INDEX_FILE), &twice).unwrap();
        let err = read_cache_index(dir.path()).unwrap_err();
        assert!(err.message.contains("`a` appears twice"), "{}", err.message);
    }

    #[test]
    fn corrupt_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), 2, 4, &[clip("a", 1, 0, 7)]).unwrap();
        let shard = dir.path().join("shards/shard-00000.safetensors");
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
        let clips = read_cache_index(dir.path()).unwrap();
        let err = ClipLoader::open(dir.path(), &clips).err().unwrap();
        assert!(err.message.contains("shard-00000.safetensors") && err.message.contains("not a valid"), "{}", err.message);
    }
}
