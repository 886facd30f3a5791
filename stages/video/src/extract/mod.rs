//! The `extract` stage (`uses: extract`, needs `scan`): T uniformly sampled frames per clip,
//! decoded once by ffmpeg, cropped around the face found by rustface, resized to S x S and
//! stored as uint8 `[T, S, S, 3]` tensors in safetensors shards with a Parquet index.
//!
//! One module per step, in pipeline order:
//! - the scan's `clips.parquet` is read with `stage_formats::clips`;
//! - [`sampling`]: which frames are kept (the uniform rule and short clips);
//! - [`decode`]: one ffmpeg process per clip returning only the sampled frames as RGB;
//! - [`face`]: rustface detection on a downscaled grey copy;
//! - [`crop`]: median smoothing, the square crop, fallback, borders, resize;
//! - [`one_clip`]: those steps for one video (what `pipeline predict` runs too);
//! - the shards and `index.parquet` are written with `stage_formats::tensor_cache`;
//! - [`qa`]: `qa/contact_sheet.png` and `qa/detection.csv`;
//! - [`stage`]: the [`ExtractStage`] that ties them together (parallel, deterministic).
//!
//! The on-disk format for consumers (Python included) is described in `CACHE-FORMAT.md`.

pub mod crop;
pub mod decode;
pub mod face;
pub mod one_clip;
pub mod qa;
pub mod sampling;
pub mod stage;

pub use stage::{run_extract, ExtractParams, ExtractStage};

/// Helpers for tests and tools that need a `scan`-style clip table without running `scan`.
pub mod testing {
    pub use stage_formats::clips::{write_clips_table, ClipRecord};
}
