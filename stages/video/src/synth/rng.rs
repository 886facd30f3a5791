//! A tiny deterministic random generator (SplitMix64) seeded from text.
//!
//! The synthetic dataset must be byte-identical for the same parameters on every machine and every
//! version of every dependency, so it uses its own fixed generator instead of a crate whose streams may
//! change between releases. Each clip gets its own stream, seeded from the dataset seed and the clip's
//! name, so clips do not depend on generation order or on which other clips are generated.

/// SplitMix64 (Steele, Lea, Flood 2014), as used to seed xoshiro generators.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from a seed and a label (FNV-1a of the label mixed into the seed).
    pub fn from_label(seed: u64, label: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut rng = Rng(seed ^ h);
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// `1 ± spread`, uniformly.
    pub fn jitter(&mut self, spread: f32) -> f32 {
        self.range(1.0 - spread, 1.0 + spread)
    }

    /// -1 or 1.
    pub fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 {
            -1.0
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_label_same_stream_different_label_different_stream() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::from_label(7, "02-01-03");
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::from_label(7, "02-01-03");
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(a[0], Rng::from_label(7, "02-01-04").next_u64());
        assert_ne!(a[0], Rng::from_label(8, "02-01-03").next_u64());
        let mut r = Rng::from_label(1, "x");
        assert!((0..1000).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
