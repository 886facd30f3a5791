//! Reads frames of clips back from the extract stage's tensor cache, for the misclassified
//! examples plot, through the cache's one reader (`stage_formats::tensor_cache`).

use std::path::{Path, PathBuf};

use image::RgbImage;
use safetensors::Dtype;
use stage_api::StageError;
use stage_formats::tensor_cache::{read_cache_index, ClipLoader, IndexRow, INDEX_FILE};

/// The index of one cache; shards are mapped when frames are asked for, and only those that
/// hold the clips asked for.
pub struct FrameCache {
    dir: PathBuf,
    rows: Vec<IndexRow>,
}

impl FrameCache {
    /// Reads `extract_dir/index.parquet`.
    pub fn open(extract_dir: &Path) -> Result<Self, StageError> {
        Ok(Self { dir: extract_dir.to_owned(), rows: read_cache_index(extract_dir)? })
    }

    /// `count` frames spread evenly over each clip in `clip_ids` (all frames when a clip has
    /// fewer), in the order of `clip_ids`.
    pub fn sample_frames(&self, clip_ids: &[&str], count: usize) -> Result<Vec<Vec<RgbImage>>, StageError> {
        let index = self.dir.join(INDEX_FILE);
        let wanted: Vec<IndexRow> = self.rows.iter().filter(|r| clip_ids.contains(&r.clip_id.as_str())).cloned().collect();
        if let Some(missing) = clip_ids.iter().find(|id| !wanted.iter().any(|r| r.clip_id == **id)) {
            return Err(StageError::msg(format!("{}: clip `{missing}` is not in the tensor cache", index.display())));
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let loader = ClipLoader::open(&self.dir, &wanted)?;
        let (t, s) = (loader.frames() as usize, loader.size() as usize);
        clip_ids
            .iter()
            .map(|id| {
                let bytes = loader.clip(id).map_err(|e| StageError::msg(format!("{}: {}", index.display(), e.message)))?;
                frames_of(Dtype::U8, &[t, s, s, 3], bytes, count, &format!("{}: clip `{id}`", index.display()))
            })
            .collect()
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

/// `count` frames of one clip's tensor; `clip` names it in the error.
fn frames_of(dtype: Dtype, shape: &[usize], data: &[u8], count: usize, clip: &str) -> Result<Vec<RgbImage>, StageError> {
    if dtype != Dtype::U8 {
        return Err(StageError::msg(format!("{clip} has dtype {dtype:?}, expected U8")));
    }
    let &[t, h, w, 3] = shape else {
        return Err(StageError::msg(format!("{clip} has shape {shape:?}, expected [T, S, S, 3]")));
    };
    let frame_len = h * w * 3;
    frame_indices(t, count)
        .into_iter()
        .map(|i| {
            let pixels = data[i * frame_len..(i + 1) * frame_len].to_vec();
            RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| StageError::msg(format!("{clip} frame {i} has the wrong size")))
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
        assert_eq!(
            frames_of(Dtype::F32, &[1, 2, 2, 3], &[0; 48], 6, "clip `a`").unwrap_err().message,
            "clip `a` has dtype F32, expected U8"
        );
        assert!(frames_of(Dtype::U8, &[2, 2, 3], &[0; 12], 6, "clip `a`").unwrap_err().message.contains("[T, S, S, 3]"));
        let frames = frames_of(Dtype::U8, &[2, 2, 2, 3], &(0..24).collect::<Vec<u8>>(), 6, "clip `a`").unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].get_pixel(0, 0).0, [12, 13, 14]);
    }
}
