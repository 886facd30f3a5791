//! Test fixtures: tiny tensor caches written through the real writers ([`ShardWriter`],
//! [`write_index`]), for the tests of every stage that reads a cache.

use std::path::{Path, PathBuf};

use stage_api::StageError;

use crate::json::write_json;
use crate::tensor_cache::{write_index, IndexRow, ShardWriter, EXTRACT_REPORT_FILE, INDEX_FILE, SHARDS_DIR};

/// A clip to write: metadata plus its `[T, S, S, 3]` bytes.
pub struct FakeClip {
    pub clip_id: String,
    pub actor: i64,
    pub label: i64,
    pub data: Vec<u8>,
}

/// The RAVDESS emotion names by label.
pub const EMOTIONS: [&str; 8] = crate::CLASS_NAMES;

/// Writes `index.parquet` and `shards/shard-00000.safetensors` (plus `extract.json`) into `dir`.
pub fn write_cache(dir: &Path, frames: i64, size: i64, clips: &[FakeClip]) -> Result<(), StageError> {
    write_cache_in_shards(dir, frames, size, clips, u64::MAX)
}

/// [`write_cache`] with shards of at most `shard_bytes` (a shard holds at least one clip).
pub fn write_cache_in_shards(dir: &Path, frames: i64, size: i64, clips: &[FakeClip], shard_bytes: u64) -> Result<(), StageError> {
    let shape = [frames as usize, size as usize, size as usize, 3];
    let mut shards = ShardWriter::new(&dir.join(SHARDS_DIR), shard_bytes, "{}".to_owned())?;
    let mut rows = Vec::with_capacity(clips.len());
    for c in clips {
        let shard = shards.add(&c.clip_id, &shape, &c.data)?;
        let mut row = IndexRow::new(&c.clip_id, c.actor, c.label, &shard, frames, size);
        row.source = format!("/fake/{}.mp4", c.clip_id);
        (row.box_x, row.box_y, row.box_w, row.box_h) = (0.0, 0.0, 0.0, 0.0);
        (row.face_found_frames, row.face_checked_frames, row.fallback) = (frames, frames, false);
        rows.push(row);
    }
    shards.finish()?;
    write_index(&dir.join(INDEX_FILE), &rows)?;
    write_json(&dir.join(EXTRACT_REPORT_FILE), &serde_json::json!({ "frames": frames, "size": size, "clips": clips.len() }))
}

/// Tensor geometry of the toy caches: T frames of SIZE x SIZE.
pub const FRAMES: i64 = 4;
pub const SIZE: i64 = 32;

/// The colour of each toy class: a bright square of this colour on a noisy grey field.
const PALETTE: [[u8; 3]; 8] =
    [[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30], [230, 30, 230], [30, 230, 230], [250, 250, 250], [5, 5, 5]];

/// A clip of class `label`: noisy background (a tiny LCG seeded by `seed`) with a 14x14
/// square of the class colour at a position that moves a little from frame to frame.
pub fn toy_clip(label: i64, seed: u64, frames: i64, size: i64) -> Vec<u8> {
    let (t, s) = (frames as usize, size as usize);
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 56) as u8
    };
    let colour = PALETTE[label as usize];
    let mut data = vec![0u8; t * s * s * 3];
    let offset = (seed % 5) as usize;
    for f in 0..t {
        for y in 0..s {
            for x in 0..s {
                let (lo, hi) = (s * 6 / 32 + offset, s * 20 / 32 + offset);
                let inside = (y >= lo && y < hi) && (x >= lo + f && x < hi + f);
                for c in 0..3 {
                    let v = if inside { colour[c] } else { 90 + noise() / 4 };
                    data[((f * s + y) * s + x) * 3 + c] = v;
                }
            }
        }
    }
    data
}

/// Writes a cache with `per_class` clips of each class in `classes` for each actor.
pub fn toy_cache(dir: &Path, actors: &[i64], classes: &[i64], per_class: usize) -> PathBuf {
    let groups: Vec<(i64, &[i64])> = actors.iter().map(|&a| (a, classes)).collect();
    toy_cache_with(dir, &groups, per_class)
}

/// Writes a cache with `per_class` clips of each listed class for each listed actor.
pub fn toy_cache_with(dir: &Path, groups: &[(i64, &[i64])], per_class: usize) -> PathBuf {
    toy_cache_sized(dir, groups, per_class, FRAMES, SIZE)
}

/// [`toy_cache_with`] with another clip geometry.
pub fn toy_cache_sized(dir: &Path, groups: &[(i64, &[i64])], per_class: usize, frames: i64, size: i64) -> PathBuf {
    let mut clips = Vec::new();
    for &(actor, classes) in groups {
        for &label in classes {
            for k in 0..per_class {
                let seed = (actor * 1000 + label * 10 + k as i64) as u64;
                clips.push(FakeClip {
                    clip_id: format!("01-{:02}-01-01-{:02}-{:02}", label + 1, k + 1, actor),
                    actor,
                    label,
                    data: toy_clip(label, seed, frames, size),
                });
            }
        }
    }
    write_cache(dir, frames, size, &clips).unwrap();
    dir.to_path_buf()
}
