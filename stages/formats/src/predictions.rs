//! `predictions.parquet`, one row per evaluated clip: what the `evaluate` stage writes for a
//! model it ran, and what a model trained elsewhere (a `run:` stage, e.g. in PyTorch) hands
//! to `evaluate` instead of weights.
//!
//! Columns: `clip_id` (string), `actor` (int32), `label` (int64, the true class),
//! `predicted` (int64), `prob_0` .. `prob_{K-1}` (float32, softmax probabilities in label
//! order). [`write_predictions`] writes all of them; [`read_predictions`] accepts any integer
//! or float width, needs `clip_id`, `predicted` and every `prob_k`, and takes `actor` and
//! `label` when present (the truth comes from the split; a file that carries them is checked
//! against it by the caller).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int32Array, Int64Array, StringArray};
use stage_api::StageError;

use crate::parquet::{write_columns, Table};

/// The predictions file of an `evaluate` output, or of a model trained elsewhere.
pub const PREDICTIONS_FILE: &str = "predictions.parquet";

/// One test clip as the model saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub clip_id: String,
    pub actor: i32,
    /// True class index.
    pub label: i64,
    /// Predicted class index (normally the arg-max of `probs`).
    pub predicted: i64,
    /// Class probabilities (softmax), one per class.
    pub probs: Vec<f32>,
}

/// How far a row's probabilities may sum from 1 (float32 softmax is within 1e-6).
const SUM_TOLERANCE: f64 = 1e-3;

/// One row of a predictions file as it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRecord {
    pub clip_id: String,
    pub actor: Option<i64>,
    pub label: Option<i64>,
    pub predicted: i64,
    pub probs: Vec<f32>,
}

/// Writes every column of the module doc; `k` probabilities per row.
pub fn write_predictions(path: &Path, predictions: &[Prediction], k: usize) -> Result<(), StageError> {
    let mut columns: Vec<(String, ArrayRef)> = vec![
        ("clip_id".into(), Arc::new(StringArray::from_iter_values(predictions.iter().map(|p| p.clip_id.as_str())))),
        ("actor".into(), Arc::new(Int32Array::from_iter_values(predictions.iter().map(|p| p.actor)))),
        ("label".into(), Arc::new(Int64Array::from_iter_values(predictions.iter().map(|p| p.label)))),
        ("predicted".into(), Arc::new(Int64Array::from_iter_values(predictions.iter().map(|p| p.predicted)))),
    ];
    for c in 0..k {
        columns.push((format!("prob_{c}"), Arc::new(Float32Array::from_iter_values(predictions.iter().map(|p| p.probs[c])))));
    }
    write_columns(path, columns.iter().map(|(n, a)| (n.as_str(), a.clone())).collect())
}

/// Reads a predictions file over `k` classes and checks each row on its own: a clip id, once;
/// a predicted class in `0..k`; exactly the columns `prob_0` .. `prob_{k-1}`, each a
/// probability, summing to 1.
pub fn read_predictions(path: &Path, k: usize) -> Result<Vec<PredictionRecord>, StageError> {
    let shown = path.display();
    if !path.is_file() {
        return Err(StageError::msg(format!("{shown}: missing")));
    }
    let table = Table::read(path)?;
    let wanted: Vec<String> = (0..k).map(|c| format!("prob_{c}")).collect();
    let found: Vec<String> = table.column_names().into_iter().filter(|n| n.starts_with("prob_")).collect();
    if found.iter().any(|n| !wanted.contains(n)) || wanted.iter().any(|n| !found.contains(n)) {
        return Err(StageError::msg(format!(
            "{shown}: probability columns are [{}], expected prob_0 .. prob_{} (one per class, in label order)",
            found.join(", "),
            k - 1
        )));
    }
    let clip_ids = table.strings("clip_id")?;
    let predicted = table.integers("predicted")?;
    let optional = |name: &str| -> Result<Option<Vec<i64>>, StageError> {
        if table.has_column(name) {
            table.integers(name).map(Some)
        } else {
            Ok(None)
        }
    };
    let (actors, labels) = (optional("actor")?, optional("label")?);
    let mut probs: Vec<Vec<f32>> = vec![Vec::with_capacity(k); clip_ids.len()];
    for name in &wanted {
        for (row, value) in table.numbers(name)?.into_iter().enumerate() {
            let value = value.ok_or_else(|| StageError::msg(format!("{shown}: row {row}: `{name}` is null")))?;
            probs[row].push(value as f32);
        }
    }
    if clip_ids.is_empty() {
        return Err(StageError::msg(format!("{shown}: holds no predictions")));
    }
    let mut seen = HashSet::new();
    let mut records = Vec::with_capacity(clip_ids.len());
    for (row, ((clip_id, predicted), probs)) in clip_ids.into_iter().zip(predicted).zip(probs).enumerate() {
        let at = format!("{shown}: row {row} (clip `{clip_id}`)");
        if clip_id.is_empty() {
            return Err(StageError::msg(format!("{shown}: row {row}: `clip_id` is empty")));
        }
        if !seen.insert(clip_id.clone()) {
            return Err(StageError::msg(format!("{at}: the clip has a second prediction")));
        }
        if usize::try_from(predicted).ok().filter(|&p| p < k).is_none() {
            return Err(StageError::msg(format!("{at}: predicted class {predicted} is outside 0..{}", k - 1)));
        }
        if let Some(c) = probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(StageError::msg(format!("{at}: prob_{c} = {} is not a probability", probs[c])));
        }
        let sum: f64 = probs.iter().map(|&p| f64::from(p)).sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(StageError::msg(format!("{at}: the probabilities sum to {sum:.4}, not 1 (write softmax outputs, not logits)")));
        }
        records.push(PredictionRecord {
            clip_id,
            actor: actors.as_ref().map(|a| a[row]),
            label: labels.as_ref().map(|l| l[row]),
            predicted,
            probs,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(clip_id: &str, label: i64, predicted: i64) -> Prediction {
        let mut probs = vec![0.1f32; 3];
        probs[predicted as usize] = 0.8;
        Prediction { clip_id: clip_id.into(), actor: 7, label, predicted, probs }
    }

    fn write(dir: &Path, columns: Vec<(&str, ArrayRef)>) -> std::path::PathBuf {
        let path = dir.join("predictions.parquet");
        write_columns(&path, columns).unwrap();
        path
    }

    fn probs(values: &[f32]) -> ArrayRef {
        Arc::new(Float32Array::from(values.to_vec()))
    }

    #[test]
    fn what_evaluate_writes_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions.parquet");
        let written = vec![prediction("a", 0, 0), prediction("b", 2, 1)];
        write_predictions(&path, &written, 3).unwrap();
        let read = read_predictions(&path, 3).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!((read[1].clip_id.as_str(), read[1].actor, read[1].label, read[1].predicted), ("b", Some(7), Some(2), 1));
        assert_eq!(read[1].probs, written[1].probs);
    }

    #[test]
    fn actor_and_label_are_optional_and_widths_are_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            vec![
                ("clip_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
                ("predicted", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
                ("prob_0", Arc::new(arrow_array::Float64Array::from(vec![0.25])) as ArrayRef),
                ("prob_1", Arc::new(arrow_array::Float64Array::from(vec![0.75])) as ArrayRef),
            ],
        );
        let read = read_predictions(&path, 2).unwrap();
        assert_eq!((read[0].actor, read[0].label, read[0].predicted, read[0].probs.clone()), (None, None, 1, vec![0.25, 0.75]));
    }

    fn error(columns: Vec<(&str, ArrayRef)>, k: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), columns);
        let message = read_predictions(&path, k).unwrap_err().message;
        assert!(message.contains("predictions.parquet"), "{message}");
        message
    }

    fn ids(values: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn ints(values: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    #[test]
    fn bad_rows_and_columns_are_named() {
        let two = |p0: &[f32], p1: &[f32]| vec![("prob_0", probs(p0)), ("prob_1", probs(p1))];
        let with = |id: &[&str], predicted: &[i64], p: Vec<(&'static str, ArrayRef)>| {
            let mut c: Vec<(&str, ArrayRef)> = vec![("clip_id", ids(id)), ("predicted", ints(predicted))];
            c.extend(p);
            c
        };
        let m = error(with(&["a", "a"], &[0, 0], two(&[1.0, 1.0], &[0.0, 0.0])), 2);
        assert!(m.contains("row 1 (clip `a`)") && m.contains("second prediction"), "{m}");
        let m = error(with(&["a"], &[2], two(&[1.0], &[0.0])), 2);
        assert!(m.contains("predicted class 2 is outside 0..1"), "{m}");
        let m = error(with(&["a"], &[0], two(&[3.0], &[-2.0])), 2);
        assert!(m.contains("prob_0 = 3 is not a probability"), "{m}");
        let m = error(with(&["a"], &[0], two(&[0.5], &[0.1])), 2);
        assert!(m.contains("sum to 0.6000") && m.contains("logits"), "{m}");
        let m = error(with(&["a"], &[0], vec![("prob_0", probs(&[1.0])), ("prob_2", probs(&[0.0]))]), 2);
        assert!(m.contains("[prob_0, prob_2], expected prob_0 .. prob_1"), "{m}");
        let m = error(with(&[], &[], two(&[], &[])), 2);
        assert!(m.contains("holds no predictions"), "{m}");
        let m = error(vec![("clip_id", ids(&["a"])), ("prob_0", probs(&[1.0]))], 1);
        assert!(m.contains("missing column `predicted`"), "{m}");
    }
}
