//! Reading the `extract` stage's tensor cache: `index.parquet` (one row per clip) and the
//! memory-mapped safetensors shards that hold each clip as a uint8 tensor `[T, S, S, 3]`.
//!
//! [`read_cache_index`] gives the rows; [`ClipLoader`] maps every shard once, checks each
//! clip's dtype and shape against the index, and then hands out clips as byte slices straight
//! from the page cache, so an epoch costs no decoding and no copies beyond the batch itself.
//! The training and evaluation stages both read the cache through this module.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use stage_api::StageError;

use crate::table::Table;

/// The name of the index in an `extract` output.
pub const INDEX_FILE: &str = "index.parquet";

/// One row of `index.parquet`: a clip and where its tensor lives.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheClip {
    pub clip_id: String,
    pub actor: i64,
    /// Emotion label 0..7 (neutral calm happy sad angry fearful disgust surprised).
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
}

/// Reads `<dir>/index.parquet`.
pub fn read_cache_index(dir: &Path) -> Result<Vec<CacheClip>, StageError> {
    let path = dir.join(INDEX_FILE);
    if !path.is_file() {
        return Err(StageError::msg(format!("{}: missing; is `{}` the output of an `extract` stage?", path.display(), dir.display())));
    }
    let table = Table::read(&path)?;
    let clip_id = table.strings("clip_id")?;
    let actor = table.ints("actor")?;
    let label = table.ints("label")?;
    let emotion = table.strings("emotion")?;
    let intensity = table.ints("intensity")?;
    let statement = table.ints("statement")?;
    let repetition = table.ints("repetition")?;
    let vocal_channel = table.ints("vocal_channel")?;
    let shard = table.strings("shard")?;
    let tensor = table.strings("tensor")?;
    let frames = table.ints("frames")?;
    let size = table.ints("size")?;
    let clips: Vec<CacheClip> = (0..table.num_rows())
        .map(|i| CacheClip {
            clip_id: clip_id[i].clone(),
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
        })
        .collect();
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
pub fn cache_geometry(dir: &Path, clips: &[CacheClip]) -> Result<(i64, i64), StageError> {
    let first =
        clips.first().ok_or_else(|| StageError::msg(format!("{}: the cache index has no clips", dir.join(INDEX_FILE).display())))?;
    if let Some(odd) = clips.iter().find(|c| (c.frames, c.size) != (first.frames, first.size)) {
        return Err(StageError::msg(format!(
            "{}: clips of different shapes in one cache: `{}` has T={} S={}, `{}` has T={} S={}",
            dir.join(INDEX_FILE).display(),
            first.clip_id,
            first.frames,
            first.size,
            odd.clip_id,
            odd.frames,
            odd.size
        )));
    }
    if first.frames < 1 || first.size < 1 {
        return Err(StageError::msg(format!("{}: invalid clip shape T={} S={}", dir.join(INDEX_FILE).display(), first.frames, first.size)));
    }
    Ok((first.frames, first.size))
}

/// Where one clip's bytes live.
#[derive(Debug, Clone, Copy)]
struct Slot {
    shard: usize,
    start: usize,
    end: usize,
}

/// The memory-mapped shards of a cache, indexed by clip id.
pub struct ClipLoader {
    shards: Vec<Mmap>,
    slots: HashMap<String, Slot>,
    frames: i64,
    size: i64,
}

impl ClipLoader {
    /// Maps the shards that `clips` refer to and checks every clip's tensor (present, uint8,
    /// shape `[T, S, S, 3]`).
    pub fn open(dir: &Path, clips: &[CacheClip]) -> Result<Self, StageError> {
        let (frames, size) = cache_geometry(dir, clips)?;
        let expected: Vec<usize> = vec![frames as usize, size as usize, size as usize, 3];
        let mut shard_ids: HashMap<&str, usize> = HashMap::new();
        let mut shards = Vec::new();
        let mut headers = Vec::new();
        let mut paths = Vec::new();
        let mut slots = HashMap::with_capacity(clips.len());
        for clip in clips {
            let shard = match shard_ids.get(clip.shard.as_str()) {
                Some(&k) => k,
                None => {
                    let path = shard_path(dir, &clip.shard);
                    let map = map_file(&path)?;
                    let (n, metadata) = SafeTensors::read_metadata(&map)
                        .map_err(|e| StageError::msg(format!("{}: not a valid safetensors file: {e}", path.display())))?;
                    shards.push(map);
                    headers.push((n, metadata));
                    paths.push(path);
                    shard_ids.insert(clip.shard.as_str(), shards.len() - 1);
                    shards.len() - 1
                }
            };
            let (n, metadata) = &headers[shard];
            let info = metadata.info(&clip.tensor).ok_or_else(|| {
                StageError::msg(format!("{}: no tensor `{}` for clip `{}`", paths[shard].display(), clip.tensor, clip.clip_id))
            })?;
            if info.dtype != Dtype::U8 || info.shape != expected {
                return Err(StageError::msg(format!(
                    "{}: tensor `{}` is {:?} {:?}, expected U8 {:?} (T={frames}, S={size} from the index)",
                    paths[shard].display(),
                    clip.tensor,
                    info.dtype,
                    info.shape,
                    expected
                )));
            }
            let base = 8 + n;
            let (start, end) = (base + info.data_offsets.0, base + info.data_offsets.1);
            slots.insert(clip.clip_id.clone(), Slot { shard, start, end });
        }
        Ok(Self { shards, slots, frames, size })
    }

    /// Frames per clip (T).
    pub fn frames(&self) -> i64 {
        self.frames
    }

    /// Frame side (S).
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Bytes per clip (`T * S * S * 3`).
    pub fn clip_len(&self) -> usize {
        (self.frames * self.size * self.size * 3) as usize
    }

    /// The raw `[T, S, S, 3]` bytes of a clip.
    pub fn clip(&self, clip_id: &str) -> Result<&[u8], StageError> {
        let slot = self.slots.get(clip_id).ok_or_else(|| StageError::msg(format!("clip `{clip_id}` is not in the tensor cache")))?;
        Ok(&self.shards[slot.shard][slot.start..slot.end])
    }

    /// The bytes of `[B, T, S, S, 3]` holding the given clips in order, and that shape.
    pub fn batch_bytes(&self, clip_ids: &[&str]) -> Result<(Vec<u8>, [i64; 5]), StageError> {
        let mut bytes = Vec::with_capacity(clip_ids.len() * self.clip_len());
        for id in clip_ids {
            bytes.extend_from_slice(self.clip(id)?);
        }
        let (t, s) = (self.frames, self.size);
        Ok((bytes, [clip_ids.len() as i64, t, s, s, 3]))
    }
}

fn shard_path(dir: &Path, shard: &str) -> PathBuf {
    let inside = dir.join("shards").join(shard);
    if inside.is_file() {
        inside
    } else {
        dir.join(shard)
    }
}

fn map_file(path: &Path) -> Result<Mmap, StageError> {
    let file = File::open(path).map_err(|e| StageError::with_source(format!("{}: cannot open shard", path.display()), e))?;
    // SAFETY: published stage outputs are immutable (the engine never rewrites them), so the
    // mapping does not change under us.
    unsafe { Mmap::map(&file) }.map_err(|e| StageError::with_source(format!("{}: cannot map shard", path.display()), e))
}

/// Test helper: writes a tiny cache (index + one shard) from in-memory clips.
#[doc(hidden)]
pub mod testing {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, Float32Array, Int32Array, StringArray};

    use super::*;

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
        let shards = dir.join("shards");
        std::fs::create_dir_all(&shards).map_err(|e| StageError::with_source("create shards", e))?;
        let shape = vec![frames as usize, size as usize, size as usize, 3];
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = clips
            .iter()
            .map(|c| {
                let view = safetensors::tensor::TensorView::new(Dtype::U8, shape.clone(), &c.data)
                    .map_err(|e| StageError::msg(format!("clip {}: {e}", c.clip_id)))?;
                Ok((c.clip_id.clone(), view))
            })
            .collect::<Result<_, StageError>>()?;
        safetensors::tensor::serialize_to_file(views, None, &shards.join("shard-00000.safetensors"))
            .map_err(|e| StageError::msg(format!("write shard: {e}")))?;
        let n = clips.len();
        let strings = |f: &dyn Fn(&FakeClip) -> String| Arc::new(StringArray::from_iter_values(clips.iter().map(f))) as ArrayRef;
        let ints = |f: &dyn Fn(&FakeClip) -> i32| Arc::new(Int32Array::from_iter_values(clips.iter().map(f))) as ArrayRef;
        let floats = Arc::new(Float32Array::from(vec![0.0f32; n])) as ArrayRef;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("clip_id", strings(&|c| c.clip_id.clone())),
            ("source", strings(&|c| format!("/fake/{}.mp4", c.clip_id))),
            ("actor", ints(&|c| c.actor as i32)),
            ("label", ints(&|c| c.label as i32)),
            ("emotion", strings(&|c| EMOTIONS.get(c.label as usize).copied().unwrap_or("unknown").to_owned())),
            ("intensity", ints(&|_| 1)),
            ("statement", ints(&|_| 1)),
            ("repetition", ints(&|_| 1)),
            ("vocal_channel", ints(&|_| 1)),
            ("shard", strings(&|_| "shard-00000.safetensors".to_owned())),
            ("tensor", strings(&|c| c.clip_id.clone())),
            ("frames", ints(&|_| frames as i32)),
            ("size", ints(&|_| size as i32)),
            ("box_x", floats.clone()),
            ("box_y", floats.clone()),
            ("box_w", floats.clone()),
            ("box_h", floats.clone()),
            ("detect_score", floats),
            ("face_found_frames", ints(&|_| frames as i32)),
            ("face_checked_frames", ints(&|_| frames as i32)),
            ("fallback", Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef),
        ];
        let batch = crate::table::batch(columns)?;
        crate::table::write_parquet(&dir.join(INDEX_FILE), &batch)?;
        crate::table::write_json(&dir.join("extract.json"), &serde_json::json!({ "frames": frames, "size": size, "clips": n }))
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
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn clip(id: &str, actor: i64, label: i64, fill: u8) -> FakeClip {
        FakeClip { clip_id: id.into(), actor, label, data: vec![fill; 2 * 4 * 4 * 3] }
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
    fn missing_index_and_wrong_shape_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_cache_index(dir.path()).unwrap_err();
        assert!(err.message.contains("index.parquet"), "{}", err.message);
        write_cache(dir.path(), 2, 4, &[clip("a", 1, 0, 7)]).unwrap();
        let mut clips = read_cache_index(dir.path()).unwrap();
        clips[0].size = 8;
        let err = ClipLoader::open(dir.path(), &clips).err().unwrap();
        assert!(err.message.contains("expected U8 [2, 8, 8, 3]"), "{}", err.message);
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
