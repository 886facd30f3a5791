//! Which frames of a clip are kept: T frames spread uniformly over the N decoded frames.
//!
//! The rule (the same for every clip, documented in `CACHE-FORMAT.md`): output frame `i`
//! (`0 <= i < T`) is decoded frame
//!
//! ```text
//! idx(i) = floor((2i + 1) * N / (2T))        i.e. floor((i + 0.5) * N / T)
//! ```
//!
//! the frame under the centre of the i-th of T equal slices of the clip. For `N >= T` the
//! indices are strictly increasing (distinct frames). For `N < T` the same formula repeats
//! frames (each decoded frame appears `T/N` times, rounded); such clips are flagged
//! `padded: true` in the index. `N = 0` has no valid sample and is the caller's error.
//!
//! `N` is the number of frames ffmpeg actually decoded, not the container's count (which can
//! be off by one): see `decode.rs` for how the two are reconciled.
//!
//! ```
//! use stages_video::extract::sampling::sample_indices;
//! assert_eq!(sample_indices(122, 10), vec![6, 18, 30, 42, 54, 67, 79, 91, 103, 115]);
//! assert_eq!(sample_indices(3, 6), vec![0, 0, 1, 1, 2, 2]);
//! ```

/// The decoded-frame index of each of the `t` output frames of a clip of `n` frames.
/// Empty when `n == 0` or `t == 0`.
pub fn sample_indices(n: u64, t: u32) -> Vec<u64> {
    if n == 0 || t == 0 {
        return Vec::new();
    }
    let t = u64::from(t);
    (0..t).map(|i| (2 * i + 1) * n / (2 * t)).collect()
}

/// `k` of the positions `0..n`, spread evenly (the sampling rule again), ascending and distinct;
/// all of them when `k == 0` or `k >= n`.
pub fn spread_indices(n: usize, k: u32) -> Vec<usize> {
    if k == 0 || k as usize >= n {
        return (0..n).collect();
    }
    sample_indices(n as u64, k).into_iter().map(|i| i as usize).collect()
}

/// The distinct indices of [`sample_indices`], ascending: what ffmpeg is asked to output.
pub fn unique_indices(indices: &[u64]) -> Vec<u64> {
    let mut unique = indices.to_vec();
    unique.dedup(); // `sample_indices` is non-decreasing
    unique
}

/// Whether a clip of `n` frames repeats frames to fill `t` outputs.
pub fn is_padded(n: u64, t: u32) -> bool {
    n < u64::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_picks_k_distinct_positions_or_all() {
        assert_eq!(spread_indices(10, 3), vec![1, 5, 8]);
        assert_eq!(spread_indices(4, 3), vec![0, 2, 3]);
        assert_eq!(spread_indices(3, 3), vec![0, 1, 2]);
        assert_eq!(spread_indices(5, 0), vec![0, 1, 2, 3, 4]);
        assert!(spread_indices(0, 3).is_empty());
    }

    #[test]
    fn indices_are_centres_of_equal_slices() {
        assert_eq!(sample_indices(10, 10), (0..10).collect::<Vec<_>>());
        assert_eq!(sample_indices(100, 4), vec![12, 37, 62, 87]);
        assert_eq!(sample_indices(1, 3), vec![0, 0, 0]);
        assert!(sample_indices(0, 10).is_empty());
    }

    #[test]
    fn long_clips_give_distinct_in_range_indices() {
        for n in 1..300u64 {
            for t in 1..20u32 {
                let idx = sample_indices(n, t);
                assert_eq!(idx.len(), t as usize);
                assert!(idx.iter().all(|&i| i < n), "n={n} t={t}");
                assert!(idx.windows(2).all(|w| w[0] <= w[1]));
                if n >= u64::from(t) {
                    assert!(idx.windows(2).all(|w| w[0] < w[1]), "n={n} t={t} {idx:?}");
                    assert_eq!(unique_indices(&idx).len(), t as usize);
                    assert!(!is_padded(n, t));
                } else {
                    assert!(is_padded(n, t));
                    assert_eq!(unique_indices(&idx).len(), n as usize, "every frame used once at least");
                }
            }
        }
    }
}
