//! A trained model on disk: `model.safetensors` (every variable of the VarStore, BatchNorm
//! running statistics included, under PyTorch's parameter names) and `model.json` (the
//! [`ModelCard`]: what to build, how inputs were normalised, how it was trained).
//!
//! Loading is strict: every variable the model has must be in the file with the same shape,
//! and the file may hold nothing else; anything else is an error that lists the names.
//! (tch's `VarStore::load` would broadcast a mismatched shape silently.)

use std::collections::HashMap;
use std::path::Path;

use stage_api::StageError;
use tch::nn::VarStore;
use tch::Tensor;

use crate::models::ModelSpec;
use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD};

/// Weights file name in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Card file name in a model directory.
pub use stage_formats::model_card::MODEL_CARD_FILE as CARD_FILE;

/// `model.json` of a model this crate trained (the card format lives in `stage-formats`).
pub type ModelCard = stage_formats::model_card::ModelCard<ModelSpec>;

/// The card of a model built from `spec`: ImageNet input normalisation, and an empty training
/// record for the trainer to fill in.
pub fn card_for_spec(spec: &ModelSpec, class_names: Vec<String>) -> ModelCard {
    ModelCard::new(spec.clone(), class_names, IMAGENET_MEAN, IMAGENET_STD)
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
