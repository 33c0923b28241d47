//! Corpus BLEU-1..4 as pycocoevalcap's `Bleu(4)` computes it: clipped n-gram
//! matches and the brevity penalty summed over the corpus, the reference
//! length of each caption being the closest one (ties to the shorter).

use std::collections::HashMap;

use super::ngrams::{MAX_N, count_ngrams};

/// BLEU-1..4 of `candidates` (tokenised) against their `references`.
pub fn corpus_bleu(pairs: &[(Vec<&str>, Vec<Vec<&str>>)]) -> [f64; MAX_N] {
    const TINY: f64 = 1e-15;
    const SMALL: f64 = 1e-9;
    let (mut test_len, mut ref_len) = (0usize, 0usize);
    let mut guess = [0usize; MAX_N];
    let mut correct = [0usize; MAX_N];
    for (candidate, references) in pairs {
        let mut max_counts: HashMap<Vec<&str>, usize> = HashMap::new();
        for reference in references {
            for (gram, count) in count_ngrams(reference) {
                let entry = max_counts.entry(gram).or_insert(0);
                *entry = (*entry).max(count);
            }
        }
        let len = candidate.len();
        test_len += len;
        ref_len += references
            .iter()
            .map(Vec::len)
            .min_by_key(|&l| (l.abs_diff(len), l))
            .unwrap_or(0);
        for n in 1..=MAX_N {
            guess[n - 1] += (len + 1).saturating_sub(n);
        }
        for (gram, count) in count_ngrams(candidate) {
            correct[gram.len() - 1] += count.min(max_counts.get(&gram).copied().unwrap_or(0));
        }
    }
    let mut bleu = [0.0; MAX_N];
    let mut product = 1.0;
    for k in 0..MAX_N {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        bleu[k] = product.powf(1.0 / (k + 1) as f64);
    }
    let ratio = (test_len as f64 + TINY) / (ref_len as f64 + SMALL);
    if ratio < 1.0 {
        for b in &mut bleu {
            *b *= (1.0 - 1.0 / ratio).exp();
        }
    }
    bleu
}
