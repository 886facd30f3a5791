//! The files one stage writes and another reads, each with one typed row, one writer and one
//! reader, so no stage guesses another's files:
//!
//! | file | written by | read by | here |
//! |---|---|---|---|
//! | `clips.parquet` | scan | extract | [`clips`] |
//! | `index.parquet`, `shards/*.safetensors`, `extract.json` | extract | split, train, evaluate, report, predict | [`tensor_cache`] |
//! | `assignment.parquet` | split | train, evaluate, models trained elsewhere | [`assignment`] |
//! | `history.parquet`, `history.csv` | train | evaluate, report | [`history`] |
//! | `model.json` | train, models trained elsewhere | evaluate, predict, report, `pipeline predict` | [`model_card`] |
//! | `predictions.parquet` | evaluate, models trained elsewhere | evaluate, report | [`predictions`] |
//! | `metrics.json` | evaluate | report, `pipeline runs`, `metrics diff` | [`metrics`] |
//!
//! [`parquet`] and [`json`] are the one Parquet and JSON helper every stage uses; [`testing`]
//! builds the tiny caches the tests of every stage read.

pub mod assignment;
pub mod clips;
pub mod history;
pub mod json;
pub mod metrics;
pub mod model_card;
pub mod parquet;
pub mod predictions;
pub mod tensor_cache;
#[doc(hidden)]
pub mod testing;

/// RAVDESS emotion names by label (0..7): the emotion codes 01..08 in a file name, and the
/// class order of every model.
pub const CLASS_NAMES: [&str; 8] = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"];
