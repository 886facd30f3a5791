//! Predictions made elsewhere: what `evaluate` reads instead of running a model when its
//! `train` input is the output of a model trained outside the pipeline (a `run:` stage, e.g.
//! PyTorch through `python/pipeline_dataset.py`).
//!
//! Such an output holds `predictions.parquet` (the columns `evaluate` writes for its own
//! predictions, see [`stages_report::predictions`]) and a card, `model.json`, whose `kind` is
//! `"predictions"` and whose `arch` names the model (other fields are optional, see
//! [`PredictionsCard`]). The file must predict every clip of the evaluated split, and nothing
//! else; the truth (label, actor) comes from the split, and a file that carries `label` or
//! `actor` must agree with it. The metrics are then computed by the same code as for a model
//! the pipeline trained.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use stage_api::StageError;
use stages_report::Prediction;

use crate::split::{Assigned, Split, ASSIGNMENT_FILE};
use crate::CLASS_NAMES;

pub use stage_formats::model_card::{PredictionsCard, PREDICTIONS_KIND};
pub use stage_formats::predictions::PREDICTIONS_FILE;

/// Clip ids listed in one error message.
const LISTED: usize = 5;

/// Reads `<dir>/predictions.parquet` and checks it against the split: one prediction for each
/// clip that `assignment` puts in `wanted`, no other clip, and `label`/`actor` (when the file
/// has them) as the split says. Returns the predictions in the assignment's order.
pub fn read_predictions(dir: &Path, split_dir: &Path, assignment: &[Assigned], wanted: Split) -> Result<Vec<Prediction>, StageError> {
    let path = dir.join(PREDICTIONS_FILE);
    let shown = path.display();
    let records = stages_report::read_predictions(&path, CLASS_NAMES.len())?;
    let truth: HashMap<&str, &Assigned> = assignment.iter().map(|a| (a.clip_id.as_str(), a)).collect();
    let split_file = split_dir.join(ASSIGNMENT_FILE);

    let unknown: Vec<&str> = records.iter().map(|r| r.clip_id.as_str()).filter(|id| !truth.contains_key(id)).collect();
    if !unknown.is_empty() {
        return Err(StageError::msg(format!(
            "{shown}: {} clip id(s) are not in the split {}: {}; were the predictions made on another `extract` or `split`?",
            unknown.len(),
            split_file.display(),
            listed(&unknown)
        )));
    }
    let elsewhere: Vec<String> = records
        .iter()
        .filter(|r| truth[r.clip_id.as_str()].split != wanted)
        .map(|r| format!("{} ({})", r.clip_id, truth[r.clip_id.as_str()].split.as_str()))
        .collect();
    if !elsewhere.is_empty() {
        return Err(StageError::msg(format!(
            "{shown}: {} clip(s) are not in the {} split that `evaluate` scores: {}",
            elsewhere.len(),
            wanted.as_str(),
            listed(&elsewhere.iter().map(String::as_str).collect::<Vec<_>>())
        )));
    }
    for r in &records {
        let a = truth[r.clip_id.as_str()];
        if let Some(label) = r.label.filter(|&l| l != a.label) {
            let name = |l: i64| usize::try_from(l).ok().and_then(|l| CLASS_NAMES.get(l)).copied().unwrap_or("no class");
            return Err(StageError::msg(format!(
                "{shown}: clip `{}` has label {label} ({}), the split says {} ({})",
                r.clip_id,
                name(label),
                a.label,
                name(a.label)
            )));
        }
        if let Some(actor) = r.actor.filter(|&x| x != a.actor) {
            return Err(StageError::msg(format!("{shown}: clip `{}` has actor {actor}, the split says {}", r.clip_id, a.actor)));
        }
    }
    let predicted: HashSet<&str> = records.iter().map(|r| r.clip_id.as_str()).collect();
    let missing: Vec<&str> =
        assignment.iter().filter(|a| a.split == wanted && !predicted.contains(a.clip_id.as_str())).map(|a| a.clip_id.as_str()).collect();
    if !missing.is_empty() {
        return Err(StageError::msg(format!(
            "{shown}: {} clip(s) of the {} split have no prediction: {}",
            missing.len(),
            wanted.as_str(),
            listed(&missing)
        )));
    }

    let mut by_id: HashMap<String, stages_report::PredictionRecord> = records.into_iter().map(|r| (r.clip_id.clone(), r)).collect();
    Ok(assignment
        .iter()
        .filter(|a| a.split == wanted)
        .map(|a| {
            let r = by_id.remove(&a.clip_id).expect("checked above: every clip of the split has a prediction");
            Prediction { clip_id: a.clip_id.clone(), actor: a.actor as i32, label: a.label, predicted: r.predicted, probs: r.probs }
        })
        .collect())
}

/// The first few ids, then how many more.
fn listed(ids: &[&str]) -> String {
    let shown: Vec<String> = ids.iter().take(LISTED).map(|id| format!("`{id}`")).collect();
    match ids.len().saturating_sub(LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float32Array, Int64Array, StringArray};

    use super::*;
    use crate::train::checkpoint::CARD_FILE;

    fn assigned(clip_id: &str, actor: i64, label: i64, split: Split) -> Assigned {
        Assigned { clip_id: clip_id.into(), actor, label, split }
    }

    /// Actor 1 trains (a), actor 2 is tested (b: happy, c: sad).
    fn assignment() -> Vec<Assigned> {
        vec![assigned("a", 1, 0, Split::Train), assigned("b", 2, 2, Split::Test), assigned("c", 2, 3, Split::Test)]
    }

    /// A predictions file with one row per `(clip_id, label, predicted)`; `label < 0` leaves the
    /// `label` column out.
    fn write(dir: &Path, rows: &[(&str, i64, i64)]) {
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            ("clip_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)))),
            ("predicted", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ];
        if rows.iter().all(|r| r.1 >= 0) {
            columns.push(("label", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))));
        }
        let names: Vec<String> = (0..8).map(|c| format!("prob_{c}")).collect();
        for (c, name) in names.iter().enumerate() {
            let probs = rows.iter().map(|r| if r.2 == c as i64 { 0.93f32 } else { 0.01 });
            columns.push((name.as_str(), Arc::new(Float32Array::from_iter_values(probs))));
        }
        let batch = stage_formats::parquet::batch(columns).unwrap();
        stage_formats::parquet::write_parquet(&dir.join(PREDICTIONS_FILE), &batch).unwrap();
    }

    fn read(rows: &[(&str, i64, i64)]) -> Result<Vec<Prediction>, StageError> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), rows);
        read_predictions(dir.path(), Path::new("/split"), &assignment(), Split::Test)
            .inspect_err(|e| assert!(e.message.contains("predictions.parquet"), "the error names the file: {}", e.message))
    }

    #[test]
    fn predictions_of_the_split_come_back_in_assignment_order_with_the_splits_truth() {
        let got = read(&[("c", -1, 3), ("b", -1, 1)]).unwrap();
        let ids: Vec<&str> = got.iter().map(|p| p.clip_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!((got[0].actor, got[0].label, got[0].predicted), (2, 2, 1));
        assert_eq!(got[1].probs[3], 0.93);
    }

    #[test]
    fn missing_unknown_wrong_split_and_wrong_labels_are_errors() {
        let m = read(&[("b", 2, 2)]).unwrap_err().message;
        assert!(m.contains("1 clip(s) of the test split have no prediction: `c`"), "{m}");
        let m = read(&[("b", 2, 2), ("c", 3, 3), ("zz", 0, 0)]).unwrap_err().message;
        assert!(m.contains("1 clip id(s) are not in the split /split/assignment.parquet: `zz`"), "{m}");
        let m = read(&[("a", 0, 0), ("b", 2, 2), ("c", 3, 3)]).unwrap_err().message;
        assert!(m.contains("are not in the test split that `evaluate` scores: `a (train)`"), "{m}");
        let m = read(&[("b", 2, 2), ("c", 2, 3)]).unwrap_err().message;
        assert!(m.contains("clip `c` has label 2 (happy), the split says 3 (sad)"), "{m}");
        let m = read(&[("b", 2, 9), ("c", 3, 3)]).unwrap_err().message;
        assert!(m.contains("predicted class 9 is outside 0..7"), "{m}");
    }

    #[test]
    fn only_a_predictions_card_is_taken_and_it_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PredictionsCard::read_if_any(dir.path()).unwrap(), None);
        let card = dir.path().join(CARD_FILE);
        std::fs::write(&card, r#"{"format": 1, "arch": "r3d18"}"#).unwrap();
        assert_eq!(PredictionsCard::read_if_any(dir.path()).unwrap(), None, "a trained model's card");
        std::fs::write(&card, r#"{"kind": "predictions", "arch": "tiny", "frames": 4, "size": 48, "epochs_run": 3}"#).unwrap();
        let got = PredictionsCard::read_if_any(dir.path()).unwrap().unwrap();
        assert_eq!((got.arch.as_str(), got.frames, got.size), ("tiny", Some(4), Some(48)));
        got.check_geometry(dir.path(), 4, 48).unwrap();
        let m = got.check_geometry(dir.path(), 4, 32).unwrap_err().message;
        assert!(m.contains("model.json") && m.contains("trained on T=4 S=48, the cache holds T=4 S=32"), "{m}");
        std::fs::write(&card, r#"{"kind": "predictions", "arch": "tiny", "class_names": ["calm", "neutral"]}"#).unwrap();
        let m = PredictionsCard::read_if_any(dir.path()).unwrap_err().message;
        assert!(m.contains("`class_names` are [calm, neutral]"), "{m}");
        std::fs::write(&card, r#"{"kind": "predictions"}"#).unwrap();
        let m = PredictionsCard::read_if_any(dir.path()).unwrap_err().message;
        assert!(m.contains("model.json") && m.contains("missing field `arch`"), "{m}");
    }
}
