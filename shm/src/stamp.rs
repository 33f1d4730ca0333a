//! The (generation, iteration) stamp carried by slot sequence words and reader done words.
//!
//! Encoded in one `u64` so a single atomic load sees both halves together:
//! `word = generation << 40 | (iteration + 1)`, and `0` means "never written". Limits:
//! generation < 2^24 (16.7 million restarts), iteration < 2^40 − 1 (10^12 iterations).

/// Bits of the word that hold `iteration + 1`.
const ITERATION_BITS: u32 = 40;
const ITERATION_MASK: u64 = (1 << ITERATION_BITS) - 1;

/// Largest generation a stamp can carry.
pub const MAX_GENERATION: u64 = (1 << (64 - ITERATION_BITS)) - 1;
/// Largest iteration a stamp can carry.
pub const MAX_ITERATION: u64 = ITERATION_MASK - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub generation: u64,
    pub iteration: u64,
}

/// A generation or iteration beyond what a stamp can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "generation {generation} / iteration {iteration} out of range \
     (limits {MAX_GENERATION} / {MAX_ITERATION})"
)]
pub struct StampOutOfRange {
    pub generation: u64,
    pub iteration: u64,
}

impl Stamp {
    pub fn new(generation: u64, iteration: u64) -> Result<Self, StampOutOfRange> {
        if generation > MAX_GENERATION || iteration > MAX_ITERATION {
            return Err(StampOutOfRange {
                generation,
                iteration,
            });
        }
        Ok(Self {
            generation,
            iteration,
        })
    }

    pub(crate) fn encode(self) -> u64 {
        (self.generation << ITERATION_BITS) | (self.iteration + 1)
    }

    /// `None` for the never-written word 0.
    pub(crate) fn decode(word: u64) -> Option<Self> {
        let iteration_plus_one = word & ITERATION_MASK;
        (iteration_plus_one != 0).then(|| Self {
            generation: word >> ITERATION_BITS,
            iteration: iteration_plus_one - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_at_the_limits() {
        for (generation, iteration) in [(0, 0), (1, 0), (MAX_GENERATION, MAX_ITERATION)] {
            let stamp = Stamp::new(generation, iteration).unwrap();
            assert_ne!(stamp.encode(), 0);
            assert_eq!(Stamp::decode(stamp.encode()), Some(stamp));
        }
        assert_eq!(Stamp::decode(0), None);
        assert!(Stamp::new(MAX_GENERATION + 1, 0).is_err());
        assert!(Stamp::new(0, MAX_ITERATION + 1).is_err());
    }
}
