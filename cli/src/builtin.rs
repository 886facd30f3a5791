//! The built-in domain of the `pipeline` binary: the stage crates' kinds, `predict` through the
//! `pipeline-torch` worker, `metrics diff` with the report crate's reading of metrics files.
//!
//! Nothing here links libtorch: `train`, `evaluate` and `predict` run in the worker process, so
//! every other command starts in milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use pipeline::domain::{Domain, Prediction};
use pipeline::registry::Registry;
use stage_api::{Stage, StageError};

pub struct Builtin;

impl Domain for Builtin {
    fn registry(&self) -> Registry {
        let mut stages: Vec<Arc<dyn Stage>> = vec![Arc::new(stages_report::ReportStage)];
        stages.extend(stages_video::stages().into_iter().map(Arc::from));
        stages.extend(stages_learn::stages().into_iter().map(Arc::from));
        Registry::from_stages(stages)
    }

    fn predict(&self, model_dir: &Path, videos: &[PathBuf], threads: usize) -> Result<Vec<Result<Prediction, StageError>>, StageError> {
        let worker = stage_api::worker::locate_worker(stages_learn::TORCH_WORKER)?;
        let mut command = Command::new(&worker);
        stage_api::process::die_with_parent(&mut command);
        let output = command
            .arg("predict")
            .arg(model_dir)
            .arg(threads.to_string())
            .args(videos)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| StageError::with_source(format!("cannot start the worker {}", worker.display()), e))?;
        if !output.status.success() {
            return Err(StageError::msg(format!("prediction with the model in {} failed ({})", model_dir.display(), output.status)));
        }
        parse_predictions(&output.stdout, videos.len())
    }

    fn metrics_diff(&self, old: &Path, new: &Path, all: bool, json: bool) -> Result<String, StageError> {
        let changes = stages_report::diff::metrics_diff(old, new)?;
        if json {
            return serde_json::to_string_pretty(&changes)
                .map(|s| s + "\n")
                .map_err(|e| StageError::with_source("encoding the changes as JSON", e));
        }
        Ok(stages_report::diff::render_diff_table(&changes, all))
    }

    fn metrics_file(&self) -> &'static str {
        stage_formats::metrics::METRICS_FILE
    }

    fn model_score(&self, dir: &Path) -> Result<Option<f64>, StageError> {
        stage_formats::model_card::card_score(dir)
    }
}

/// The worker's `[{"ok": {...}} | {"error": "..."}]`, one entry per video.
fn parse_predictions(stdout: &[u8], expected: usize) -> Result<Vec<Result<Prediction, StageError>>, StageError> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(stdout).map_err(|e| StageError::with_source("the worker's predictions are not valid JSON", e))?;
    if rows.len() != expected {
        return Err(StageError::msg(format!("the worker returned {} predictions for {expected} videos", rows.len())));
    }
    rows.into_iter()
        .map(|row| match (row.get("ok"), row.get("error")) {
            (Some(ok), _) => serde_json::from_value(ok.clone())
                .map(Ok)
                .map_err(|e| StageError::with_source("a prediction the worker returned is malformed", e)),
            (None, Some(error)) => Ok(Err(StageError::msg(error.as_str().unwrap_or("unknown error")))),
            (None, None) => Err(StageError::msg(format!("a prediction the worker returned has neither `ok` nor `error`: {row}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_and_errors_are_read_in_order() {
        let out = br#"[{"ok": {"video": "a.mp4", "predicted": "calm", "probabilities": [["neutral", 0.25], ["calm", 0.75]]}}, {"error": "b.mp4: no face"}]"#;
        let rows = parse_predictions(out, 2).unwrap();
        assert_eq!(rows[0].as_ref().unwrap().probabilities[1], ("calm".to_owned(), 0.75));
        assert_eq!(rows[1].as_ref().unwrap_err().message, "b.mp4: no face");
        assert!(parse_predictions(out, 3).unwrap_err().message.contains("2 predictions for 3 videos"));
        assert!(parse_predictions(b"[{}]", 1).unwrap_err().message.contains("neither"));
    }

    #[test]
    fn a_model_is_a_folder_with_a_card_and_a_damaged_card_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let card = dir.path().join(stage_formats::model_card::MODEL_CARD_FILE);
        assert_eq!(Builtin.model_score(dir.path()).unwrap(), None);
        std::fs::write(&card, r#"{"arch": "r3d18", "best_val_accuracy": 0.75}"#).unwrap();
        assert_eq!(Builtin.model_score(dir.path()).unwrap(), Some(0.75));
        std::fs::write(&card, r#"{"arch": "r3d18"}"#).unwrap();
        let err = Builtin.model_score(dir.path()).unwrap_err().message;
        assert!(err.contains("model.json") && err.contains("best_val_accuracy"), "{err}");
        std::fs::write(&card, "{").unwrap();
        assert!(Builtin.model_score(dir.path()).unwrap_err().message.contains("model.json"));
    }
}
