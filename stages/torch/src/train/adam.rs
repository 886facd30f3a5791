//! Adam (Kingma & Ba), as `torch.optim.Adam` defines it: L2 weight decay added to the gradient,
//! bias-corrected moments, no amsgrad, betas (0.9, 0.999), eps 1e-8.
//!
//! Ours rather than tch's because tch's optimiser keeps its moments inside libtorch with no way
//! to read or restore them, and a training that resumes after a kill must continue from the
//! same moments to give the same bytes as one that was never interrupted. Here the moments and
//! step counts are tensors and numbers by parameter name ([`Adam::state`], [`Adam::restore`]).
//! The arithmetic is PyTorch's; its rounding is not bit-for-bit libtorch's, which fuses some
//! multiplications into additions.

use std::collections::HashMap;

use stage_api::StageError;
use tch::nn::VarStore;
use tch::Tensor;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One trainable variable and its moments.
struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Steps this variable took (PyTorch counts per parameter; a variable without a gradient
    /// in a step does not advance).
    steps: i64,
}

pub struct Adam {
    lr: f64,
    weight_decay: f64,
    slots: Vec<Slot>,
}

/// What [`Adam::state`] returns: the moments by `exp_avg.<name>` / `exp_avg_sq.<name>`, and
/// the step count of every variable.
pub struct AdamState {
    pub tensors: Vec<(String, Tensor)>,
    pub steps: HashMap<String, i64>,
}

impl Adam {
    /// Adam over the trainable variables of `vs` (those that require gradients).
    pub fn new(vs: &VarStore, lr: f64, weight_decay: f64) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, param)| {
                let zeros = || tch::no_grad(|| param.zeros_like());
                Slot { exp_avg: zeros(), exp_avg_sq: zeros(), param, name, steps: 0 }
            })
            .collect();
        Self { lr, weight_decay, slots }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The variables it updates.
    pub fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.slots.iter().map(|s| &s.param)
    }

    /// Zeroes every gradient in place.
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.param.zero_grad();
        }
    }

    /// `zero_grad`, `loss.backward()`, `step`.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// One update of every variable that has a gradient.
    pub fn step(&mut self) {
        let (lr, weight_decay) = (self.lr, self.weight_decay);
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                slot.steps += 1;
                let t = slot.steps as f64;
                let bias_correction1 = 1.0 - BETA1.powf(t);
                let bias_correction2 = 1.0 - BETA2.powf(t);
                let grad = if weight_decay != 0.0 { &grad + &slot.param * weight_decay } else { grad };
                let _ = slot.exp_avg.g_mul_scalar_(BETA1).g_add_(&(&grad * (1.0 - BETA1)));
                let _ = slot.exp_avg_sq.g_mul_scalar_(BETA2).addcmul_(&grad, &(&grad * (1.0 - BETA2)));
                let denom = (slot.exp_avg_sq.sqrt() / bias_correction2.sqrt()) + EPS;
                let step_size = lr / bias_correction1;
                let _ = slot.param.addcdiv_(&(&slot.exp_avg * -step_size), &denom);
            }
        });
    }

    /// The moments and step counts, to save.
    pub fn state(&self) -> AdamState {
        let mut tensors = Vec::with_capacity(2 * self.slots.len());
        let mut steps = HashMap::new();
        for slot in &self.slots {
            tensors.push((format!("exp_avg.{}", slot.name), slot.exp_avg.shallow_clone()));
            tensors.push((format!("exp_avg_sq.{}", slot.name), slot.exp_avg_sq.shallow_clone()));
            steps.insert(slot.name.clone(), slot.steps);
        }
        AdamState { tensors, steps }
    }

    /// Restores what [`Adam::state`] gave, for the same variables; anything missing or of
    /// another shape is an error naming it.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, steps: &HashMap<String, i64>) -> Result<(), StageError> {
        for slot in &mut self.slots {
            for (prefix, target) in [("exp_avg", &mut slot.exp_avg), ("exp_avg_sq", &mut slot.exp_avg_sq)] {
                let name = format!("{prefix}.{}", slot.name);
                let saved = tensors.get(&name).ok_or_else(|| StageError::msg(format!("optimiser state: no `{name}`")))?;
                if saved.size() != target.size() {
                    return Err(StageError::msg(format!(
                        "optimiser state: `{name}` is {:?}, the variable is {:?}",
                        saved.size(),
                        target.size()
                    )));
                }
                tch::no_grad(|| target.f_copy_(saved)).map_err(|e| StageError::msg(format!("optimiser state: `{name}`: {e}")))?;
            }
            slot.steps =
                *steps.get(&slot.name).ok_or_else(|| StageError::msg(format!("optimiser state: no step count of `{}`", slot.name)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::{Device, Kind};

    use super::*;

    fn model(seed: i64) -> (VarStore, nn::Linear) {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 6, 3, Default::default());
        (vs, lin)
    }

    fn loss(lin: &nn::Linear, i: i64) -> Tensor {
        let xs = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([4, 6]) / (10.0 + i as f64);
        (lin.forward(&xs) - 0.5).pow_tensor_scalar(2).sum(Kind::Float)
    }

    #[test]
    fn follows_libtorch_adam() {
        let (vs_a, lin_a) = model(1);
        let initial = lin_a.ws.copy();
        // The same start (other tests draw from libtorch's generator at the same time).
        let (vs_b, lin_b) = model(1);
        tch::no_grad(|| {
            lin_b.ws.shallow_clone().copy_(&lin_a.ws);
            lin_b.bs.as_ref().unwrap().shallow_clone().copy_(lin_a.bs.as_ref().unwrap());
        });
        let mut ours = Adam::new(&vs_a, 1e-2, 1e-3);
        let mut theirs = nn::Adam { wd: 1e-3, ..Default::default() }.build(&vs_b, 1e-2).unwrap();
        for i in 0..20 {
            ours.backward_step(&loss(&lin_a, i));
            theirs.backward_step(&loss(&lin_b, i));
        }
        // Same update rule; only the rounding of fused multiply-adds differs.
        let diff = (&lin_a.ws - &lin_b.ws).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "max |ours - libtorch| = {diff}");
        assert!((&lin_a.ws - &initial).abs().max().double_value(&[]) > 1e-2, "it trained");
    }

    #[test]
    fn a_restored_state_continues_identically() {
        let (_, start) = model(2);
        let run = |split: Option<i64>| {
            let (vs, lin) = model(2);
            // One start for both runs (other tests draw from libtorch's generator meanwhile).
            tch::no_grad(|| {
                lin.ws.shallow_clone().copy_(&start.ws);
                lin.bs.as_ref().unwrap().shallow_clone().copy_(start.bs.as_ref().unwrap());
            });
            let mut opt = Adam::new(&vs, 1e-2, 0.0);
            for i in 0..10 {
                if split == Some(i) {
                    // Save, rebuild from scratch, restore: what a resumed training does.
                    let state = opt.state();
                    let saved: HashMap<String, Tensor> = state.tensors.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
                    let weights = lin.ws.copy();
                    let bias = lin.bs.as_ref().unwrap().copy();
                    let (vs2, lin2) = model(99);
                    tch::no_grad(|| {
                        lin2.ws.shallow_clone().copy_(&weights);
                        lin2.bs.as_ref().unwrap().shallow_clone().copy_(&bias);
                    });
                    let mut opt2 = Adam::new(&vs2, 1e-2, 0.0);
                    opt2.restore(&saved, &state.steps).unwrap();
                    for j in i..10 {
                        opt2.backward_step(&loss(&lin2, j));
                    }
                    return lin2.ws.copy();
                }
                opt.backward_step(&loss(&lin, i));
            }
            lin.ws.copy()
        };
        assert!(run(None).equal(&run(Some(4))), "resumed after 4 steps: the same bytes");
    }

    #[test]
    fn a_state_of_other_variables_is_refused() {
        let (vs, _) = model(3);
        let mut opt = Adam::new(&vs, 1e-2, 0.0);
        let err = opt.restore(&HashMap::new(), &HashMap::new()).unwrap_err();
        assert!(err.message.contains("no `exp_avg.fc."), "{}", err.message);
    }
}
