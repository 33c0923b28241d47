//! Unigram segmentation as SentencePiece's `unigram_model.cc`
//! (`EncodeOptimized`): the Viterbi path maximising the summed piece scores;
//! a character no piece covers becomes `<unk>` with score `min_score − 10`.

use super::{Piece, SentencePieceTokenizer};

/// SentencePiece's `kUnkPenalty`.
const UNK_PENALTY: f32 = 10.0;

/// What the Viterbi search needs from the vocabulary, derived once at load.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lattice {
    /// Score of an `<unk>` node: the lowest piece score minus the penalty.
    unk_score: f32,
    /// Longest segmentable piece, in characters.
    max_chars: usize,
}

impl Lattice {
    pub(super) fn new(pieces: &[Piece]) -> Self {
        let segmentable = || pieces.iter().filter(|p| p.segmentable);
        let min_score = segmentable().map(|p| p.score).fold(f32::INFINITY, f32::min);
        Self {
            unk_score: min_score - UNK_PENALTY,
            max_chars: segmentable()
                .map(|p| p.text.chars().count())
                .max()
                .unwrap_or(1),
        }
    }
}

/// Best path ending at a character boundary.
#[derive(Clone, Copy)]
struct Node {
    score: f32,
    start: usize,
    id: u32,
}

pub(super) fn encode(model: &SentencePieceTokenizer, text: &str) -> Vec<u32> {
    // Character boundaries, in bytes: bounds[k] is where character k starts.
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let n = bounds.len() - 1;
    let Lattice {
        unk_score,
        max_chars,
    } = model.lattice;

    let mut best: Vec<Option<Node>> = vec![None; n + 1];
    best[0] = Some(Node {
        score: 0.0,
        start: 0,
        id: 0,
    });
    for start in 0..n {
        let Some(here) = best[start] else { continue };
        let mut has_single = false;
        for end in start + 1..=(start + max_chars).min(n) {
            let Some(id) = model.segmentable_id(&text[bounds[start]..bounds[end]]) else {
                continue;
            };
            has_single |= end == start + 1;
            let score = here.score + model.pieces[id as usize].score;
            if best[end].is_none_or(|b| score > b.score) {
                best[end] = Some(Node { score, start, id });
            }
        }
        if !has_single {
            let score = here.score + unk_score;
            if best[start + 1].is_none_or(|b| score > b.score) {
                best[start + 1] = Some(Node {
                    score,
                    start,
                    id: model.unk_id,
                });
            }
        }
    }

    let mut ids = Vec::new();
    let mut end = n;
    while end > 0 {
        let node = best[end].expect("every boundary is reachable through <unk>");
        ids.push(node.id);
        end = node.start;
    }
    ids.reverse();
    ids
}
