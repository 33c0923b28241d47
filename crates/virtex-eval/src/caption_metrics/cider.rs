//! CIDEr-D as pycocoevalcap's `Cider` computes it (the reference's metric):
//! TF-IDF vectors of 1..4-grams with document frequencies from the
//! references of the evaluated set, clipped cosine similarity
//! (`min(hyp, ref) · ref`), a Gaussian length penalty with σ = 6, averaged
//! over n and over references, times 10.
//!
//! pycocoevalcap's "length" is the number of bigrams, not words (it counts
//! n-grams with `n == 1` in 0-based terms); kept, so scores agree.

use std::collections::{HashMap, HashSet};

use super::ngrams::{MAX_N, count_ngrams};

const SIGMA: f64 = 6.0;

/// A caption's TF-IDF vector per n, its norms, and its bigram count.
struct TfIdf<'a> {
    vectors: [HashMap<Vec<&'a str>, f64>; MAX_N],
    norms: [f64; MAX_N],
    bigrams: usize,
}

fn tf_idf<'a>(words: &[&'a str], df: &HashMap<Vec<&'a str>, f64>, log_images: f64) -> TfIdf<'a> {
    let mut vectors: [HashMap<Vec<&str>, f64>; MAX_N] = Default::default();
    let mut norms = [0.0; MAX_N];
    let mut bigrams = 0;
    for (gram, count) in count_ngrams(words) {
        let n = gram.len() - 1;
        let frequency = df.get(&gram).copied().unwrap_or(0.0).max(1.0);
        let weight = count as f64 * (log_images - frequency.ln());
        norms[n] += weight * weight;
        if n == 1 {
            bigrams += count;
        }
        vectors[n].insert(gram, weight);
    }
    TfIdf {
        vectors,
        norms: norms.map(f64::sqrt),
        bigrams,
    }
}

fn similarity(hyp: &TfIdf, reference: &TfIdf) -> [f64; MAX_N] {
    let delta = hyp.bigrams as f64 - reference.bigrams as f64;
    let penalty = (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
    std::array::from_fn(|n| {
        let mut value = 0.0;
        for (gram, &weight) in &hyp.vectors[n] {
            let other = reference.vectors[n].get(gram).copied().unwrap_or(0.0);
            value += weight.min(other) * other;
        }
        if hyp.norms[n] != 0.0 && reference.norms[n] != 0.0 {
            value /= hyp.norms[n] * reference.norms[n];
        }
        value * penalty
    })
}

/// Per-image CIDEr-D of tokenised `(candidate, references)` pairs.
pub fn cider_d(pairs: &[(Vec<&str>, Vec<Vec<&str>>)]) -> Vec<f64> {
    let mut df: HashMap<Vec<&str>, f64> = HashMap::new();
    for (_, references) in pairs {
        let grams: HashSet<Vec<&str>> = references
            .iter()
            .flat_map(|r| count_ngrams(r).into_keys())
            .collect();
        for gram in grams {
            *df.entry(gram).or_insert(0.0) += 1.0;
        }
    }
    let log_images = (pairs.len() as f64).ln();
    pairs
        .iter()
        .map(|(candidate, references)| {
            let hyp = tf_idf(candidate, &df, log_images);
            let mut total = [0.0; MAX_N];
            for reference in references {
                let sims = similarity(&hyp, &tf_idf(reference, &df, log_images));
                for (t, s) in total.iter_mut().zip(sims) {
                    *t += s;
                }
            }
            total.iter().sum::<f64>() / MAX_N as f64 / references.len() as f64 * 10.0
        })
        .collect()
}
