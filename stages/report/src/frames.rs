//! Reads frames of clips back from the extract stage's tensor cache, for the misclassified
//! examples plot.
//!
//! The cache is `index.parquet` (one row per clip with `clip_id`, `shard` = file name under
//! `shards/`, `tensor` = name inside that file) and `shards/shard-NNNNN.safetensors`, each clip
//! one `uint8` tensor `[T, S, S, 3]` (RGB). Each shard needed is read once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use safetensors::{Dtype, SafeTensors};
use stage_api::StageError;

use crate::io::{file_error, Table};

/// Where each clip's frames live.
pub struct FrameCache {
    shards_dir: PathBuf,
    /// clip_id → (shard file name, tensor name).
    index: HashMap<String, (String, String)>,
}

impl FrameCache {
    /// Reads `extract_dir/index.parquet`.
    pub fn open(extract_dir: &Path) -> Result<Self, StageError> {
        let table = Table::read(&extract_dir.join("index.parquet"))?;
        let ids = table.strings("clip_id")?;
        let shards = table.strings("shard")?;
        let tensors = table.strings("tensor")?;
        let index = ids.into_iter().zip(shards.into_iter().zip(tensors)).collect();
        Ok(Self { shards_dir: extract_dir.join("shards"), index })
    }

    /// `count` frames spread evenly over each clip in `clip_ids` (all frames when a clip has
    /// fewer), in the order of `clip_ids`.
    pub fn sample_frames(&self, clip_ids: &[&str], count: usize) -> Result<Vec<Vec<RgbImage>>, StageError> {
        let mut by_shard: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, id) in clip_ids.iter().enumerate() {
            let (shard, _) = self.index.get(*id).ok_or_else(|| {
                StageError::msg(format!(
                    "clip {id} is not in the extract index {}",
                    self.shards_dir.with_file_name("index.parquet").display()
                ))
            })?;
            by_shard.entry(shard.as_str()).or_default().push(i);
        }
        let mut out = vec![Vec::new(); clip_ids.len()];
        for (shard, members) in by_shard {
            let path = self.shards_dir.join(shard);
            let bytes = std::fs::read(&path).map_err(|e| file_error("reading", &path, e))?;
            let tensors = SafeTensors::deserialize(&bytes).map_err(|e| file_error("parsing safetensors", &path, e))?;
            for i in members {
                let (_, name) = &self.index[clip_ids[i]];
                let view = tensors.tensor(name).map_err(|e| file_error(&format!("reading tensor `{name}` from"), &path, e))?;
                out[i] = frames_of(view.dtype(), view.shape(), view.data(), count)
                    .map_err(|problem| StageError::msg(format!("{}: tensor `{name}` {problem}", path.display())))?;
            }
        }
        Ok(out)
    }
}

/// Indices of `count` frames spread evenly over `t` frames (first and last included).
pub fn frame_indices(t: usize, count: usize) -> Vec<usize> {
    match count {
        _ if t <= count => (0..t).collect(),
        0 => Vec::new(),
        1 => vec![0],
        // round(i·(t−1)/(count−1)) in integers.
        _ => (0..count).map(|i| (2 * i * (t - 1) + (count - 1)) / (2 * (count - 1))).collect(),
    }
}

fn frames_of(dtype: Dtype, shape: &[usize], data: &[u8], count: usize) -> Result<Vec<RgbImage>, String> {
    if dtype != Dtype::U8 {
        return Err(format!("has dtype {dtype:?}, expected U8"));
    }
    let &[t, h, w, 3] = shape else {
        return Err(format!("has shape {shape:?}, expected [T, S, S, 3]"));
    };
    let frame_len = h * w * 3;
    frame_indices(t, count)
        .into_iter()
        .map(|i| {
            let pixels = data[i * frame_len..(i + 1) * frame_len].to_vec();
            RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| format!("frame {i} has the wrong size"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spread_indices() {
        assert_eq!(frame_indices(10, 6), vec![0, 2, 4, 5, 7, 9]);
        assert_eq!(frame_indices(6, 6), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(frame_indices(4, 6), vec![0, 1, 2, 3]);
        assert_eq!(frame_indices(16, 6), vec![0, 3, 6, 9, 12, 15]);
        assert_eq!(frame_indices(5, 1), vec![0]);
    }

    #[test]
    fn bad_tensor_shapes_are_named() {
        assert!(frames_of(Dtype::F32, &[1, 2, 2, 3], &[0; 48], 6).unwrap_err().contains("F32"));
        assert!(frames_of(Dtype::U8, &[2, 2, 3], &[0; 12], 6).unwrap_err().contains("[T, S, S, 3]"));
        let frames = frames_of(Dtype::U8, &[2, 2, 2, 3], &(0..24).collect::<Vec<u8>>(), 6).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].get_pixel(0, 0).0, [12, 13, 14]);
    }
}
