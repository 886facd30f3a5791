//! Dynamic loss scaling for mixed-precision (fp16 autocast) training, as PyTorch's
//! `torch.amp.GradScaler` does it: the loss is multiplied by a large scale before `backward`
//! so small fp16 gradients do not flush to zero; the gradients are divided back before the
//! optimiser step; a step whose gradients overflowed (inf/NaN) is skipped and the scale
//! halved; after [`GROWTH_INTERVAL`] good steps in a row the scale doubles.
//!
//! tch's `autocast` only offers libtorch's default CUDA autocast type (fp16), hence the
//! scaler. On the CPU the scaler still works (the tests run it there) but `amp` is ignored.

use tch::{Kind, Tensor};

use super::adam::Adam;

/// PyTorch's defaults.
const INITIAL_SCALE: f64 = 65536.0;
const GROWTH_INTERVAL: u32 = 2000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    scale: f64,
    good_steps: u32,
    skipped: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self { scale: INITIAL_SCALE, good_steps: 0, skipped: 0 }
    }
}

impl LossScaler {
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Steps skipped so far because of overflowing gradients.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Backward pass of `loss * scale`, unscaling, and an optimiser step unless the
    /// gradients of `vars` are not finite. Returns whether the step was taken.
    pub fn backward_step(&mut self, opt: &mut Adam, loss: &Tensor) -> bool {
        opt.zero_grad();
        (loss * self.scale).backward();
        let grads: Vec<Tensor> = opt.params().map(Tensor::grad).filter(Tensor::defined).collect();
        let finite = tch::no_grad(|| grads.iter().all(|g| g.isfinite().all().int64_value(&[]) != 0 || g.numel() == 0));
        if !finite {
            self.scale /= 2.0;
            self.good_steps = 0;
            self.skipped += 1;
            opt.zero_grad();
            return false;
        }
        tch::no_grad(|| {
            for g in &grads {
                let mut g = g.shallow_clone();
                let _ = g.g_div_scalar_(self.scale);
            }
        });
        opt.step();
        self.good_steps += 1;
        if self.good_steps == GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

/// True when `t` holds only finite values (used for the loss of a plain step as well).
pub fn all_finite(t: &Tensor) -> bool {
    t.isfinite().all().to_kind(Kind::Int64).int64_value(&[]) != 0
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, Module};
    use tch::Device;

    use super::*;

    fn setup() -> (nn::VarStore, nn::Linear, Adam) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let opt = Adam::new(&vs, 0.1, 0.0);
        (vs, lin, opt)
    }

    #[test]
    fn scaled_step_equals_plain_step() {
        let xs = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]);
        let (vs_a, lin_a, mut opt_a) = setup();
        opt_a.backward_step(&lin_a.forward(&xs).sum(Kind::Float));
        let (vs_b, lin_b, mut opt_b) = setup();
        let mut scaler = LossScaler::default();
        assert!(scaler.backward_step(&mut opt_b, &lin_b.forward(&xs).sum(Kind::Float)));
        let (a, b) = (&vs_a.variables()["fc.weight"], &vs_b.variables()["fc.weight"]);
        assert!(a.allclose(b, 1e-6, 1e-6, false));
    }

    #[test]
    fn overflow_skips_the_step_and_halves_the_scale() {
        let (vs, lin, mut opt) = setup();
        let before = vs.variables()["fc.weight"].copy();
        let xs = Tensor::from_slice(&[f32::INFINITY, 2.0, 3.0]).view([1, 3]);
        let mut scaler = LossScaler::default();
        assert!(!scaler.backward_step(&mut opt, &lin.forward(&xs).sum(Kind::Float)));
        assert_eq!((scaler.scale(), scaler.skipped()), (32768.0, 1));
        assert!(before.equal(&vs.variables()["fc.weight"]));
    }
}
