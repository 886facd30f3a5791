//! `model.json`, the card at the top of a trained model's folder. Two kinds of folder hold one:
//!
//! - a `train` output: [`ModelCard`], what to build (the architecture's spec, whose fields sit
//!   at the top level of the file), how inputs were normalised and how it was trained. The spec
//!   type is the model crate's (`stages-torch`), so the card is generic over it ([`CardSpec`]).
//! - a model trained elsewhere (a `run:` stage, e.g. PyTorch): [`PredictionsCard`], `kind:
//!   "predictions"`, the model's name and optionally its classes and clip geometry.
//!
//! Readers that compare models of both kinds (the report, `pipeline predict` choosing the best
//! model) take only what any card may hold: [`card_fields`] (every top-level field, for the
//! report's columns) and [`card_score`] (the validation accuracy a model is chosen by).

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use stage_api::StageError;

use crate::json::{read_json, write_json};
use crate::CLASS_NAMES;

/// The card file in a model folder.
pub const MODEL_CARD_FILE: &str = "model.json";
/// Bumped when the meaning of a trained model's card changes.
pub const CARD_FORMAT: u32 = 1;
/// The `kind` of a card that marks predictions made elsewhere.
pub const PREDICTIONS_KIND: &str = "predictions";

/// What a card needs to know of the architecture's spec to check itself.
pub trait CardSpec: Serialize + DeserializeOwned + Clone {
    /// The number of output classes the spec builds.
    fn num_classes(&self) -> i64;
}

/// `model.json` of a `train` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard<S> {
    pub format: u32,
    /// What was built (arch, T, S, classes, ...); its fields sit at the top level of the file.
    #[serde(flatten)]
    pub spec: S,
    /// Class names by output index.
    pub class_names: Vec<String>,
    /// Normalisation of the [0, 1] RGB input.
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// The `train` stage's resolved parameters.
    #[serde(default)]
    pub hyperparameters: serde_json::Value,
    pub parameter_count: i64,
    pub train_seconds: f64,
    pub epochs_run: usize,
    /// 1-based epoch of the saved weights.
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    /// Where it trained (`cpu`, `cuda:0`).
    pub device: String,
    #[serde(default)]
    pub train_clips: usize,
    #[serde(default)]
    pub val_clips: usize,
    /// Cross-entropy class weights, when used.
    #[serde(default)]
    pub class_weights: Option<Vec<f64>>,
}

impl<S: CardSpec> ModelCard<S> {
    /// The card of a model built from `spec` with inputs normalised by `mean` and `std`, and an
    /// empty training record for the trainer to fill in.
    pub fn new(spec: S, class_names: Vec<String>, mean: [f64; 3], std: [f64; 3]) -> Self {
        ModelCard {
            format: CARD_FORMAT,
            spec,
            class_names,
            mean,
            std,
            hyperparameters: serde_json::Value::Null,
            parameter_count: 0,
            train_seconds: 0.0,
            epochs_run: 0,
            best_epoch: 0,
            best_val_accuracy: 0.0,
            device: String::new(),
            train_clips: 0,
            val_clips: 0,
            class_weights: None,
        }
    }

    /// Reads `<dir>/model.json`: a card of this format whose class names match its spec.
    pub fn read(dir: &Path) -> Result<Self, StageError> {
        let path = dir.join(MODEL_CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StageError::with_source(format!("{}: cannot read the model card; is this a `train` output?", path.display()), e)
        })?;
        let card: Self =
            serde_json::from_str(&text).map_err(|e| StageError::msg(format!("{}: not a valid model card: {e}", path.display())))?;
        if card.format != CARD_FORMAT {
            return Err(StageError::msg(format!(
                "{}: model card format {} is not supported (expected {CARD_FORMAT})",
                path.display(),
                card.format
            )));
        }
        if card.class_names.len() as i64 != card.spec.num_classes() {
            return Err(StageError::msg(format!(
                "{}: {} class names for {} classes",
                path.display(),
                card.class_names.len(),
                card.spec.num_classes()
            )));
        }
        Ok(card)
    }

    /// Writes `<dir>/model.json`.
    pub fn write(&self, dir: &Path) -> Result<(), StageError> {
        write_json(&dir.join(MODEL_CARD_FILE), self)
    }
}

/// `model.json` of predictions made elsewhere. Unknown fields are kept for the report
/// (`parameter_count`, `train_seconds`, `epochs_run`, `augment`, ...) and ignored here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionsCard {
    /// Always [`PREDICTIONS_KIND`].
    pub kind: String,
    /// The model's name in the report (`pytorch_tiny3d`).
    pub arch: String,
    /// When given, the classes by output index: must be the pipeline's, in label order.
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// When given, the clip geometry the model was trained on: must be the cache's.
    #[serde(default)]
    pub frames: Option<i64>,
    #[serde(default)]
    pub size: Option<i64>,
}

impl PredictionsCard {
    /// Reads `<dir>/model.json` when it describes predictions made elsewhere; `None` when it
    /// is a trained model's card (or absent: loading the model then says what is missing).
    pub fn read_if_any(dir: &Path) -> Result<Option<Self>, StageError> {
        let path = dir.join(MODEL_CARD_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StageError::msg(format!("{}: not valid JSON: {e}", path.display())))?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(PREDICTIONS_KIND) {
            return Ok(None);
        }
        let card: Self =
            serde_json::from_value(value).map_err(|e| StageError::msg(format!("{}: not a valid predictions card: {e}", path.display())))?;
        if card.arch.trim().is_empty() {
            return Err(StageError::msg(format!("{}: `arch` is empty; name the model", path.display())));
        }
        if let Some(names) = &card.class_names {
            if names.iter().map(String::as_str).ne(CLASS_NAMES) {
                return Err(StageError::msg(format!(
                    "{}: `class_names` are [{}], expected the pipeline's classes in label order: [{}]",
                    path.display(),
                    names.join(", "),
                    CLASS_NAMES.join(", ")
                )));
            }
        }
        Ok(Some(card))
    }

    /// Checks the card's `frames` and `size`, when given, against the cache's `(T, S)`.
    pub fn check_geometry(&self, dir: &Path, frames: i64, size: i64) -> Result<(), StageError> {
        let differs = |given: Option<i64>, actual: i64| given.is_some_and(|g| g != actual);
        if differs(self.frames, frames) || differs(self.size, size) {
            return Err(StageError::msg(format!(
                "{}: the model was trained on T={} S={}, the cache holds T={frames} S={size}; was it trained on another `extract`?",
                dir.join(MODEL_CARD_FILE).display(),
                self.frames.map_or("?".into(), |v| v.to_string()),
                self.size.map_or("?".into(), |v| v.to_string()),
            )));
        }
        Ok(())
    }
}

/// Every top-level field of `<dir>/model.json`, of either kind of card (the report shows what
/// each holds); an error names the file when it is missing or not a JSON object.
pub fn card_fields(dir: &Path) -> Result<serde_json::Map<String, serde_json::Value>, StageError> {
    read_json(&dir.join(MODEL_CARD_FILE))
}

/// Whether `dir` holds a model card, and the validation accuracy a model is chosen by:
/// `Ok(None)` without a card, an error naming the card when it has no `best_val_accuracy`
/// number (the choice among models rests on it: a damaged card is not "accuracy 0").
pub fn card_score(dir: &Path) -> Result<Option<f64>, StageError> {
    let path = dir.join(MODEL_CARD_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let fields = card_fields(dir)?;
    let accuracy = fields.get("best_val_accuracy").and_then(|v| v.as_f64()).ok_or_else(|| {
        StageError::msg(format!("{}: no `best_val_accuracy` number (not a model card written by `train`?)", path.display()))
    })?;
    Ok(Some(accuracy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Spec {
        arch: String,
        num_classes: i64,
    }

    impl CardSpec for Spec {
        fn num_classes(&self) -> i64 {
            self.num_classes
        }
    }

    fn card(classes: usize) -> ModelCard<Spec> {
        let names = CLASS_NAMES[..classes].iter().map(|s| s.to_string()).collect();
        ModelCard::new(Spec { arch: "r3d18".into(), num_classes: 8 }, names, [0.5; 3], [0.25; 3])
    }

    #[test]
    fn a_card_round_trips_with_its_spec_at_the_top_level() {
        let dir = tempfile::tempdir().unwrap();
        let written = ModelCard { best_val_accuracy: 0.75, ..card(8) };
        written.write(dir.path()).unwrap();
        assert_eq!(ModelCard::<Spec>::read(dir.path()).unwrap(), written);
        let fields = card_fields(dir.path()).unwrap();
        assert_eq!(fields["arch"], "r3d18", "spec fields are top-level");
        assert_eq!(card_score(dir.path()).unwrap(), Some(0.75));
    }

    #[test]
    fn a_damaged_card_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(card_score(dir.path()).unwrap(), None, "no card, no model");
        card(7).write(dir.path()).unwrap();
        let err = ModelCard::<Spec>::read(dir.path()).unwrap_err().message;
        assert!(err.contains("model.json") && err.contains("7 class names for 8 classes"), "{err}");
        let card_path = dir.path().join(MODEL_CARD_FILE);
        std::fs::write(&card_path, r#"{"arch": "r3d18"}"#).unwrap();
        let err = card_score(dir.path()).unwrap_err().message;
        assert!(err.contains("model.json") && err.contains("best_val_accuracy"), "{err}");
        std::fs::write(&card_path, "{").unwrap();
        assert!(card_score(dir.path()).unwrap_err().message.contains("model.json"));
        let mut other = serde_json::to_value(card(8)).unwrap();
        other["format"] = 9.into();
        std::fs::write(&card_path, other.to_string()).unwrap();
        assert!(ModelCard::<Spec>::read(dir.path()).unwrap_err().message.contains("format 9 is not supported"));
    }

    #[test]
    fn a_predictions_card_is_told_from_a_trained_models_card() {
        let dir = tempfile::tempdir().unwrap();
        card(8).write(dir.path()).unwrap();
        assert_eq!(PredictionsCard::read_if_any(dir.path()).unwrap(), None);
        let path = dir.path().join(MODEL_CARD_FILE);
        std::fs::write(&path, r#"{"kind": "predictions", "arch": "tiny3d", "frames": 4}"#).unwrap();
        let found = PredictionsCard::read_if_any(dir.path()).unwrap().unwrap();
        assert_eq!(found.arch, "tiny3d");
        assert!(found.check_geometry(dir.path(), 4, 32).is_ok());
        assert!(found.check_geometry(dir.path(), 10, 32).unwrap_err().message.contains("T=4 S=?"));
        std::fs::write(&path, r#"{"kind": "predictions", "arch": "x", "class_names": ["calm"]}"#).unwrap();
        assert!(PredictionsCard::read_if_any(dir.path()).unwrap_err().message.contains("label order"));
    }
}
