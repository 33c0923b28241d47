//! The targets of the five pretraining tasks over one captioned image
//! (`virtex/data/datasets/{captioning,masked_lm,token_classification,multilabel}.py`)
//! and batch padding.

use std::sync::Arc;

use rand::Rng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use crate::instances::CocoInstances;

/// Which task's targets a loader produces beside the images and the forward
/// and backward caption tokens (which every batch carries).
#[derive(Clone, Debug)]
pub enum TaskView {
    /// Captioning and bicaptioning: the caption tokens are the targets.
    Captioning,
    /// The caption's unique token ids ([`token_bag`]).
    TokenClassification,
    /// The image's instance categories; images without instances are left
    /// out of the epoch, as the reference drops them.
    MultilabelClassification(Arc<CocoInstances>),
    /// A masked copy of the forward tokens and the labels to predict.
    MaskedLm {
        /// Masking proportions.
        config: MaskedLmConfig,
        /// The `[MASK]` id (3 in the reference's vocabulary).
        mask_id: u32,
        /// Random replacements are drawn from `0..vocab_size`.
        vocab_size: u32,
    },
}

/// The task targets of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskTargets {
    /// Nothing beyond the caption tokens.
    Captioning,
    /// Label ids `[batch, width]` row-major, right-padded with 0 (token
    /// classification's token bags, multilabel's categories).
    Labels {
        /// The padded ids.
        labels: Vec<u32>,
        /// Labels per row.
        width: usize,
    },
    /// Masked-LM inputs and labels, each `[batch, max_len]` like the forward
    /// tokens; label 0 means "not predicted".
    MaskedLm {
        /// Tokens with the masked positions replaced.
        tokens: Vec<u32>,
        /// The original token at `[MASK]`ed positions, 0 elsewhere.
        labels: Vec<u32>,
    },
}

/// The first id that is an ordinary token: 0–3 are `<unk>`/pad, `[SOS]`,
/// `[EOS]` and `[MASK]`, which token classification ignores.
pub const FIRST_WORD_ID: u32 = 4;

/// The unique ordinary token ids of a caption, ascending: the target set of
/// token classification (the reference's loss ignores ids 0–3).
pub fn token_bag(tokens: &[u32]) -> Vec<u32> {
    let mut bag: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|&t| t >= FIRST_WORD_ID)
        .collect();
    bag.sort_unstable();
    bag.dedup();
    bag
}

/// The reference's masked-LM settings, the config's `DATA.MASKED_LM.*`
/// (`MASK_PROPORTION`, `MASK_PROBABILITY`, `REPLACE_PROBABILITY`; a key left
/// out keeps its default).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct MaskedLmConfig {
    /// Fraction of non-boundary tokens chosen, 0.15.
    pub mask_proportion: f64,
    /// Chance a chosen token becomes `[MASK]` (and is predicted), 0.85.
    pub mask_probability: f64,
    /// Chance a chosen token becomes a random id (not predicted), 0.10.
    pub replace_probability: f64,
}

impl Default for MaskedLmConfig {
    fn default() -> Self {
        Self {
            mask_proportion: 0.15,
            mask_probability: 0.85,
            replace_probability: 0.10,
        }
    }
}

/// A masked caption: the input tokens and the labels to predict (0 = none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedCaption {
    /// Tokens with some positions replaced.
    pub tokens: Vec<u32>,
    /// The original token at each `[MASK]`ed position, 0 elsewhere.
    pub labels: Vec<u32>,
}

impl MaskedLmConfig {
    /// Masks `tokens` (`[SOS] … [EOS]`) as the reference does: choose
    /// `ceil(proportion · (len − 2))` positions between the boundaries; each
    /// becomes `[MASK]` with a label (p ≤ `mask_probability`), a random id in
    /// `0..vocab_size` without label (the next `replace_probability`), or
    /// stays as it is without label. A single chosen position is always masked.
    pub fn mask(
        &self,
        tokens: &[u32],
        mask_id: u32,
        vocab_size: u32,
        rng: &mut impl Rng,
    ) -> MaskedCaption {
        let mut masked = tokens.to_vec();
        let mut labels = vec![0; tokens.len()];
        let inner = tokens.len().saturating_sub(2);
        let count = (self.mask_proportion * inner as f64).ceil() as usize;
        let chosen = sample(rng, inner, count.min(inner));
        for position in chosen.iter().map(|i| i + 1) {
            let p: f64 = rng.random();
            if count == 1 || p <= self.mask_probability {
                labels[position] = tokens[position];
                masked[position] = mask_id;
            } else if p <= self.mask_probability + self.replace_probability {
                masked[position] = rng.random_range(0..vocab_size);
            }
        }
        MaskedCaption {
            tokens: masked,
            labels,
        }
    }
}

/// Right-pads sequences with 0 (the reference's padding id) into one
/// row-major `[batch, max_len]` buffer, with each sequence's length.
pub fn pad_batch(sequences: &[&[u32]]) -> (Vec<u32>, usize, Vec<usize>) {
    let max_len = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut padded = vec![0; sequences.len() * max_len];
    for (row, sequence) in padded.chunks_mut(max_len.max(1)).zip(sequences) {
        row[..sequence.len()].copy_from_slice(sequence);
    }
    let lengths = sequences.iter().map(|s| s.len()).collect();
    (padded, max_len, lengths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn masking_follows_the_reference_rule() {
        let config = MaskedLmConfig::default();
        // [SOS] + 20 tokens + [EOS]: ceil(0.15 · 20) = 3 positions per caption.
        let tokens: Vec<u32> = std::iter::once(1).chain(100..120).chain([2]).collect();
        let mut rng = StdRng::seed_from_u64(0);
        let (mut masked, mut replaced_or_kept) = (0, 0);
        for _ in 0..2000 {
            let out = config.mask(&tokens, 3, 800, &mut rng);
            assert_eq!(
                (out.tokens[0], out.tokens[21]),
                (1, 2),
                "boundaries untouched"
            );
            let changed_or_labelled = (1..21)
                .filter(|&i| out.labels[i] != 0 || out.tokens[i] != tokens[i])
                .count();
            assert!(changed_or_labelled <= 3);
            for ((&token, &label), &original) in out.tokens.iter().zip(&out.labels).zip(&tokens) {
                if label != 0 {
                    assert_eq!((token, label), (3, original));
                    masked += 1;
                }
            }
            replaced_or_kept += 3 - (1..21).filter(|&i| out.labels[i] != 0).count();
        }
        let share = masked as f64 / (masked + replaced_or_kept) as f64;
        assert!((share - 0.85).abs() < 0.02, "masked share {share}");
    }

    #[test]
    fn a_single_chosen_position_is_always_masked() {
        let config = MaskedLmConfig::default();
        let tokens = [1, 50, 51, 2]; // ceil(0.15 · 2) = 1
        for seed in 0..50 {
            let out = config.mask(&tokens, 3, 800, &mut StdRng::seed_from_u64(seed));
            assert_eq!(out.tokens.iter().filter(|&&t| t == 3).count(), 1);
            assert_eq!(out.labels.iter().filter(|&&l| l != 0).count(), 1);
        }
    }

    #[test]
    fn a_token_bag_holds_each_word_id_once() {
        assert_eq!(token_bag(&[1, 9, 5, 9, 0, 3, 7, 5, 2]), [5, 7, 9]);
        assert!(token_bag(&[1, 2]).is_empty());
    }

    #[test]
    fn batches_pad_with_zero_and_keep_lengths() {
        let (padded, width, lengths) = pad_batch(&[&[1, 5, 2], &[1, 2], &[1, 7, 8, 9, 2]]);
        assert_eq!(width, 5);
        assert_eq!(lengths, [3, 2, 5]);
        assert_eq!(padded, [1, 5, 2, 0, 0, 1, 2, 0, 0, 0, 1, 7, 8, 9, 2]);
    }
}
