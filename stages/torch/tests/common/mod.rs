//! Builders shared by the train tests: the toy tensor cache (`stage_formats::testing`),
//! the stage runner (`stage_api::testing`), and training helpers.

#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use stage_api::testing::{input, params, run_stage, run_stage_with};
use stage_api::{Progress, StageError};
pub use stage_formats::testing::{toy_cache, toy_cache_sized, toy_cache_with, toy_clip, FRAMES, SIZE};

/// Collects progress notes (and prints them, visible with `--nocapture`).
#[derive(Default)]
pub struct Notes(pub Mutex<Vec<String>>);

impl Progress for Notes {
    fn start(&self, _total: u64, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn note(&self, message: &str) {
        println!("{message}");
        self.0.lock().unwrap().push(message.to_owned());
    }
}

/// Runs `train` with `with` on the cache in `root/extract` and the split in `root/split`,
/// into `root/name`.
pub fn train_in(root: &Path, name: &str, with: serde_json::Value) -> Result<PathBuf, StageError> {
    let (cache, split) = (root.join("extract"), root.join("split"));
    let out = root.join(name);
    run_stage(&stages_torch::train::TRAIN, params(with), &[input("extract", &cache), input("split", &split)], &out)?;
    Ok(out)
}

/// The per-epoch curves of a trained model: train loss and accuracy, val loss and accuracy, lr.
pub fn history(dir: &Path) -> Vec<Vec<f64>> {
    let t = stage_formats::parquet::Table::read(&dir.join("history.parquet")).unwrap();
    ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"].iter().map(|c| t.floats(c).unwrap()).collect()
}
