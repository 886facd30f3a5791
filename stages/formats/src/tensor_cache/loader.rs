//! Reading a cache's clips: [`ClipLoader`] maps every shard once, checks each clip's dtype and
//! shape against the index, and then hands out clips as byte slices straight from the page
//! cache, so an epoch costs no decoding and no copies beyond the batch itself.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use stage_api::StageError;

use super::{cache_geometry, IndexRow, SHARDS_DIR};

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
    pub fn open(dir: &Path, clips: &[IndexRow]) -> Result<Self, StageError> {
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
    let inside = dir.join(SHARDS_DIR).join(shard);
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
