//! Counter-based randomness (DESIGN.md §4.1).
//!
//! Every random draw is a pure function of (seed, purpose, coordinates): the coordinates are
//! hashed with the seed into a ChaCha8 key, and the stream's position is the counter. There is
//! no RNG state to carry, so a resumed run, or a worker hosted by another process, draws the
//! same numbers.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// What a stream is for; part of the key so that streams never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Initial weights: coordinates (parameter index).
    Init,
    /// Order of the training set: coordinates (epoch).
    DataOrder,
    /// Noise enhancement's second, independent batch order: coordinates (epoch).
    SecondBatchOrder,
    /// Crop offsets and flips: coordinates (epoch, example index).
    Augment,
    /// RNC's uniform noise: coordinates (iteration, logical worker, parameter index).
    RncNoise,
    /// The synthetic teacher network and its inputs: coordinates (what, index).
    Synthetic,
    /// Which examples of a tensors file are held out for testing: coordinates (examples).
    HeldOut,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Init => b"init",
            Purpose::DataOrder => b"data-order",
            Purpose::SecondBatchOrder => b"second-batch-order",
            Purpose::Augment => b"augment",
            Purpose::RncNoise => b"rnc-noise",
            Purpose::Synthetic => b"synthetic",
            Purpose::HeldOut => b"held-out",
        }
    }
}

/// A 32-bit word's top 24 bits as a value on [0, 1), exactly representable as f32.
fn unit(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// A word as a value on [lo, hi): one rule for a single draw and a bulk fill alike.
fn in_range(word: u32, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * unit(word)
}

/// A deterministic random stream for one (seed, purpose, coordinates).
pub struct Stream(ChaCha8Rng);

impl Stream {
    pub fn new(seed: u64, purpose: Purpose, coordinates: &[u64]) -> Stream {
        let mut h = Sha256::new();
        h.update(b"gnc-rng-v1");
        h.update(seed.to_le_bytes());
        h.update((purpose.tag().len() as u64).to_le_bytes());
        h.update(purpose.tag());
        for c in coordinates {
            h.update(c.to_le_bytes());
        }
        Stream(ChaCha8Rng::from_seed(h.finalize().into()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform on [0, 1) with 24 bits, exactly representable as f32.
    pub fn uniform_f32(&mut self) -> f32 {
        unit(self.0.next_u32())
    }

    /// Uniform on [lo, hi).
    pub fn uniform_in(&mut self, lo: f32, hi: f32) -> f32 {
        in_range(self.0.next_u32(), lo, hi)
    }

    /// Fills `out` with uniform values on [lo, hi): the values of [`Stream::uniform_in`] called
    /// once per element. The stream's 32-bit words are taken a block at a time (`fill_bytes`
    /// hands out the same words in the same order as `next_u32` one by one, each as its
    /// little-endian bytes) and converted in a loop the compiler vectorises (each value is
    /// [`in_range`] of the same word, so the same bits): RNC draws one value
    /// per parameter per logical worker and iteration.
    pub fn fill_uniform(&mut self, out: &mut [f32], lo: f32, hi: f32) {
        const WORDS: usize = 1024;
        let mut bytes = [0u8; 4 * WORDS];
        for chunk in out.chunks_mut(WORDS) {
            let bytes = &mut bytes[..4 * chunk.len()];
            self.0.fill_bytes(bytes);
            for (v, word) in chunk.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = in_range(
                    u32::from_le_bytes(word.try_into().expect("four bytes")),
                    lo,
                    hi,
                );
            }
        }
    }

    /// Standard normal (Box–Muller, one of the pair), in f64 for accuracy.
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.0.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in [0, n), without modulo bias (Lemire's method with rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no values");
        loop {
            let x = self.0.next_u64();
            let m = (x as u128) * (n as u128);
            let low = m as u64;
            if low >= n || low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniformly random permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_coordinates_same_numbers_other_coordinates_other_numbers() {
        let mut s1 = Stream::new(7, Purpose::DataOrder, &[3]);
        let mut s2 = Stream::new(7, Purpose::DataOrder, &[3]);
        let mut s3 = Stream::new(7, Purpose::DataOrder, &[4]);
        let mut s4 = Stream::new(7, Purpose::Augment, &[3]);
        let x1: Vec<u64> = (0..8).map(|_| s1.next_u64()).collect();
        let x2: Vec<u64> = (0..8).map(|_| s2.next_u64()).collect();
        let x3: Vec<u64> = (0..8).map(|_| s3.next_u64()).collect();
        let x4: Vec<u64> = (0..8).map(|_| s4.next_u64()).collect();
        assert_eq!(x1, x2);
        assert_ne!(x1, x3);
        assert_ne!(x1, x4);
    }

    #[test]
    fn permutation_is_a_permutation_and_roughly_uniform() {
        let p = Stream::new(1, Purpose::DataOrder, &[0]).permutation(1000);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_ne!(p, sorted, "a shuffled order differs from identity");
        // Element 0 lands in the first half about half of the time over many seeds.
        let first_half = (0..400)
            .filter(|s| {
                let p = Stream::new(*s, Purpose::DataOrder, &[0]).permutation(10);
                p.iter().position(|&v| v == 0).unwrap() < 5
            })
            .count();
        assert!((160..240).contains(&first_half), "{first_half}");
    }

    /// The bulk fill gives the bits of one `uniform_in` per element, at lengths around its
    /// block of words, and from a stream that has already handed out an odd number of words.
    #[test]
    fn fill_uniform_equals_one_draw_per_element() {
        for (len, skip) in [
            (0, 0),
            (1, 0),
            (3, 1),
            (1023, 0),
            (1024, 3),
            (1025, 0),
            (5000, 1),
        ] {
            let stream = || {
                let mut s = Stream::new(11, Purpose::RncNoise, &[len as u64]);
                for _ in 0..skip {
                    s.uniform_f32();
                }
                s
            };
            let mut bulk = vec![f32::NAN; len];
            stream().fill_uniform(&mut bulk, -0.75, 1.25);
            let mut one = stream();
            let each: Vec<f32> = (0..len).map(|_| one.uniform_in(-0.75, 1.25)).collect();
            assert_eq!(
                bulk.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                each.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{len} values after {skip} words"
            );
        }
    }

    #[test]
    fn uniform_is_in_range_with_the_right_mean() {
        let mut s = Stream::new(3, Purpose::RncNoise, &[1, 2, 3]);
        let mut v = vec![0f32; 100_000];
        s.fill_uniform(&mut v, -1.0, 1.0);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean: f64 = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        let var: f64 = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((var - 1.0 / 3.0).abs() < 0.01, "{var}");
    }
}
