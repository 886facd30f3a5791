//! The learning-rate schedule and the stopping rule, both driven by validation accuracy.
//!
//! [`ReduceOnPlateau`] follows PyTorch's `torch.optim.lr_scheduler.ReduceLROnPlateau` with
//! `mode="max"`, `threshold=1e-4`, `threshold_mode="rel"`, `cooldown=0`, `min_lr=0`: after more
//! than `patience` epochs without a relative improvement the rate is multiplied by `factor`.
//! [`EarlyStopping`] stops after `patience` epochs without a new best accuracy; the same
//! "new best" decides which checkpoint is kept.

/// PyTorch's default relative improvement threshold.
const THRESHOLD: f64 = 1e-4;

/// `ReduceLROnPlateau(mode="max")`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReduceOnPlateau {
    lr: f64,
    factor: f64,
    patience: usize,
    #[serde(with = "no_best_as_null")]
    best: f64,
    bad_epochs: usize,
}

impl ReduceOnPlateau {
    pub fn new(lr: f64, factor: f64, patience: usize) -> Self {
        Self { lr, factor, patience, best: f64::NEG_INFINITY, bad_epochs: 0 }
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Records an epoch's metric and returns the learning rate for the next epoch.
    pub fn step(&mut self, metric: f64) -> f64 {
        if metric > self.best * (1.0 + THRESHOLD) || self.best == f64::NEG_INFINITY {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.bad_epochs > self.patience {
            self.lr *= self.factor;
            self.bad_epochs = 0;
        }
        self.lr
    }
}

/// Stops training after `patience` epochs without a new best metric.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EarlyStopping {
    patience: usize,
    #[serde(with = "no_best_as_null")]
    best: f64,
    best_epoch: usize,
    bad_epochs: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        Self { patience, best: f64::NEG_INFINITY, best_epoch: 0, bad_epochs: 0 }
    }

    /// Records `metric` for `epoch`; true when it is a new best (keep this checkpoint).
    pub fn observe(&mut self, epoch: usize, metric: f64) -> bool {
        if metric > self.best {
            self.best = metric;
            self.best_epoch = epoch;
            self.bad_epochs = 0;
            true
        } else {
            self.bad_epochs += 1;
            false
        }
    }

    /// True once `patience` epochs in a row brought no new best.
    pub fn should_stop(&self) -> bool {
        self.bad_epochs >= self.patience
    }

    pub fn best(&self) -> f64 {
        self.best
    }

    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }
}

/// "No best yet" is -inf, which JSON cannot hold: it is saved as `null`.
mod no_best_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(best: &f64, s: S) -> Result<S::Ok, S::Error> {
        if best.is_finite() {
            s.serialize_f64(*best)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_matches_pytorch() {
        // PyTorch 2.x:
        //   opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
        //   s = ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
        //   for m in [0.1, 0.2, 0.2, 0.2, 0.2, 0.20001, 0.3, 0.3, 0.3, 0.3]:
        //       s.step(m); print(opt.param_groups[0]["lr"])
        //   -> 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25
        let mut s = ReduceOnPlateau::new(1.0, 0.5, 2);
        let lrs: Vec<f64> = [0.1, 0.2, 0.2, 0.2, 0.2, 0.20001, 0.3, 0.3, 0.3, 0.3].iter().map(|&m| s.step(m)).collect();
        assert_eq!(lrs, [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25]);
    }

    #[test]
    fn early_stopping_counts_epochs_without_a_new_best() {
        let mut e = EarlyStopping::new(2);
        assert!(e.observe(1, 0.5));
        assert!(!e.observe(2, 0.5));
        assert!(!e.should_stop());
        assert!(e.observe(3, 0.6));
        assert!(!e.observe(4, 0.4));
        assert!(!e.observe(5, 0.6));
        assert!(e.should_stop());
        assert_eq!((e.best(), e.best_epoch()), (0.6, 3));
    }
}
