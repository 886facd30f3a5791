//! Everything the `evaluate` stage writes about one model, from its test-set predictions:
//! metrics, tables and plots. The stage itself (model inference) lives in `stages-torch` (run by the `pipeline-torch` worker); it
//! calls [`write_evaluation`] and, with the extract stage's tensor cache at hand,
//! [`write_misclassified_examples`].
//!
//! Files written into `out_dir` by [`write_evaluation`]:
//! - `predictions.parquet`: clip_id (utf8), actor (int32), label, predicted (int64),
//!   prob_0 .. prob_{K-1} (float32); see [`crate::predictions`].
//! - `metrics.json`: [`Metrics`] (see [`crate::metrics`] for the definitions).
//! - `per_class.csv`: class, label, precision, recall, f1, support, predicted.
//! - `confusion.csv` / `confusion_normalized.csv`: a `true\predicted` header row of class
//!   names, then one row per true class.
//! - `misclassified.csv`: clip_id, actor, true, predicted, then `prob_<class>` per class.
//! - `confusion.png`, `per_class_accuracy.png`, and `curves.png` when a history is given.

use std::path::Path;

use stage_api::StageError;
use stage_formats::history::History;
use stage_formats::metrics::write_metrics;

use stage_formats::predictions::{write_predictions, Prediction, PREDICTIONS_FILE};

use crate::frames::FrameCache;
use crate::io::write_csv;
use crate::metrics::{self, Metrics, Row};
use crate::plots::{self, ExampleRow};

/// Computes the metrics of `predictions` and writes every file of the module doc into
/// `out_dir`. Returns the metrics (with `model` set to `model_name`).
pub fn write_evaluation(
    out_dir: &Path,
    predictions: &[Prediction],
    class_names: &[String],
    history: Option<&History>,
    model_name: &str,
) -> Result<Metrics, StageError> {
    if let Some(p) = predictions.iter().find(|p| p.probs.len() != class_names.len()) {
        return Err(StageError::msg(format!("clip {}: {} probabilities for {} classes", p.clip_id, p.probs.len(), class_names.len())));
    }
    let rows: Vec<Row<'_>> = predictions.iter().map(|p| Row { label: p.label, predicted: p.predicted, probs: &p.probs }).collect();
    let mut metrics =
        metrics::compute(&rows, class_names).map_err(|e| StageError::with_source(format!("evaluating model `{model_name}`"), e))?;
    metrics.model = model_name.to_owned();

    write_predictions(&out_dir.join(PREDICTIONS_FILE), predictions, class_names.len())?;
    write_metrics(out_dir, &metrics)?;
    write_per_class(&out_dir.join("per_class.csv"), &metrics)?;
    write_confusion(&out_dir.join("confusion.csv"), class_names, &metrics.confusion, |v| v.to_string())?;
    write_confusion(&out_dir.join("confusion_normalized.csv"), class_names, &metrics.confusion_normalized, |v| format!("{v:.6}"))?;
    write_misclassified(&out_dir.join("misclassified.csv"), predictions, class_names)?;

    let acc = format!(
        "{model_name}: accuracy {:.1}% (95% CI {:.1}–{:.1}%, n={})",
        metrics.accuracy * 100.0,
        metrics.accuracy_ci.low * 100.0,
        metrics.accuracy_ci.high * 100.0,
        metrics.n
    );
    plots::confusion_heatmap(&metrics.confusion, class_names, &format!("Confusion matrix — {acc}"), &out_dir.join("confusion.png"))?;
    let recall: Vec<f64> = metrics.per_class.iter().map(|c| c.recall).collect();
    let support: Vec<u64> = metrics.per_class.iter().map(|c| c.support).collect();
    plots::per_class_accuracy(
        &recall,
        &support,
        class_names,
        &format!("Per-class accuracy — {model_name}"),
        &out_dir.join("per_class_accuracy.png"),
    )?;
    if let Some(history) = history {
        plots::training_curves(history, &format!("Training curves — {model_name}"), &out_dir.join("curves.png"))?;
    }
    Ok(metrics)
}

fn write_per_class(path: &Path, m: &Metrics) -> Result<(), StageError> {
    let header = ["class", "label", "precision", "recall", "f1", "support", "predicted"].map(String::from);
    let rows: Vec<Vec<String>> = m
        .per_class
        .iter()
        .map(|c| {
            vec![
                c.class.clone(),
                c.label.to_string(),
                format!("{:.6}", c.precision),
                format!("{:.6}", c.recall),
                format!("{:.6}", c.f1),
                c.support.to_string(),
                c.predicted.to_string(),
            ]
        })
        .collect();
    write_csv(path, &header, &rows)
}

fn write_confusion<T>(path: &Path, names: &[String], matrix: &[Vec<T>], fmt: impl Fn(&T) -> String) -> Result<(), StageError> {
    let header: Vec<String> = std::iter::once("true\\predicted".to_owned()).chain(names.iter().cloned()).collect();
    let rows: Vec<Vec<String>> =
        names.iter().zip(matrix).map(|(name, row)| std::iter::once(name.clone()).chain(row.iter().map(&fmt)).collect()).collect();
    write_csv(path, &header, &rows)
}

fn class_name(names: &[String], label: i64) -> String {
    usize::try_from(label).ok().and_then(|l| names.get(l)).cloned().unwrap_or_else(|| label.to_string())
}

fn write_misclassified(path: &Path, predictions: &[Prediction], names: &[String]) -> Result<(), StageError> {
    let header: Vec<String> =
        ["clip_id", "actor", "true", "predicted"].into_iter().map(String::from).chain(names.iter().map(|n| format!("prob_{n}"))).collect();
    let rows: Vec<Vec<String>> = predictions
        .iter()
        .filter(|p| p.label != p.predicted)
        .map(|p| {
            [p.clip_id.clone(), p.actor.to_string(), class_name(names, p.label), class_name(names, p.predicted)]
                .into_iter()
                .chain(p.probs.iter().map(|v| format!("{v:.4}")))
                .collect()
        })
        .collect();
    write_csv(path, &header, &rows)
}

/// Draws `misclassified_examples.png`: up to `max_rows` misclassified clips (the most
/// confident mistakes first), six frames each, read from the extract stage's tensor cache in
/// `extract_dir` (`index.parquet` + `shards/`). Returns how many rows were drawn (0 when
/// nothing was misclassified; no file is written then).
pub fn write_misclassified_examples(
    out_dir: &Path,
    extract_dir: &Path,
    predictions: &[Prediction],
    class_names: &[String],
    max_rows: usize,
) -> Result<usize, StageError> {
    let mut wrong: Vec<&Prediction> = predictions.iter().filter(|p| p.label != p.predicted).collect();
    let confidence = |p: &Prediction| usize::try_from(p.predicted).ok().and_then(|i| p.probs.get(i)).copied().unwrap_or(0.0);
    wrong.sort_by(|a, b| confidence(b).total_cmp(&confidence(a)).then_with(|| a.clip_id.cmp(&b.clip_id)));
    wrong.truncate(max_rows);
    if wrong.is_empty() {
        return Ok(0);
    }
    let cache = FrameCache::open(extract_dir)?;
    let ids: Vec<&str> = wrong.iter().map(|p| p.clip_id.as_str()).collect();
    let frames = cache.sample_frames(&ids, 6)?;
    let rows: Vec<ExampleRow> = wrong
        .iter()
        .zip(frames)
        .map(|(p, frames)| ExampleRow {
            caption: format!(
                "{} (actor {}): true {}, predicted {} (p = {:.2})",
                p.clip_id,
                p.actor,
                class_name(class_names, p.label),
                class_name(class_names, p.predicted),
                confidence(p)
            ),
            frames,
        })
        .collect();
    plots::misclassified_examples(&rows, "Misclassified test clips (most confident first)", &out_dir.join("misclassified_examples.png"))?;
    Ok(rows.len())
}
