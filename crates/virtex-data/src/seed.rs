//! Every seed-mixing rule of the data pipeline (and the trainer's), in one
//! place: a stream's seed is its parent seed xor a stream number times an odd
//! constant, so neighbouring numbers (epochs, samples, ranks) give unrelated
//! generators. The values are part of the batches' reproducibility: changing
//! a constant changes every random draw derived from it.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// 2⁶⁴/φ (odd), the multiplier of [`mix`]: epochs of a stream, and ranks of
/// the trainer's per-iteration seed.
pub const GOLDEN_RATIO: u64 = 0x9E37_79B9_7F4A_7C15;

/// The multiplier of a sample's index in its epoch ([`sample_rng`]).
pub const SAMPLE_INDEX: u64 = 0xD1B5_4A32_D192_ED03;

/// The multiplier of a rank in a shard stream's per-rank seed ([`rank_seed`]).
pub const SHARD_RANK: u64 = 0xA24B_AED4_963E_E407;

/// The seed of stream number `stream` of `seed`.
pub fn mix(seed: u64, stream: u64) -> u64 {
    seed ^ stream.wrapping_mul(GOLDEN_RATIO)
}

/// The seed of everything random in `epoch` of a stream seeded `seed`.
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    mix(seed, epoch)
}

/// The generator of `epoch`'s order (sample or shard shuffle) in a stream
/// seeded `seed`.
pub fn epoch_rng(seed: u64, epoch: u64) -> StdRng {
    StdRng::seed_from_u64(epoch_seed(seed, epoch))
}

/// The generator of sample `index` (caption choice, augmentation, masking)
/// in an epoch seeded `epoch_seed`.
pub fn sample_rng(epoch_seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(epoch_seed ^ index.wrapping_mul(SAMPLE_INDEX))
}

/// The seed of `rank`'s own randomness in a shard stream seeded `seed` (its
/// shuffle buffer and samples; the shard order is shared by all ranks).
pub fn rank_seed(seed: u64, rank: usize) -> u64 {
    seed ^ (rank as u64).wrapping_mul(SHARD_RANK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn the_rules_keep_their_values() {
        // The formulas these functions replaced, written out.
        for (seed, n) in [(0u64, 0u64), (42, 1), (u64::MAX, 7), (123_456_789, 1 << 40)] {
            assert_eq!(
                epoch_seed(seed, n),
                seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            );
            assert_eq!(
                rank_seed(seed, n as usize),
                seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407)
            );
            assert_eq!(
                sample_rng(seed, n).random::<u64>(),
                StdRng::seed_from_u64(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03)).random::<u64>()
            );
            assert_eq!(
                epoch_rng(seed, n).random::<u64>(),
                StdRng::seed_from_u64(epoch_seed(seed, n)).random::<u64>()
            );
        }
    }
}
