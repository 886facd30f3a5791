//! Builders shared by the split and train tests: a tiny tensor cache with a learnable toy
//! pattern, and a runner that calls a stage the way the engine does.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use stage_api::{
    NoProgress, Params, Progress, Stage, StageContext, StageError, StageInput, StageOutcome,
};
use stages_learn::cache::testing::{write_cache, FakeClip};

pub const FRAMES: i64 = 4;
pub const SIZE: i64 = 32;

/// The colour of each toy class: a bright square of this colour on a noisy grey field.
const PALETTE: [[u8; 3]; 8] = [
    [230, 30, 30],
    [30, 230, 30],
    [30, 30, 230],
    [230, 230, 30],
    [230, 30, 230],
    [30, 230, 230],
    [250, 250, 250],
    [5, 5, 5],
];

/// A clip of class `label`: noisy background (a tiny LCG seeded by `seed`) with a 14x14
/// square of the class colour at a position that moves a little from frame to frame.
pub fn toy_clip(label: i64, seed: u64, frames: i64, size: i64) -> Vec<u8> {
    let (t, s) = (frames as usize, size as usize);
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
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
pub fn toy_cache_sized(
    dir: &Path,
    groups: &[(i64, &[i64])],
    per_class: usize,
    frames: i64,
    size: i64,
) -> PathBuf {
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

/// JSON object literal to params.
pub fn params(json: serde_json::Value) -> Params {
    match json {
        serde_json::Value::Object(map) => map,
        other => panic!("params must be an object, got {other}"),
    }
}

pub fn input(need: &str, dir: &Path) -> StageInput {
    StageInput {
        need: need.into(),
        instance: need.into(),
        params: Params::new(),
        dir: dir.to_path_buf(),
    }
}

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

/// Resolves `params` and runs `stage` into `out` (created empty).
pub fn run_stage(
    stage: &dyn Stage,
    params: Params,
    inputs: &[StageInput],
    out: &Path,
) -> Result<StageOutcome, StageError> {
    run_stage_with(stage, params, inputs, out, &NoProgress)
}

/// [`run_stage`] reporting to `progress`.
pub fn run_stage_with(
    stage: &dyn Stage,
    params: Params,
    inputs: &[StageInput],
    out: &Path,
    progress: &dyn Progress,
) -> Result<StageOutcome, StageError> {
    let resolved = stage
        .resolve_params(&params)
        .map_err(|e| StageError::msg(e.message))?;
    std::fs::create_dir_all(out).unwrap();
    let base = out.parent().unwrap_or(out);
    let ctx = StageContext {
        params: &resolved,
        inputs,
        out_dir: out,
        base_dir: base,
        progress,
        threads: 1,
        artifacts: &stage_api::SameStore,
    };
    stage.run(&ctx)
}

/// Runs `train` with `with` on the cache in `root/extract` and the split in `root/split`,
/// into `root/name`.
pub fn train_in(root: &Path, name: &str, with: serde_json::Value) -> Result<PathBuf, StageError> {
    let (cache, split) = (root.join("extract"), root.join("split"));
    let out = root.join(name);
    run_stage(&stages_learn::train::TrainStage, params(with), &[input("extract", &cache), input("split", &split)], &out)?;
    Ok(out)
}

/// The per-epoch curves of a trained model: train loss and accuracy, val loss and accuracy, lr.
pub fn history(dir: &Path) -> Vec<Vec<f64>> {
    let t = stages_learn::table::Table::read(&dir.join("history.parquet")).unwrap();
    ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"].iter().map(|c| t.floats(c).unwrap()).collect()
}
