//! Evaluation and reporting for the emotion-recognition pipeline.
//!
//! - [`metrics`]: accuracy with a 95 % Wilson interval, macro-F1, UAR, per-class scores and
//!   the confusion matrix (pure computation).
//! - [`evaluation`]: what the `evaluate` stage writes for one model ([`write_evaluation`]);
//!   the stage itself, which runs the model, lives in `stages-torch` (run by the `pipeline-torch` worker).
//! - [`predictions`]: `predictions.parquet` (owned by `stage-formats`, re-exported), written by
//!   `evaluate` and read back from models trained elsewhere.
//! - [`plots`]: the PNG plots.
//! - [`report`]: the `report` stage ([`ReportStage`], `uses: report`), comparing every trained
//!   model in `report.md`, a self-contained `report.html`, `comparison.csv` and
//!   `comparison.json`.
//! - [`diff`]: `metrics diff` between two runs, like `dvc metrics diff`.
//!
//! This crate never runs a model and depends on no other stage crate.

pub mod diff;
pub mod evaluation;
pub mod frames;
mod html;
mod io;
pub mod literature;
pub mod metrics;
pub mod plots;
pub mod report;

pub use diff::{metrics_diff, render_diff_table, MetricChange};
pub use evaluation::{write_evaluation, write_misclassified_examples};
pub use metrics::{Metrics, MetricsError};
pub use report::ReportStage;
pub use stage_formats::history::{read_history, History, HistoryRow};
pub use stage_formats::predictions::{self, read_predictions, Prediction, PredictionRecord};
