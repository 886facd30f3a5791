//! A trained model on disk: `model.safetensors` (every variable of the VarStore, BatchNorm
//! running statistics included, under PyTorch's parameter names) and `model.json` (the
//! [`ModelCard`]: what to build, how inputs were normalised, how it was trained).
//!
//! Loading is strict: every variable the model has must be in the file with the same shape,
//! and the file may hold nothing else; anything else is an error that lists the names.
//! (tch's `VarStore::load` would broadcast a mismatched shape silently.)

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stage_api::StageError;
use tch::nn::VarStore;
use tch::Tensor;

use crate::models::ModelSpec;
use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD};

/// Weights file name in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Card file name in a model directory.
pub const CARD_FILE: &str = "model.json";
/// Bumped when the card's meaning changes.
pub const CARD_FORMAT: u32 = 1;

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: u32,
    /// What was built (arch, T, S, classes, temporal pool); its fields sit at the top level
    /// of `model.json`.
    #[serde(flatten)]
    pub spec: ModelSpec,
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

impl ModelCard {
    /// The card of a model built from `spec`: ImageNet input normalisation, and an empty
    /// training record for the trainer to fill in.
    pub fn for_spec(spec: &ModelSpec, class_names: Vec<String>) -> Self {
        ModelCard {
            format: CARD_FORMAT,
            spec: spec.clone(),
            class_names,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
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

    /// What to build to load these weights.
    pub fn spec(&self) -> ModelSpec {
        self.spec.clone()
    }

    /// Reads `<dir>/model.json`.
    pub fn read(dir: &Path) -> Result<Self, StageError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StageError::with_source(format!("{}: cannot read the model card; is this a `train` output?", path.display()), e)
        })?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|e| StageError::msg(format!("{}: not a valid model card: {e}", path.display())))?;
        if card.format != CARD_FORMAT {
            return Err(StageError::msg(format!(
                "{}: model card format {} is not supported (expected {CARD_FORMAT})",
                path.display(),
                card.format
            )));
        }
        if card.class_names.len() as i64 != card.spec.num_classes {
            return Err(StageError::msg(format!(
                "{}: {} class names for {} classes",
                path.display(),
                card.class_names.len(),
                card.spec.num_classes
            )));
        }
        Ok(card)
    }

    /// Writes `<dir>/model.json`.
    pub fn write(&self, dir: &Path) -> Result<(), StageError> {
        stage_formats::json::write_json(&dir.join(CARD_FILE), self)
    }
}

/// Writes every variable of `vs` to `path` (safetensors).
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<(), StageError> {
    vs.save(path).map_err(|e| StageError::with_source(format!("{}: cannot save the weights", path.display()), e))
}

/// Loads `path` into `vs`, requiring exactly the same names and shapes.
pub fn load_weights(vs: &VarStore, path: &Path) -> Result<(), StageError> {
    let shown = path.display();
    if !path.is_file() {
        return Err(StageError::msg(format!("{shown}: missing weights file")));
    }
    let stored: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| StageError::msg(format!("{shown}: not a readable safetensors checkpoint: {e}")))?
        .into_iter()
        .collect();
    let vars = vs.variables();
    let mut problems = Vec::new();
    let mut missing: Vec<&String> = vars.keys().filter(|k| !stored.contains_key(*k)).collect();
    missing.sort();
    if !missing.is_empty() {
        problems.push(format!("missing {}", list(&missing)));
    }
    let mut unexpected: Vec<&String> = stored.keys().filter(|k| !vars.contains_key(*k)).collect();
    unexpected.sort();
    if !unexpected.is_empty() {
        problems.push(format!("unexpected {}", list(&unexpected)));
    }
    let mut wrong: Vec<String> = vars
        .iter()
        .filter_map(|(name, var)| {
            let src = stored.get(name)?;
            (src.size() != var.size()).then(|| format!("{name} is {:?}, the model has {:?}", src.size(), var.size()))
        })
        .collect();
    wrong.sort();
    if !wrong.is_empty() {
        problems.push(format!("wrong shape: {}", wrong.join("; ")));
    }
    if !problems.is_empty() {
        return Err(StageError::msg(format!("{shown}: does not match the model: {}", problems.join("; "))));
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let mut var = var.shallow_clone();
            var.f_copy_(&stored[name].to_kind(var.kind())).map_err(|e| StageError::msg(format!("{shown}: cannot load `{name}`: {e}")))?;
        }
        Ok(())
    })
}

fn list(names: &[&String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names.iter().take(SHOWN).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use tch::nn;
    use tch::Device;

    use super::*;

    fn store(out: i64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "fc", 3, out, Default::default());
        vs
    }

    #[test]
    fn round_trip_and_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WEIGHTS_FILE);
        let a = store(2);
        save_weights(&a, &path).unwrap();
        let b = store(2);
        load_weights(&b, &path).unwrap();
        let (wa, wb) = (&a.variables()["fc.weight"], &b.variables()["fc.weight"]);
        assert!(wa.equal(wb));

        let err = load_weights(&store(4), &path).unwrap_err();
        assert!(err.message.contains("wrong shape: fc.bias is [2], the model has [4]"), "{}", err.message);

        std::fs::write(&path, b"not a checkpoint").unwrap();
        let err = load_weights(&store(2), &path).unwrap_err();
        assert!(err.message.contains("not a readable safetensors checkpoint"), "{}", err.message);
    }

    #[test]
    fn missing_names_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WEIGHTS_FILE);
        save_weights(&store(2), &path).unwrap();
        let vs = store(2);
        let _ = nn::linear(vs.root() / "head", 2, 2, Default::default());
        let err = load_weights(&vs, &path).unwrap_err();
        assert!(err.message.contains("missing head.bias, head.weight"), "{}", err.message);
    }
}
