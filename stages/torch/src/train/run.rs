//! The `train` stage's run: data, model, optimiser and schedule (or all of them as a killed
//! attempt left them, see [`super::resume`]), the epoch loop with best-checkpoint keeping,
//! early stopping and a resumable state after every epoch, then the history and the model card.

use std::path::Path;
use std::time::Instant;

use stage_api::{Params, StageContext, StageError, StageOutcome};
use tch::nn;
use tch::{Device, Tensor};

use super::adam::Adam;
use super::amp::LossScaler;
use super::checkpoint::{card_for_spec, load_weights, ModelCard, CARD_FILE, WEIGHTS_FILE};
use super::data::{derive_seed, Pass};
use super::dataset::TrainingData;
use super::device::device_name;
use super::epoch::{evaluate, train_epoch, Criterion, Stepper};
use super::resume::{StateDir, TrainerState, STATE_FORMAT};
use super::schedule::{EarlyStopping, ReduceOnPlateau};
use super::TrainParams;
use crate::libtorch;
use crate::models::{self, Model, ModelSpec};
use crate::CLASS_NAMES;
use stage_formats::history::{write_history, EpochRecord};

/// Seed streams (see [`derive_seed`]).
const SHUFFLE_STREAM: u64 = 1;
const AUGMENT_STREAM: u64 = 2;

/// Held while a training seeds libtorch's generator and initialises its model.
static MODEL_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn run(ctx: &StageContext<'_>, params: &TrainParams, canonical: &Params) -> Result<StageOutcome, StageError> {
    let started = Instant::now();
    let extract = ctx.input_like("extract", crate::cache::INDEX_FILE)?;
    let split = ctx.input_like("split", crate::split::ASSIGNMENT_FILE)?;
    let data = TrainingData::open(&extract.dir, &split.dir)?;
    // The preprocessing the model was trained on travels with it (`pipeline predict` reads it).
    let extract_json = extract.dir.join(crate::cache::EXTRACT_REPORT_FILE);
    if extract_json.is_file() {
        std::fs::copy(&extract_json, ctx.out_dir.join(crate::predict::PREPROCESSING_FILE))
            .map_err(|e| StageError::with_source(format!("copying {}", extract_json.display()), e))?;
    }

    let device = super::device::resolve_device(params.device)?;
    let threads = if params.threads > 0 { params.threads } else { ctx.threads.max(1) };
    tch::set_num_threads(threads as i32);
    let amp = params.amp && device != Device::Cpu;
    if params.amp && !amp {
        ctx.progress.note("amp: ignored on the CPU (mixed precision needs CUDA)");
    }

    let spec = ModelSpec {
        arch: params.arch,
        frames: data.frames,
        size: data.size,
        num_classes: CLASS_NAMES.len() as i64,
        temporal_pool: params.temporal_pool,
    };
    let (mut vs, model) = {
        // Initialisation draws from libtorch's process-wide generator: one training at a time
        // seeds it and builds its model, so trainings running at once start from their seeds.
        let _init = MODEL_INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(params.seed as i64);
        let vs = nn::VarStore::new(device);
        let model = models::build(&vs.root(), &spec)?;
        (vs, model)
    };
    // On a cluster worker this fetches (and checks) weights the coordinator's cache had.
    if let Some(path) = params.pretrained_path(ctx.base_dir)? {
        let line = start_from(&mut vs, &spec, &path)?;
        ctx.progress.note(&line);
    }
    let parameter_count = models::parameter_count(&vs);

    let mut opt = Adam::new(&vs, params.lr, params.weight_decay);
    let class_weights = params.class_weights.then(|| data.class_weights());
    let weights_tensor =
        class_weights.as_ref().map(|w| Tensor::from_slice(&w.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_device(device));
    let criterion = Criterion { device, class_weights: weights_tensor.as_ref() };

    let states = StateDir::open(ctx.resume_dir)?;
    let mut trainer = match resume(&states, &vs, model.as_ref(), &mut opt, params, ctx)? {
        Some(state) => state,
        None => TrainerState {
            format: STATE_FORMAT,
            epoch: 0,
            epochs: params.epochs,
            history: Vec::new(),
            plateau: ReduceOnPlateau::new(params.lr, params.plateau_factor, params.plateau_patience),
            stopping: EarlyStopping::new(params.early_stopping_patience),
            scaler: amp.then(LossScaler::default),
            adam_steps: Default::default(),
            model_random: None,
            seconds: 0.0,
        },
    };
    let earlier_seconds = trainer.seconds;
    // A state saved after the epoch that triggered early stopping has nothing left to train.
    let mut stop = trainer.epoch > 0 && trainer.stopping.should_stop();
    ctx.progress.note(&format!(
        "{}: {} parameters, T={} S={}, {} train / {} val clips, device {}{}",
        spec.arch,
        parameter_count,
        spec.frames,
        spec.size,
        data.train.len(),
        data.val.len(),
        device_name(device),
        if amp { " (amp fp16)" } else { "" }
    ));
    ctx.progress.start(params.epochs as u64, "epochs");
    ctx.progress.advance(trainer.epoch as u64);
    for epoch in trainer.epoch + 1..=params.epochs {
        if stop {
            break;
        }
        let epoch_started = Instant::now();
        let lr = trainer.plateau.lr();
        let pass = Pass {
            batch_size: params.batch_size,
            shuffle_seed: Some(derive_seed(params.seed, epoch, SHUFFLE_STREAM)),
            augment_seed: params.augment.then(|| derive_seed(params.seed, epoch, AUGMENT_STREAM)),
        };
        let mut stepper = Stepper { opt: &mut opt, scaler: trainer.scaler.as_mut() };
        let train = libtorch::catch(&format!("epoch {epoch}"), || {
            train_epoch(model.as_ref(), &mut stepper, &criterion, &data.loader, &data.train, pass)
                .map_err(|e| StageError::msg(format!("epoch {epoch}: {}", e.message)))
        })?;
        let val = libtorch::catch(&format!("epoch {epoch}: validation"), || {
            evaluate(model.as_ref(), &criterion, &data.loader, &data.val, params.batch_size)
        })?;
        let is_best = trainer.stopping.observe(epoch, val.accuracy);
        let next_lr = trainer.plateau.step(val.accuracy);
        opt.set_lr(next_lr);
        let record = EpochRecord {
            epoch,
            train_loss: train.loss,
            train_accuracy: train.accuracy,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            lr,
            seconds: epoch_started.elapsed().as_secs_f64(),
        };
        ctx.progress.note(&format!("{}{}", record.line(params.epochs), input_overhead_note(&train, record.seconds)));
        trainer.history.push(record);
        trainer.epoch = epoch;
        let adam_state = opt.state();
        trainer.adam_steps = adam_state.steps.clone();
        trainer.model_random = model.random_position().map(|p| p.to_string());
        trainer.seconds = earlier_seconds + started.elapsed().as_secs_f64();
        states.save(&trainer, &vs, &adam_state, is_best)?;
        ctx.progress.advance(1);
        if trainer.stopping.should_stop() && epoch < params.epochs {
            ctx.progress.note(&format!(
                "early stopping after epoch {epoch}: no better validation accuracy for {} epochs",
                params.early_stopping_patience
            ));
            stop = true;
        }
    }
    if let Some(s) = &trainer.scaler {
        if s.skipped() > 0 {
            ctx.progress.note(&format!("amp: {} step(s) skipped for overflowing gradients", s.skipped()));
        }
    }

    let best = states.best_weights().ok_or_else(|| StageError::msg("training ran no epoch: no weights to keep"))?;
    let weights_path = ctx.out_dir.join(WEIGHTS_FILE);
    std::fs::copy(&best, &weights_path).map_err(|e| StageError::with_source(format!("{}: cannot write", weights_path.display()), e))?;
    let (history, stopping) = (&trainer.history, &trainer.stopping);
    write_history(ctx.out_dir, history)?;
    let card = ModelCard {
        hyperparameters: serde_json::Value::Object(canonical.clone()),
        parameter_count,
        train_seconds: earlier_seconds + started.elapsed().as_secs_f64(),
        epochs_run: history.len(),
        best_epoch: stopping.best_epoch(),
        best_val_accuracy: stopping.best(),
        device: device_name(device),
        train_clips: data.train.len(),
        val_clips: data.val.len(),
        class_weights,
        ..card_for_spec(&spec, CLASS_NAMES.iter().map(|s| s.to_string()).collect())
    };
    card.write(ctx.out_dir)?;
    Ok(StageOutcome::new(format!(
        "{}: best val accuracy {:.3} at epoch {} of {} ({:.0}s, {})",
        card.spec.arch, card.best_val_accuracy, card.best_epoch, card.epochs_run, card.train_seconds, card.device
    )))
}

/// Takes up the state a killed attempt left: the model's variables, the optimiser's moments,
/// the model's random position and the rest of [`TrainerState`]. `None` when there is none (or
/// one that cannot be used, which is said and discarded).
fn resume(
    states: &StateDir,
    vs: &nn::VarStore,
    model: &dyn Model,
    opt: &mut Adam,
    params: &TrainParams,
    ctx: &StageContext<'_>,
) -> Result<Option<TrainerState>, StageError> {
    let saved = match states.latest() {
        Ok(Some(saved)) => saved,
        Ok(None) => return Ok(None),
        Err(why) => {
            ctx.progress.note(&format!("starting over: the resumable state cannot be used ({why})"));
            states.clear();
            return Ok(None);
        }
    };
    let state = saved.state.clone();
    if state.epochs != params.epochs || state.epoch > params.epochs {
        ctx.progress.note(&format!("starting over: the resumable state is of a {}-epoch training", state.epochs));
        states.clear();
        return Ok(None);
    }
    load_weights(vs, &saved.weights())?;
    opt.restore(&saved.adam()?, &state.adam_steps)?;
    opt.set_lr(state.plateau.lr());
    if let Some(position) = &state.model_random {
        let position = position.parse().map_err(|e| StageError::msg(format!("resumable state: bad random position {position}: {e}")))?;
        model.set_random_position(position);
    }
    ctx.progress.note(&format!(
        "resuming from epoch {} of {}: a killed or preempted attempt finished it (best val accuracy {:.3} at epoch {})",
        state.epoch,
        state.epochs,
        state.stopping.best(),
        state.stopping.best_epoch()
    ));
    Ok(Some(state))
}

/// Loads `pretrained` into `vs`: a `train` output (folder with `model.json`, or its
/// `model.safetensors`) must match the model exactly, cache geometry included; anything else
/// goes through the torchvision importer. Returns a line for the progress log.
fn start_from(vs: &mut nn::VarStore, spec: &ModelSpec, path: &Path) -> Result<String, StageError> {
    let own_dir = if path.is_dir() {
        Some(path.to_path_buf())
    } else {
        path.parent().filter(|d| d.join(CARD_FILE).is_file() && path.file_name() == Some(WEIGHTS_FILE.as_ref())).map(Path::to_path_buf)
    };
    if let Some(dir) = own_dir {
        let card = ModelCard::read(&dir)?;
        let theirs = card.spec.clone();
        if theirs != *spec {
            return Err(StageError::msg(format!(
                "pretrained model {} was trained as {} T={} S={} ({} classes, {:?} pooling) but this run builds {} \
                 T={} S={} ({} classes, {:?} pooling) from its cache",
                dir.display(),
                theirs.arch,
                theirs.frames,
                theirs.size,
                theirs.num_classes,
                theirs.temporal_pool,
                spec.arch,
                spec.frames,
                spec.size,
                spec.num_classes,
                spec.temporal_pool
            )));
        }
        load_weights(vs, &dir.join(WEIGHTS_FILE))?;
        return Ok(format!("pretrained: all weights from {}", dir.display()));
    }
    if !path.is_file() {
        return Err(StageError::msg(format!("pretrained weights {}: no such file or folder", path.display())));
    }
    let report = models::load_pretrained(vs, spec, path)?;
    Ok(format!(
        "pretrained: {} tensors from {}, {} kept fresh ({}), {} unused in the file",
        report.loaded.len(),
        path.display(),
        report.kept_fresh.len(),
        report.kept_fresh.join(", "),
        report.unused_in_file.len()
    ))
}

/// The epoch line's tail when feeding the model cost a noticeable share of the epoch (the
/// producer thread fell behind, or a GPU waited for its inputs); empty otherwise, so the usual
/// line stays short enough for an 80-column terminal.
fn input_overhead_note(pass: &super::epoch::PassStats, epoch_seconds: f64) -> String {
    let overhead = pass.data_wait + pass.input_prep;
    if overhead < 0.5 || overhead < 0.05 * epoch_seconds {
        return String::new();
    }
    format!(" ({:.1}s waiting for data, {:.1}s preparing inputs)", pass.data_wait, pass.input_prep)
}

#[cfg(test)]
mod tests {
    use super::super::epoch::PassStats;
    use super::input_overhead_note;

    fn pass(data_wait: f64, input_prep: f64) -> PassStats {
        PassStats { loss: 1.0, accuracy: 0.5, data_wait, input_prep }
    }

    #[test]
    fn the_epoch_line_mentions_input_overhead_only_when_it_matters() {
        assert_eq!(input_overhead_note(&pass(0.01, 0.0), 10.0), "", "a hundredth of a second is noise");
        assert_eq!(input_overhead_note(&pass(0.4, 0.3), 60.0), "", "0.7 s of a minute is under 5 %");
        assert_eq!(input_overhead_note(&pass(2.0, 0.5), 10.0), " (2.0s waiting for data, 0.5s preparing inputs)");
    }
}
