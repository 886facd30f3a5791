//! The `train` stage's run: data, model, optimiser and schedule, the epoch loop with
//! best-checkpoint keeping and early stopping, then the history and the model card.

use std::path::Path;
use std::time::Instant;

use stage_api::{Params, StageContext, StageError, StageOutcome};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};

use super::amp::LossScaler;
use super::checkpoint::{load_weights, save_weights, ModelCard, CARD_FILE, WEIGHTS_FILE};
use super::data::{derive_seed, Pass};
use super::dataset::TrainingData;
use super::device::device_name;
use super::epoch::{evaluate, train_epoch, Criterion, Stepper};
use super::history::{write_history, EpochRecord};
use super::schedule::{EarlyStopping, ReduceOnPlateau};
use super::TrainParams;
use crate::models::{self, ModelSpec};
use crate::CLASS_NAMES;

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
    let extract_json = extract.dir.join("extract.json");
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
    if let Some(path) = params.pretrained_path(ctx.base_dir) {
        let line = start_from(&mut vs, &spec, &path)?;
        ctx.progress.note(&line);
    }
    let parameter_count = models::parameter_count(&vs);

    let adam = nn::Adam { wd: params.weight_decay, ..Default::default() };
    let mut opt = adam.build(&vs, params.lr).map_err(|e| StageError::with_source("cannot create the Adam optimiser", e))?;
    let trainable = vs.trainable_variables();
    let mut scaler = amp.then(LossScaler::default);
    let class_weights = params.class_weights.then(|| data.class_weights());
    let weights_tensor =
        class_weights.as_ref().map(|w| Tensor::from_slice(&w.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_device(device));
    let criterion = Criterion { device, class_weights: weights_tensor.as_ref() };

    let mut plateau = ReduceOnPlateau::new(params.lr, params.plateau_factor, params.plateau_patience);
    let mut stopping = EarlyStopping::new(params.early_stopping_patience);
    let mut history = Vec::new();
    let weights_path = ctx.out_dir.join(WEIGHTS_FILE);
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
    for epoch in 1..=params.epochs {
        let epoch_started = Instant::now();
        let lr = plateau.lr();
        let pass = Pass {
            batch_size: params.batch_size,
            shuffle_seed: Some(derive_seed(params.seed, epoch, SHUFFLE_STREAM)),
            augment_seed: params.augment.then(|| derive_seed(params.seed, epoch, AUGMENT_STREAM)),
        };
        let mut stepper = Stepper { opt: &mut opt, scaler: scaler.as_mut(), trainable: &trainable };
        let train = train_epoch(model.as_ref(), &mut stepper, &criterion, &data.loader, &data.train, pass)
            .map_err(|e| StageError::msg(format!("epoch {epoch}: {}", e.message)))?;
        let val = evaluate(model.as_ref(), &criterion, &data.loader, &data.val, params.batch_size)?;
        if stopping.observe(epoch, val.accuracy) {
            save_weights(&vs, &weights_path)?;
        }
        let next_lr = plateau.step(val.accuracy);
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
        ctx.progress.note(&format!(
            "{} (waited {:.2}s for data, {:.2}s preparing inputs)",
            record.line(params.epochs),
            train.data_wait,
            train.input_prep
        ));
        ctx.progress.advance(1);
        history.push(record);
        if stopping.should_stop() && epoch < params.epochs {
            ctx.progress.note(&format!(
                "early stopping after epoch {epoch}: no better validation accuracy for {} epochs",
                params.early_stopping_patience
            ));
            break;
        }
    }
    if let Some(s) = &scaler {
        if s.skipped() > 0 {
            ctx.progress.note(&format!("amp: {} step(s) skipped for overflowing gradients", s.skipped()));
        }
    }

    write_history(ctx.out_dir, &history)?;
    let card = ModelCard {
        hyperparameters: serde_json::Value::Object(canonical.clone()),
        parameter_count,
        train_seconds: started.elapsed().as_secs_f64(),
        epochs_run: history.len(),
        best_epoch: stopping.best_epoch(),
        best_val_accuracy: stopping.best(),
        device: device_name(device),
        train_clips: data.train.len(),
        val_clips: data.val.len(),
        class_weights,
        ..ModelCard::for_spec(&spec, CLASS_NAMES.iter().map(|s| s.to_string()).collect())
    };
    card.write(ctx.out_dir)?;
    Ok(StageOutcome::new(format!(
        "{}: best val accuracy {:.3} at epoch {} of {} ({:.0}s, {})",
        card.spec.arch, card.best_val_accuracy, card.best_epoch, card.epochs_run, card.train_seconds, card.device
    )))
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
        let theirs = card.spec();
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
