//! One pass over a split: [`train_epoch`] (augmented, shuffled, with optimiser steps) and
//! [`evaluate`] (eval mode, no gradients, fixed order). Both pull batches from the producer
//! thread in [`super::data`] and move them to the device as uint8 before converting.

use std::time::Instant;

use stage_api::StageError;
use tch::nn::ModuleT;
use tch::{Device, Kind, Reduction, Tensor};

use super::adam::Adam;
use super::amp::{all_finite, LossScaler};
use super::augment::augment;
use super::data::{spawn_batches, Batch, Example, Pass, Prepare};
use crate::cache::ClipLoader;
use crate::preprocess::{normalize, to_unit_float, IMAGENET_MEAN, IMAGENET_STD};

/// Mean loss and accuracy of a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassStats {
    pub loss: f64,
    pub accuracy: f64,
    /// Seconds the training thread waited for the producer (ideally ~0).
    pub data_wait: f64,
    /// Seconds the training thread spent converting, augmenting and normalising batches (on a
    /// GPU; on the CPU the producer thread does that while the previous step runs).
    pub input_prep: f64,
}

/// What a pass needs besides the data.
pub struct Criterion<'a> {
    pub device: Device,
    /// Cross-entropy class weights on `device`.
    pub class_weights: Option<&'a Tensor>,
}

impl Criterion<'_> {
    fn inputs(&self, batch: &Batch) -> (Tensor, Tensor) {
        let xs = match &batch.inputs {
            Some(prepared) => prepared.shallow_clone(),
            None => prepare(batch, self.device),
        };
        (xs, batch.labels.to_device(self.device))
    }

    /// What the producer thread should prepare: everything, when the model runs on the CPU.
    fn producer_prepare(&self) -> Option<Prepare> {
        (self.device == Device::Cpu).then_some(|batch: &Batch| prepare(batch, Device::Cpu))
    }

    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        logits.to_kind(Kind::Float).cross_entropy_loss(labels, self.class_weights, Reduction::Mean, -100, 0.0)
    }
}

/// uint8 batch -> float in [0, 1] on `device` -> augmented (training) -> ImageNet-normalised.
fn prepare(batch: &Batch, device: Device) -> Tensor {
    let xs = to_unit_float(&batch.images, device);
    let xs = match &batch.transforms {
        Some(t) => augment(&xs, t),
        None => xs,
    };
    normalize(&xs, IMAGENET_MEAN, IMAGENET_STD)
}

/// Running sums over batches.
#[derive(Default)]
struct Tally {
    loss: f64,
    correct: i64,
    seen: i64,
    data_wait: f64,
    input_prep: f64,
}

impl Tally {
    fn add(&mut self, loss: &Tensor, logits: &Tensor, labels: &Tensor) {
        let n = labels.size()[0];
        self.loss += loss.double_value(&[]) * n as f64;
        self.correct += logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Int64).int64_value(&[]);
        self.seen += n;
    }

    fn stats(&self) -> PassStats {
        let n = self.seen.max(1) as f64;
        PassStats { loss: self.loss / n, accuracy: self.correct as f64 / n, data_wait: self.data_wait, input_prep: self.input_prep }
    }
}

/// The optimiser side of a training pass.
pub struct Stepper<'a> {
    pub opt: &'a mut Adam,
    /// fp16 autocast + loss scaling when set.
    pub scaler: Option<&'a mut LossScaler>,
}

/// One training epoch over `examples`.
pub fn train_epoch(
    model: &dyn ModuleT,
    stepper: &mut Stepper<'_>,
    criterion: &Criterion<'_>,
    loader: &ClipLoader,
    examples: &[Example],
    pass: Pass,
) -> Result<PassStats, StageError> {
    std::thread::scope(|scope| {
        let batches = spawn_batches(scope, loader, examples, pass, criterion.producer_prepare());
        let mut tally = Tally::default();
        loop {
            let waiting = Instant::now();
            let Ok(batch) = batches.recv() else { break };
            tally.data_wait += waiting.elapsed().as_secs_f64();
            let batch = batch?;
            let preparing = Instant::now();
            let (xs, labels) = criterion.inputs(&batch);
            if criterion.device == Device::Cpu {
                // On a GPU this would only time the kernel launches; the CPU runs them inline.
                tally.input_prep += preparing.elapsed().as_secs_f64();
            }
            let amp = stepper.scaler.is_some();
            let logits = tch::autocast(amp, || model.forward_t(&xs, true));
            let loss = criterion.loss(&logits, &labels);
            match stepper.scaler.as_deref_mut() {
                Some(scaler) => {
                    scaler.backward_step(stepper.opt, &loss);
                }
                None => {
                    if !all_finite(&loss) {
                        return Err(StageError::msg(format!(
                            "training diverged: the loss became {} (try a lower `lr`)",
                            loss.double_value(&[])
                        )));
                    }
                    stepper.opt.backward_step(&loss);
                }
            }
            tally.add(&loss.detach(), &logits.detach(), &labels);
        }
        Ok(tally.stats())
    })
}

/// Loss and accuracy of `model` (eval mode) on `examples`.
pub fn evaluate(
    model: &dyn ModuleT,
    criterion: &Criterion<'_>,
    loader: &ClipLoader,
    examples: &[Example],
    batch_size: usize,
) -> Result<PassStats, StageError> {
    let pass = Pass { batch_size, shuffle_seed: None, augment_seed: None };
    std::thread::scope(|scope| {
        let batches = spawn_batches(scope, loader, examples, pass, criterion.producer_prepare());
        let mut tally = Tally::default();
        tch::no_grad(|| {
            for batch in batches {
                let batch = batch?;
                let (xs, labels) = criterion.inputs(&batch);
                let logits = model.forward_t(&xs, false);
                let loss = criterion.loss(&logits, &labels);
                tally.add(&loss, &logits, &labels);
            }
            Ok(tally.stats())
        })
    })
}
