//! Builders for fake upstream outputs (evaluate, train, split, extract) written exactly as
//! the stage contract describes, so these tests need no other stage.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use stage_api::{Params, StageInput};
use stage_formats::testing::{write_cache_in_shards, FakeClip};
use stages_report::{History, HistoryRow, Prediction};

pub const CLASSES: [&str; 8] = stage_formats::CLASS_NAMES;

pub fn class_names() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    stage_formats::parquet::write_columns(path, columns).unwrap();
}

/// `n` test clips over 8 classes; clip `i` is wrong when `(i + 1) % wrong_every == 0`.
pub fn predictions(n: usize, wrong_every: usize) -> Vec<Prediction> {
    (0..n)
        .map(|i| {
            let label = (i % 8) as i64;
            let predicted = if (i + 1) % wrong_every == 0 { (label + 1) % 8 } else { label };
            let mut probs = vec![0.02f32; 8];
            probs[predicted as usize] = 0.86;
            let actor = 1 + (i % 2) as i32;
            // Unique per clip: VV-EE-II-SS-RR-AA with the clip number in the repetition field.
            let clip_id = format!("01-{:02}-01-01-{:02}-{actor:02}", label + 1, i / 8);
            Prediction { clip_id, actor, label, predicted, probs }
        })
        .collect()
}

pub fn history(epochs: i64) -> History {
    History {
        epochs: (1..=epochs)
            .map(|e| HistoryRow {
                epoch: e,
                train_loss: Some(2.0 / e as f64),
                train_accuracy: Some((0.15 * e as f64).min(0.95)),
                val_loss: Some(2.1 / e as f64 + 0.1),
                val_accuracy: Some((0.12 * e as f64).min(0.8)),
                lr: Some(1e-3),
                seconds: Some(3.0),
            })
            .collect(),
    }
}

pub fn params(json: &str) -> Params {
    serde_json::from_str(json).unwrap()
}

/// An input as the engine hands it over: kind `need`, and the matrix values the instance name
/// shows (`evaluate[arch=r3d18, fold=2]`), as the engine knows them from the plan.
pub fn input(need: &str, instance: &str, params_json: &str, dir: PathBuf) -> StageInput {
    let matrix = instance
        .split_once('[')
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .map(|inner| {
            inner
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| {
                    (k.trim().to_owned(), serde_json::from_str(v.trim()).unwrap_or_else(|_| serde_json::Value::String(v.trim().to_owned())))
                })
                .collect()
        })
        .unwrap_or_default();
    StageInput { need: need.into(), instance: instance.into(), kind: Some(need.into()), matrix, params: params(params_json), dir }
}

/// A train stage output: `model.json` and `history.parquet`.
pub fn fake_train(dir: &Path, arch: &str, extra: serde_json::Value, epochs: i64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut model = serde_json::json!({
        "arch": arch, "frames": 10, "size": 112, "num_classes": 8, "class_names": CLASSES,
        "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "augment": true,
        "parameter_count": 11_689_512u64, "train_seconds": 754.2, "epochs_run": epochs,
        "best_epoch": epochs - 1, "best_val_accuracy": 0.55, "device": "cpu",
    });
    if let serde_json::Value::Object(extra) = extra {
        model.as_object_mut().unwrap().extend(extra);
    }
    std::fs::write(dir.join("model.json"), serde_json::to_string_pretty(&model).unwrap()).unwrap();
    let h = history(epochs);
    let col = |f: fn(&HistoryRow) -> Option<f64>| Arc::new(Float64Array::from(h.epochs.iter().map(f).collect::<Vec<_>>())) as ArrayRef;
    write_parquet(
        &dir.join("history.parquet"),
        vec![
            ("epoch", Arc::new(Int32Array::from(h.epochs.iter().map(|e| e.epoch as i32).collect::<Vec<_>>())) as ArrayRef),
            ("train_loss", col(|e| e.train_loss)),
            ("train_accuracy", col(|e| e.train_accuracy)),
            ("val_loss", col(|e| e.val_loss)),
            ("val_accuracy", col(|e| e.val_accuracy)),
            ("lr", col(|e| e.lr)),
            ("seconds", col(|e| e.seconds)),
        ],
    );
}

/// A split stage output: `class_counts.parquet` and `actor_counts.parquet` for 24 actors,
/// actors 1-2 test, 3-4 val, the rest train, 60 clips each.
pub fn fake_split(dir: &Path) {
    let split_of = |a: i64| {
        if a <= 2 {
            "test"
        } else if a <= 4 {
            "val"
        } else {
            "train"
        }
    };
    let (mut s, mut l, mut e, mut c) = (vec![], vec![], vec![], vec![]);
    for (split, actors) in [("train", 20i64), ("val", 2), ("test", 2)] {
        for (label, name) in CLASSES.iter().enumerate() {
            s.push(split);
            l.push(label as i64);
            e.push(*name);
            c.push(actors * if label == 0 { 4 } else { 8 });
        }
    }
    write_parquet(
        &dir.join("class_counts.parquet"),
        vec![
            ("split", Arc::new(StringArray::from(s)) as ArrayRef),
            ("label", Arc::new(Int64Array::from(l)) as ArrayRef),
            ("emotion", Arc::new(StringArray::from(e)) as ArrayRef),
            ("count", Arc::new(Int64Array::from(c)) as ArrayRef),
        ],
    );
    let actors: Vec<i64> = (1..=24).collect();
    write_parquet(
        &dir.join("actor_counts.parquet"),
        vec![
            ("split", Arc::new(StringArray::from(actors.iter().map(|&a| split_of(a)).collect::<Vec<_>>())) as ArrayRef),
            ("actor", Arc::new(Int32Array::from(actors.iter().map(|&a| a as i32).collect::<Vec<_>>())) as ArrayRef),
            ("count", Arc::new(Int64Array::from(vec![60i64; 24])) as ArrayRef),
        ],
    );
}

/// An extract tensor cache with one `[t, s, s, 3]` uint8 tensor per clip, one shard per clip
/// (written by the cache's own writers); frame `f` of clip `i` is a gradient whose red channel
/// encodes `f`.
pub fn fake_extract(dir: &Path, clip_ids: &[String], t: usize, s: usize) {
    let clips: Vec<FakeClip> = clip_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut v = Vec::with_capacity(t * s * s * 3);
            for f in 0..t {
                for y in 0..s {
                    for x in 0..s {
                        v.extend([(f * 255 / t.max(1)) as u8, (x * 255 / s) as u8, ((y + i * 10) * 255 / (s + 100)) as u8]);
                    }
                }
            }
            FakeClip { clip_id: id.clone(), actor: 1, label: 0, data: v }
        })
        .collect();
    write_cache_in_shards(dir, t as i64, s as i64, &clips, (t * s * s * 3) as u64).unwrap();
}

/// Decodes a PNG, checks its size (when given) and that it has at least `min_colors` colours.
pub fn assert_png(path: &Path, size: Option<(u32, u32)>, min_colors: usize) -> image::RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    if let Some(size) = size {
        assert_eq!(img.dimensions(), size, "{}", path.display());
    }
    let colors: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colors.len() >= min_colors, "{}: only {} colours", path.display(), colors.len());
    img
}
