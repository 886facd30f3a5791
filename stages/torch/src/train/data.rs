//! Feeding batches: a producer thread copies clips out of the memory-mapped cache into
//! batch tensors (and draws their augmentation parameters) while the training thread runs
//! the model; a bounded channel keeps [`PREFETCH`] batches ready. When training on the CPU the
//! producer also turns the batch into the model's input (float, augmented, normalised), so
//! that work overlaps the previous step instead of delaying the next one; on a GPU that work
//! belongs on the device, in the training thread.
//!
//! Order and augmentation are functions of `(seed, epoch)` only, never of timing, so a seed
//! reproduces a run. A trailing batch of one clip joins the batch before it: BatchNorm
//! cannot normalise a single sample in training mode once the spatial size is 1x1.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::Scope;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stage_api::StageError;
use tch::Tensor;

use super::augment::ClipTransform;
use crate::cache::ClipLoader;

/// Batches prepared ahead of the training thread.
pub const PREFETCH: usize = 3;

/// A clip to feed: its id in the cache and its class index.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub clip_id: String,
    pub class: i64,
}

/// One batch on the CPU.
pub struct Batch {
    /// uint8 `[B, T, S, S, 3]`.
    pub images: Tensor,
    /// int64 `[B]`.
    pub labels: Tensor,
    /// One transform per clip when augmenting.
    pub transforms: Option<Vec<ClipTransform>>,
    /// The model input, already prepared by the producer (CPU training), else `None`.
    pub inputs: Option<Tensor>,
}

/// Turns a batch into the model's input on the producer thread.
pub type Prepare = fn(&Batch) -> Tensor;

/// How to go through a set of examples once.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    pub batch_size: usize,
    /// Shuffle with this seed (training); `None` keeps the given order (evaluation).
    pub shuffle_seed: Option<u64>,
    /// Draw augmentations with this seed.
    pub augment_seed: Option<u64>,
}

/// A seed for `(seed, epoch, stream)`, so different epochs and purposes never share a stream.
pub fn derive_seed(seed: u64, epoch: usize, stream: u64) -> u64 {
    // SplitMix64-style mixing of the three numbers.
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The example indices of each batch, in order.
pub fn batch_plan(n: usize, pass: &Pass) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(seed) = pass.shuffle_seed {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(pass.batch_size.max(1)).map(<[usize]>::to_vec).collect();
    if batches.len() > 1 && batches.last().is_some_and(|b| b.len() == 1) {
        let last = batches.pop().unwrap_or_default();
        if let Some(previous) = batches.last_mut() {
            previous.extend(last);
        }
    }
    batches
}

/// Starts a producer thread in `scope` and returns the receiving end; the thread stops early
/// when the receiver is dropped.
pub fn spawn_batches<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    loader: &'env ClipLoader,
    examples: &'env [Example],
    pass: Pass,
    prepare: Option<Prepare>,
) -> Receiver<Result<Batch, StageError>> {
    let (tx, rx) = sync_channel(PREFETCH);
    scope.spawn(move || {
        let mut augment_rng = pass.augment_seed.map(ChaCha8Rng::seed_from_u64);
        for indices in batch_plan(examples.len(), &pass) {
            let batch = make_batch(loader, examples, &indices, augment_rng.as_mut()).map(|mut b| {
                b.inputs = prepare.map(|f| f(&b));
                b
            });
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                break;
            }
        }
    });
    rx
}

fn make_batch(
    loader: &ClipLoader,
    examples: &[Example],
    indices: &[usize],
    augment_rng: Option<&mut ChaCha8Rng>,
) -> Result<Batch, StageError> {
    let ids: Vec<&str> = indices.iter().map(|&i| examples[i].clip_id.as_str()).collect();
    let labels: Vec<i64> = indices.iter().map(|&i| examples[i].class).collect();
    let transforms = augment_rng.map(|rng| indices.iter().map(|_| ClipTransform::sample(rng)).collect());
    Ok(Batch { images: crate::cache::batch_tensor(loader, &ids)?, labels: Tensor::from_slice(&labels), transforms, inputs: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_everything_once_and_merges_a_single_tail() {
        let pass = Pass { batch_size: 4, shuffle_seed: Some(1), augment_seed: None };
        let plan = batch_plan(9, &pass);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [4, 5]);
        let mut all: Vec<usize> = plan.concat();
        all.sort_unstable();
        assert_eq!(all, (0..9).collect::<Vec<_>>());
        assert_eq!(plan, batch_plan(9, &pass));
        let other = batch_plan(9, &Pass { shuffle_seed: Some(2), ..pass });
        assert_ne!(plan, other);
        let ordered = batch_plan(6, &Pass { shuffle_seed: None, ..pass });
        assert_eq!(ordered, [vec![0, 1, 2, 3], vec![4, 5]]);
    }

    #[test]
    fn derived_seeds_differ() {
        let seeds = [derive_seed(0, 0, 0), derive_seed(0, 1, 0), derive_seed(0, 0, 1), derive_seed(1, 0, 0)];
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j]);
            }
        }
    }
}
