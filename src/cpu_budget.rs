//! How many of this machine's cores the instances running at once may use, when the local
//! executor computes them and `-j` is not given.
//!
//! An instance takes its stage's `executor.resources.STAGE.cpus` (or `default`'s), else every
//! core. It starts only while what it takes fits next to what the running ones took, or when
//! nothing runs (so one that asks for more than the machine has still runs, alone). Instances
//! start in the order they became ready: a big one waiting at the head is not overtaken, so it
//! cannot starve behind a stream of small ones.

/// Cores in use by running instances, out of `cores`.
#[derive(Debug)]
pub struct CpuBudget {
    cores: usize,
    in_use: usize,
}

impl CpuBudget {
    pub fn new(cores: usize) -> Self {
        Self { cores: cores.max(1), in_use: 0 }
    }

    /// The machine's cores (at least 1).
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Takes `cpus` cores if they fit (or nothing is running); whether it did.
    pub fn try_take(&mut self, cpus: usize) -> bool {
        if self.in_use > 0 && self.in_use + cpus > self.cores {
            return false;
        }
        self.in_use += cpus;
        true
    }

    /// Returns what a finished instance took.
    pub fn give_back(&mut self, cpus: usize) {
        self.in_use = self.in_use.saturating_sub(cpus);
    }
}

#[cfg(test)]
mod tests {
    use super::CpuBudget;

    #[test]
    fn packs_what_fits_and_lets_a_big_one_run_alone() {
        let mut budget = CpuBudget::new(2);
        assert!(budget.try_take(1));
        assert!(budget.try_take(1));
        assert!(!budget.try_take(1), "a third 1-core instance waits on 2 cores");
        budget.give_back(1);
        assert!(!budget.try_take(2), "an all-core instance waits while anything runs");
        budget.give_back(1);
        assert!(budget.try_take(2));
        budget.give_back(2);
        assert!(budget.try_take(8), "more than the machine has runs, alone");
        assert!(!budget.try_take(1));
    }

    #[test]
    fn zero_cores_counts_as_one() {
        assert_eq!(CpuBudget::new(0).cores(), 1);
    }
}
