//! N-gram counts of a tokenised caption (`precook` in pycocoevalcap).

use std::collections::HashMap;

/// The longest n-gram BLEU and CIDEr count.
pub const MAX_N: usize = 4;

/// Counts of every 1..=4-gram of `words`, keyed by the n-gram.
pub fn count_ngrams<'a>(words: &[&'a str]) -> HashMap<Vec<&'a str>, usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_N {
        for gram in words.windows(n) {
            *counts.entry(gram.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}
