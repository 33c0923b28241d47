//! BPE segmentation as SentencePiece's `bpe_model.cc`: start from characters,
//! repeatedly merge the adjacent pair whose union is the highest-scoring piece
//! (leftmost on ties), then map each symbol to its id (`<unk>` if none).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::SentencePieceTokenizer;

/// A candidate merge of symbols `left` and `right`.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text, to detect stale candidates.
    len: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pair {
    /// Highest score first, then leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// A live symbol: a byte range of the text, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

pub(super) fn encode(model: &SentencePieceTokenizer, text: &str) -> Vec<u32> {
    let n = text.chars().count();
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n).then_some(i + 1),
        })
        .collect();

    let mut agenda = BinaryHeap::new();
    let push_pair =
        |agenda: &mut BinaryHeap<Pair>, symbols: &[Symbol], left: usize, right: usize| {
            let (l, r) = (symbols[left], symbols[right]);
            let merged = &text[l.start..r.start + r.len];
            if let Some(id) = model.segmentable_id(merged) {
                agenda.push(Pair {
                    score: model.pieces[id as usize].score,
                    left,
                    right,
                    len: merged.len(),
                });
            }
        };
    for i in 1..n {
        push_pair(&mut agenda, &symbols, i - 1, i);
    }

    while let Some(top) = agenda.pop() {
        let (left, right) = (symbols[top.left], symbols[top.right]);
        // Skip candidates whose symbols have merged with something else since.
        if left.len == 0 || right.len == 0 || left.len + right.len != top.len {
            continue;
        }
        symbols[top.left].len += right.len;
        symbols[top.left].next = right.next;
        symbols[top.right].len = 0;
        if let Some(next) = right.next {
            symbols[next].prev = Some(top.left);
        }
        if let Some(prev) = symbols[top.left].prev {
            push_pair(&mut agenda, &symbols, prev, top.left);
        }
        if let Some(next) = symbols[top.left].next {
            push_pair(&mut agenda, &symbols, top.left, next);
        }
    }

    let mut ids = Vec::new();
    let mut current = (n > 0).then_some(0);
    while let Some(i) = current {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        ids.push(model.segmentable_id(piece).unwrap_or(model.unk_id));
        current = s.next;
    }
    ids
}
