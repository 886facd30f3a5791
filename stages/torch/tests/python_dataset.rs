//! `python/pipeline_dataset.py` (the PyTorch side of "bring your own model") against the Rust
//! side, with the venv's python (`$PIPELINE_TORCH_VENV`, default ~/.cache/pipeline/torch-2.13.0).
//!
//! On a tensor cache and a split made by the Rust code, `tests/python/dataset_parity.py` checks
//! that `CacheDataset` yields, for every split, the clips in the assignment's order with their
//! labels, and exactly the tensors the pipeline feeds its models (the cache reader, then
//! `preprocess::model_input`; and `to_unit_float` for `normalized=False`). Then the predictions
//! it writes for the test split are read back the way `evaluate` reads them.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{input, params, run_stage, toy_cache_sized};
use stages_torch::cache::{batch_tensor, read_cache_index, ClipLoader};
use stages_torch::external::{read_predictions, PredictionsCard};
use stages_torch::preprocess::{model_input, to_unit_float};
use stages_torch::split::{read_assignment, Split, SplitStage};
use tch::{Device, Tensor};

fn python() -> PathBuf {
    match std::env::var_os("PIPELINE_TORCH_VENV") {
        Some(venv) => PathBuf::from(venv).join("bin/python"),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pipeline/torch-2.13.0/bin/python"),
    }
}

#[test]
fn the_python_dataset_yields_what_the_models_are_fed_and_its_predictions_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let classes: &[i64] = &[0, 2, 5];
    let extract = toy_cache_sized(&dir.path().join("extract"), &[(1, classes), (2, classes), (3, classes)], 2, 3, 20);
    let split_dir = dir.path().join("split");
    let with = params(serde_json::json!({"train_actors": [1], "val_actors": [2], "test_actors": [3]}));
    run_stage(&SplitStage, with, &[input("extract", &extract)], &split_dir).unwrap();

    let loader = ClipLoader::open(&extract, &read_cache_index(&extract).unwrap()).unwrap();
    let assignment = read_assignment(&split_dir).unwrap();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut expected = serde_json::Map::new();
    for split in Split::ALL {
        let chosen: Vec<_> = assignment.iter().filter(|a| a.split == split).collect();
        let ids: Vec<&str> = chosen.iter().map(|a| a.clip_id.as_str()).collect();
        let images = batch_tensor(&loader, &ids).unwrap();
        // (contiguous: safetensors stores plain row-major data; the values are unchanged)
        tensors.push((split.as_str().to_owned(), model_input(&images, Device::Cpu).contiguous()));
        tensors.push((format!("{}_unit", split.as_str()), to_unit_float(&images, Device::Cpu).contiguous()));
        let labels: Vec<i64> = chosen.iter().map(|a| a.label).collect();
        expected.insert(split.as_str().into(), serde_json::json!({"clip_ids": ids, "labels": labels}));
    }
    let rust_file = dir.path().join("rust.safetensors");
    Tensor::write_safetensors(&tensors, &rust_file).unwrap();
    let expected_file = dir.path().join("expected.json");
    std::fs::write(&expected_file, serde_json::Value::Object(expected).to_string()).unwrap();

    let out = dir.path().join("predictions");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/dataset_parity.py");
    let module_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../python");
    let run = Command::new(python())
        .arg(script)
        .args([&extract, &split_dir, &rust_file, &expected_file, &out])
        .env("PYTHONPATH", module_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (set PIPELINE_TORCH_VENV or run scripts/setup.sh): {e}", python().display()));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "dataset_parity.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(stdout.matches("identical to the Rust side").count(), 6, "{stdout}");

    let card = PredictionsCard::read_if_any(&out).unwrap().expect("write_predictions writes a predictions card");
    assert_eq!((card.arch.as_str(), card.frames, card.size), ("parity", Some(3), Some(20)));
    let predictions = read_predictions(&out, &split_dir, &assignment, Split::Test).unwrap();
    let test: Vec<_> = assignment.iter().filter(|a| a.split == Split::Test).collect();
    assert_eq!(predictions.len(), test.len());
    for (p, a) in predictions.iter().zip(test) {
        assert_eq!((p.clip_id.as_str(), p.actor as i64, p.label), (a.clip_id.as_str(), a.actor, a.label));
        assert_eq!(p.predicted, (a.label + 1) % 8, "{p:?}");
        assert!((p.probs[p.predicted as usize] - 0.3).abs() < 1e-6, "{p:?}");
    }
}
