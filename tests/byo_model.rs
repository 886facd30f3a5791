//! The example of README "Bring your own model" end to end: `examples/byo-model/pipeline.yaml`
//! (its model stages verbatim, on a tiny synthetic dataset) trains a PyTorch model in a `run:`
//! stage through `python/pipeline_dataset.py`, `evaluate` scores its predictions, and `report`
//! lists it beside the built-in architecture.
//!
//! Needs the venv of scripts/setup.sh (`$PIPELINE_TORCH_VENV`, default
//! `~/.cache/pipeline/torch-2.13.0`); the test fails, naming it, when it is missing.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::Workspace;
use stage_formats::parquet::Table;

const EXAMPLE: &str = include_str!("../examples/byo-model/pipeline.yaml");
const MODELS_MARKER: &str = "  # --- models";
const CONFIG: &str = "examples/byo-model/pipeline.yaml";

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("PIPELINE_TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pipeline/torch-2.13.0"));
    venv.join("bin/python")
}

/// A workspace laid out like the repository: the example's model stages after a tiny dataset in
/// `examples/byo-model/`, its script beside it, the Python module in `python/`.
fn example_workspace() -> Workspace {
    let start = EXAMPLE.find(MODELS_MARKER).expect("the example marks where its model stages begin");
    let yaml = common::tiny_dataset(common::TRAINABLE_SYNTH) + &EXAMPLE[start..];
    // Workspace::new also writes a root pipeline.yaml; the runs below name the example's.
    let ws = Workspace::new(&yaml);
    ws.write(CONFIG, &yaml);
    ws.write("examples/byo-model/train_small.py", include_str!("../examples/byo-model/train_small.py"));
    ws.write("python/pipeline_dataset.py", include_str!("../python/pipeline_dataset.py"));
    ws
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_pytorch_model_is_evaluated_and_reported_beside_a_built_in_one() {
    let python = venv_python();
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh or set PIPELINE_TORCH_VENV", python.display());
    let ws = example_workspace();
    let run = ws.pipeline(&["--config", CONFIG, "run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = common::outputs_in(&ws.path().join("examples/byo-model/.pipeline"));
    let dir = |instance: &str| out.get(instance).unwrap_or_else(|| panic!("no artifact of {instance}: {:?}", out.keys()));

    // The run: stage's output follows the contract.
    let card = json(&dir("train_pytorch").join("model.json"));
    assert_eq!((card["kind"].as_str(), card["arch"].as_str()), (Some("predictions"), Some("pytorch_tiny3d")), "{card}");
    assert!(dir("train_pytorch").join("history.parquet").is_file());

    // Its metrics are those of its predictions against the split's truth.
    let assignment = Table::read(&dir("split").join("assignment.parquet")).unwrap();
    let (ids, labels, splits) =
        (assignment.strings("clip_id").unwrap(), assignment.integers("label").unwrap(), assignment.strings("split").unwrap());
    let truth: HashMap<&str, i64> =
        ids.iter().zip(&labels).zip(&splits).filter(|(_, s)| s.as_str() == "test").map(|((id, &l), _)| (id.as_str(), l)).collect();
    let predictions = Table::read(&dir("train_pytorch").join("predictions.parquet")).unwrap();
    let predicted: Vec<(String, i64)> =
        predictions.strings("clip_id").unwrap().into_iter().zip(predictions.integers("predicted").unwrap()).collect();
    assert_eq!(predicted.len(), truth.len(), "one prediction per test clip");
    let mut confusion = vec![vec![0u64; 8]; 8];
    for (id, p) in &predicted {
        confusion[truth[id.as_str()] as usize][*p as usize] += 1;
    }
    let correct: u64 = (0..8).map(|c| confusion[c][c]).sum();
    let metrics = json(&dir("evaluate_pytorch").join("metrics.json"));
    assert_eq!(metrics["model"], "train_pytorch");
    assert_eq!(metrics["n"], truth.len() as u64);
    assert_eq!(metrics["correct"], correct);
    assert_eq!(metrics["accuracy"].as_f64().unwrap(), correct as f64 / truth.len() as f64);
    let low = metrics["accuracy_ci"]["low"].as_f64().unwrap();
    let high = metrics["accuracy_ci"]["high"].as_f64().unwrap();
    assert!(low <= metrics["accuracy"].as_f64().unwrap() && high >= metrics["accuracy"].as_f64().unwrap() && high > low, "{metrics}");
    assert_eq!(serde_json::to_value(&confusion).unwrap(), metrics["confusion"]);
    for file in ["predictions.parquet", "per_class.csv", "confusion.csv", "confusion.png", "per_class_accuracy.png", "curves.png"] {
        assert!(dir("evaluate_pytorch").join(file).is_file(), "evaluate_pytorch wrote no {file}");
    }

    // The report lists it beside the built-in architecture, with its card's numbers and plots.
    let report = dir("report");
    let comparison = json(&report.join("comparison.json"));
    let models = comparison["models"].as_array().unwrap();
    let row = |arch: &str| models.iter().find(|m| m["arch"] == arch).unwrap_or_else(|| panic!("no {arch} row: {comparison}"));
    let python_row = row("pytorch_tiny3d");
    assert_eq!(python_row["model"], "evaluate_pytorch");
    assert_eq!(python_row["accuracy"], metrics["accuracy"]);
    assert_eq!(python_row["n_test"], metrics["n"]);
    assert_eq!(
        (python_row["epochs_run"].as_u64(), python_row["frames"].as_u64(), python_row["size"].as_u64()),
        (Some(30), Some(2), Some(32))
    );
    assert!(python_row["parameter_count"].as_u64().unwrap() > 0 && python_row["reference_accuracy"].is_null(), "{python_row}");
    assert_eq!(row("early_fusion_cnn")["model"], "evaluate[arch=early_fusion_cnn]");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| evaluate_pytorch | pytorch_tiny3d | 2 | 32 | no |"), "{md}");
    assert!(md.contains("| arch=early_fusion_cnn | early_fusion_cnn |"), "{md}");
    for plot in ["evaluate_pytorch-confusion.png", "evaluate_pytorch-curves.png", "accuracy_comparison.png"] {
        assert!(report.join("plots").join(plot).is_file(), "the report has no {plot}");
    }

    // Everything is cached; editing the Python module makes the PyTorch stage stale.
    let again = ws.pipeline(&["--config", CONFIG, "run"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("summary: 0 ran"), "a second run recomputed something:\n{}", again.stderr);
    let module = ws.path().join("python/pipeline_dataset.py");
    let text = std::fs::read_to_string(&module).unwrap();
    std::fs::write(&module, text + "# edited\n").unwrap();
    let status = ws.pipeline(&["--config", CONFIG, "status", "train_pytorch"]);
    assert!(status.stdout.contains("deps changed: ../../python/pipeline_dataset.py"), "{}{}", status.stdout, status.stderr);
}
