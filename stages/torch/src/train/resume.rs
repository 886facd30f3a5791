//! The state a training keeps at the end of every epoch, so that a rerun after a kill or a
//! preemption continues from the last finished epoch instead of starting over.
//!
//! It lives in the folder the engine lends the instance ([`stage_api::StageContext::resume_dir`],
//! keyed like the result, never read as one), one folder per finished epoch:
//!
//! ```text
//! epoch-0007/weights.safetensors   every variable of the model after epoch 7
//! epoch-0007/adam.safetensors      the optimiser's moments
//! epoch-0007/best.safetensors      the weights of the best epoch so far (what becomes the model)
//! epoch-0007/state.json            epoch, history, schedule, early stopping, loss scale,
//!                                  step counts, the model's own random position
//! ```
//!
//! An epoch's folder is written as `epoch-0007.partial` and renamed when complete, then the
//! older ones are removed; a kill at any moment leaves the last complete epoch readable. The
//! shuffle and augmentation seeds derive from the epoch number, so with these a resumed run on
//! the CPU with the same thread count gives the same bytes as one never interrupted.
//! Without a lent folder (unit tests) the states go to a temporary folder.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stage_api::StageError;
use tch::nn::VarStore;
use tch::Tensor;

use super::adam::AdamState;
use super::amp::LossScaler;
use super::schedule::{EarlyStopping, ReduceOnPlateau};
use stage_formats::history::EpochRecord;

/// Bumped when the layout or the meaning of `state.json` changes; an older state is ignored.
pub const STATE_FORMAT: u32 = 1;

const WEIGHTS: &str = "weights.safetensors";
const ADAM: &str = "adam.safetensors";
const BEST: &str = "best.safetensors";
const STATE: &str = "state.json";
const PARTIAL: &str = ".partial";

/// Everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    /// The last finished epoch (1-based) ...
    pub epoch: usize,
    /// ... of this many.
    pub epochs: usize,
    pub history: Vec<EpochRecord>,
    pub plateau: ReduceOnPlateau,
    pub stopping: EarlyStopping,
    pub scaler: Option<LossScaler>,
    pub adam_steps: HashMap<String, i64>,
    /// [`crate::models::Model::random_position`], as a decimal string (JSON numbers are f64).
    pub model_random: Option<String>,
    /// Training seconds of the attempts so far.
    pub seconds: f64,
}

/// Why a saved state cannot be resumed from (the caller says so and starts over); the text
/// names the file.
#[derive(Debug, thiserror::Error)]
pub enum UnusableState {
    #[error("{}: {error}", .path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    #[error("{}: {error}", .path.display())]
    Damaged { path: PathBuf, error: serde_json::Error },
    #[error("{}: state format {found} (this build writes {STATE_FORMAT})", .path.display())]
    OtherFormat { path: PathBuf, found: u32 },
    #[error("{}: missing", .path.display())]
    Missing { path: PathBuf },
}

/// A state found in the folder.
#[derive(Debug)]
pub struct Saved {
    pub state: TrainerState,
    dir: PathBuf,
}

impl Saved {
    /// The model's variables after the saved epoch.
    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS)
    }

    /// The optimiser's moments.
    pub fn adam(&self) -> Result<HashMap<String, Tensor>, StageError> {
        let path = self.dir.join(ADAM);
        Ok(Tensor::read_safetensors(&path)
            .map_err(|e| StageError::msg(format!("{}: unreadable optimiser state: {e}", path.display())))?
            .into_iter()
            .collect())
    }
}

/// The folder of a training's states.
pub struct StateDir {
    root: PathBuf,
    // Removed on drop when the engine lent no folder.
    _temporary: Option<tempfile::TempDir>,
}

impl StateDir {
    /// The lent folder, or a temporary one.
    pub fn open(lent: Option<&Path>) -> Result<Self, StageError> {
        match lent {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| StageError::with_source(format!("{}: cannot create", dir.display()), e))?;
                Ok(Self { root: dir.to_path_buf(), _temporary: None })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("train-state-")
                    .tempdir()
                    .map_err(|e| StageError::with_source("cannot create a temporary folder for the training state", e))?;
                Ok(Self { root: temp.path().to_path_buf(), _temporary: Some(temp) })
            }
        }
    }

    /// The latest complete state. `Err` is a state that exists but cannot be used (another
    /// format, a damaged file): the caller says so and starts over.
    pub fn latest(&self) -> Result<Option<Saved>, UnusableState> {
        let Some((_, dir)) = self.epoch_dirs().pop() else { return Ok(None) };
        let path = dir.join(STATE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => return Err(UnusableState::Unreadable { path, error }),
        };
        let state: TrainerState = match serde_json::from_str(&text) {
            Ok(state) => state,
            Err(error) => return Err(UnusableState::Damaged { path, error }),
        };
        if state.format != STATE_FORMAT {
            return Err(UnusableState::OtherFormat { path, found: state.format });
        }
        for file in [WEIGHTS, ADAM, BEST] {
            if !dir.join(file).is_file() {
                return Err(UnusableState::Missing { path: dir.join(file) });
            }
        }
        Ok(Some(Saved { state, dir }))
    }

    /// Removes every state (an unusable one, before starting over).
    pub fn clear(&self) {
        if let Ok(entries) = fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// The best weights of the latest state (what the model becomes).
    pub fn best_weights(&self) -> Option<PathBuf> {
        self.epoch_dirs().pop().map(|(_, dir)| dir.join(BEST)).filter(|p| p.is_file())
    }

    /// Writes the state after `state.epoch`: the model's variables, the optimiser's moments,
    /// the best weights (these variables when `is_best`, else the previous state's), then
    /// publishes the epoch's folder and removes the older ones.
    pub fn save(&self, state: &TrainerState, vs: &VarStore, adam: &AdamState, is_best: bool) -> Result<(), StageError> {
        let name = format!("epoch-{:04}", state.epoch);
        let partial = self.root.join(format!("{name}{PARTIAL}"));
        let done = self.root.join(&name);
        let previous_best = self.best_weights();
        let result = (|| {
            let _ = fs::remove_dir_all(&partial);
            fs::create_dir_all(&partial).map_err(|e| io_error(&partial, e))?;
            let weights = partial.join(WEIGHTS);
            vs.save(&weights).map_err(|e| StageError::msg(format!("{}: cannot write: {e}", weights.display())))?;
            let adam_path = partial.join(ADAM);
            Tensor::write_safetensors(&adam.tensors, &adam_path)
                .map_err(|e| StageError::msg(format!("{}: cannot write: {e}", adam_path.display())))?;
            let best = partial.join(BEST);
            match (is_best, &previous_best) {
                (true, _) => fs::hard_link(&weights, &best).map_err(|e| io_error(&best, e))?,
                (false, Some(previous)) => link_or_copy(previous, &best)?,
                (false, None) => return Err(StageError::msg(format!("{}: no best weights to carry over", self.root.display()))),
            }
            let json = serde_json::to_vec_pretty(state).map_err(|e| StageError::with_source("encoding the training state", e))?;
            let state_path = partial.join(STATE);
            fs::write(&state_path, json).map_err(|e| io_error(&state_path, e))?;
            for file in [WEIGHTS, ADAM, STATE] {
                sync(&partial.join(file))?;
            }
            sync(&partial)?;
            let _ = fs::remove_dir_all(&done);
            fs::rename(&partial, &done).map_err(|e| io_error(&done, e))?;
            sync(&self.root)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&partial);
            return result;
        }
        for (epoch, dir) in self.epoch_dirs() {
            if epoch < state.epoch {
                let _ = fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }

    /// Complete epoch folders, oldest first.
    fn epoch_dirs(&self) -> Vec<(usize, PathBuf)> {
        let mut dirs: Vec<(usize, PathBuf)> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let epoch = name.strip_prefix("epoch-")?.parse().ok()?;
                Some((epoch, e.path()))
            })
            .collect();
        dirs.sort();
        dirs
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StageError {
    StageError::with_source(format!("{}: cannot write", path.display()), e)
}

/// Hard links `from` at `to` (files are never changed once written), or copies across
/// filesystems.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), StageError> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map(|_| ()).map_err(|e| io_error(to, e))
}

fn sync(path: &Path) -> Result<(), StageError> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| StageError::with_source(format!("{}: cannot sync", path.display()), e))
}

#[cfg(test)]
mod tests {
    use tch::nn;
    use tch::Device;

    use super::*;
    use crate::train::adam::Adam;

    fn state(epoch: usize, stopping: &EarlyStopping) -> TrainerState {
        TrainerState {
            format: STATE_FORMAT,
            epoch,
            epochs: 5,
            history: Vec::new(),
            plateau: ReduceOnPlateau::new(1e-3, 0.5, 2),
            stopping: stopping.clone(),
            scaler: None,
            adam_steps: HashMap::new(),
            model_random: Some(u128::MAX.to_string()),
            seconds: 1.5,
        }
    }

    #[test]
    fn keeps_the_latest_epoch_and_the_best_weights() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::open(Some(dir.path())).unwrap();
        assert!(states.latest().unwrap().is_none());
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 2, 2, Default::default());
        let adam = Adam::new(&vs, 1e-3, 0.0);
        let mut stopping = EarlyStopping::new(3);
        let first = lin.ws.copy();
        assert!(stopping.observe(1, 0.5));
        states.save(&state(1, &stopping), &vs, &adam.state(), true).unwrap();
        let _ = tch::no_grad(|| lin.ws.shallow_clone().fill_(7.0));
        assert!(!stopping.observe(2, 0.4));
        states.save(&state(2, &stopping), &vs, &adam.state(), false).unwrap();

        let saved = states.latest().unwrap().unwrap();
        assert_eq!(saved.state.epoch, 2);
        assert_eq!(saved.state.model_random.as_deref(), Some(u128::MAX.to_string().as_str()));
        assert!(!dir.path().join("epoch-0001").exists(), "older epochs are removed");
        let best: HashMap<String, Tensor> = Tensor::read_safetensors(states.best_weights().unwrap()).unwrap().into_iter().collect();
        assert!(best["fc.weight"].equal(&first), "the best weights are epoch 1's");
        let now: HashMap<String, Tensor> = Tensor::read_safetensors(saved.weights()).unwrap().into_iter().collect();
        assert_eq!(now["fc.weight"].double_value(&[0, 0]), 7.0);
        assert_eq!(saved.adam().unwrap().len(), 4);
    }

    #[test]
    fn an_unfinished_or_foreign_state_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::open(Some(dir.path())).unwrap();
        // A kill while writing leaves only the partial folder: no state.
        fs::create_dir_all(dir.path().join("epoch-0003.partial")).unwrap();
        assert!(states.latest().unwrap().is_none());
        fs::create_dir_all(dir.path().join("epoch-0004")).unwrap();
        fs::write(dir.path().join("epoch-0004/state.json"), r#"{"format": 99}"#).unwrap();
        let err = states.latest().unwrap_err().to_string();
        assert!(err.contains("epoch-0004/state.json"), "{err}");
        states.clear();
        assert!(states.latest().unwrap().is_none());
    }
}
