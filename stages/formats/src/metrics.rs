//! `metrics.json`: what `evaluate` found about one model on one test set. Written by
//! `evaluate`, read by `report`; `metrics diff` compares any two of them (it reads them as
//! loose JSON, so files of other stages that share the name compare too). The definitions of
//! the values are in `stages_report::metrics`, which computes them.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stage_api::StageError;

/// The metrics file at the top of an `evaluate` output.
pub const METRICS_FILE: &str = "metrics.json";

/// A confidence interval for a proportion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Metrics of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name (e.g. `happy`); `metrics diff` keys per-class values by it.
    pub class: String,
    /// Class index (the label value).
    pub label: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Clips of this class in the truth.
    pub support: u64,
    /// Clips predicted as this class.
    pub predicted: u64,
}

/// Everything `metrics.json` holds about one model on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The model's name (set by the caller; empty from [`compute`]).
    #[serde(default)]
    pub model: String,
    /// Number of evaluated clips.
    pub n: u64,
    pub correct: u64,
    pub accuracy: f64,
    /// 95 % Wilson score interval of the accuracy.
    pub accuracy_ci: Interval,
    /// Always `"wilson-95"`: says how `accuracy_ci` was computed.
    pub ci_method: String,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    /// Unweighted average recall over the classes present in the truth.
    pub uar: f64,
    /// Mean negative log-probability of the true class, when probabilities were given.
    pub log_loss: Option<f64>,
    pub class_names: Vec<String>,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// `confusion` with each row divided by its sum (rows without support are zeros).
    pub confusion_normalized: Vec<Vec<f64>>,
}

/// Writes `<dir>/metrics.json`.
pub fn write_metrics(dir: &Path, metrics: &Metrics) -> Result<(), StageError> {
    crate::json::write_json(&dir.join(METRICS_FILE), metrics)
}

/// Reads `<dir>/metrics.json`; an error names the file and what is wrong with it.
pub fn read_metrics(dir: &Path) -> Result<Metrics, StageError> {
    crate::json::read_json(&dir.join(METRICS_FILE))
}
