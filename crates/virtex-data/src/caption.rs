//! Caption text and caption tokens, as the reference prepares them
//! (`virtex/data/datasets/captioning.py`, `virtex/data/transforms.py`).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::tokenizer::SentencePieceTokenizer;

/// The reference's `DATA.MAX_CAPTION_LENGTH`: tokens kept, `[SOS]` and
/// `[EOS]` included (the default; the config can change it).
pub const MAX_CAPTION_LENGTH: usize = 30;

/// The reference's caption normalisation: lower-case, NFKD, then drop
/// combining marks (strips accents: "Café" → "cafe").
pub fn normalize_caption(caption: &str) -> String {
    caption
        .to_lowercase()
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .collect()
}

/// Swaps the *words* "left" and "right", as a horizontal flip requires.
///
/// The reference swaps substrings, turning "bright" into "bleft"; here only
/// whole words (maximal runs of letters) are swapped, so "bright" stays.
pub fn swap_left_right(caption: &str) -> String {
    let mut out = String::with_capacity(caption.len() + 1);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "left" => "right",
            "right" => "left",
            other => other,
        });
        word.clear();
    };
    for c in caption.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Token ids of one caption for (bi)captioning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionTokens {
    /// `[SOS] … [EOS]`, truncated to the maximum length (truncation can drop `[EOS]`).
    pub forward: Vec<u32>,
    /// `forward` reversed (`[EOS] … [SOS]`), the backward decoder's target
    /// (the reference's `noitpac_tokens`).
    pub backward: Vec<u32>,
}

impl CaptionTokens {
    /// Tokens of `caption`, which should already be normalised, at most
    /// `max_length` of them ([`MAX_CAPTION_LENGTH`] in the reference).
    ///
    /// `[SOS]` and `[EOS]` are looked up in the tokenizer (ids 1 and 2 in
    /// VirTex vocabularies); `None` if the vocabulary lacks them.
    pub fn new(
        tokenizer: &SentencePieceTokenizer,
        caption: &str,
        max_length: usize,
    ) -> Option<Self> {
        let sos = tokenizer.piece_to_id("[SOS]")?;
        let eos = tokenizer.piece_to_id("[EOS]")?;
        Some(Self::from_pieces(
            sos,
            tokenizer.encode(caption),
            eos,
            max_length,
        ))
    }

    /// Tokens of a caption already encoded as word-piece ids `pieces`:
    /// `[sos] pieces… [eos]` truncated to `max_length`, and that reversed,
    /// as [`Self::new`] frames a tokenizer's pieces.
    pub fn from_pieces(
        sos: u32,
        pieces: impl IntoIterator<Item = u32>,
        eos: u32,
        max_length: usize,
    ) -> Self {
        let mut forward = Vec::with_capacity(max_length);
        forward.push(sos);
        forward.extend(pieces);
        forward.push(eos);
        forward.truncate(max_length);
        let backward = forward.iter().rev().copied().collect();
        Self { forward, backward }
    }

    /// Number of tokens (the reference's `caption_lengths`).
    pub fn len(&self) -> usize {
        self.forward.len()
    }

    /// Always false: a caption has at least `[SOS]`.
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_lowercases_and_strips_accents() {
        assert_eq!(normalize_caption("A Café in Zürich"), "a cafe in zurich");
        assert_eq!(normalize_caption("ＦＵＬＬ width ﬁ"), "full width fi");
    }

    #[test]
    fn flips_swap_whole_words_only() {
        assert_eq!(
            swap_left_right("a bright light on the left, a dog to the right"),
            "a bright light on the right, a dog to the left"
        );
        assert_eq!(swap_left_right("leftover rights"), "leftover rights");
        assert_eq!(swap_left_right("left"), "right");
    }

    #[test]
    fn pieces_are_framed_and_reversed() {
        let tokens = CaptionTokens::from_pieces(1, [7, 8, 9], 2, MAX_CAPTION_LENGTH);
        assert_eq!(tokens.forward, [1, 7, 8, 9, 2]);
        assert_eq!(tokens.backward, [2, 9, 8, 7, 1]);
        assert_eq!(
            CaptionTokens::from_pieces(1, [7, 8, 9], 2, 3).forward,
            [1, 7, 8]
        );
    }

    #[test]
    fn tokens_are_framed_truncated_and_reversed() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/fixtures/tokenizer/emoji_bpe.model"
        );
        let tokenizer = SentencePieceTokenizer::from_file(path).unwrap();
        let body = tokenizer.encode("a dog");
        let tokens = CaptionTokens::new(&tokenizer, "a dog", MAX_CAPTION_LENGTH).unwrap();
        assert_eq!(tokens.forward[0], 1);
        assert_eq!(&tokens.forward[1..tokens.len() - 1], body.as_slice());
        assert_eq!(*tokens.forward.last().unwrap(), 2);
        assert_eq!(tokens.backward[0], 2);
        assert_eq!(*tokens.backward.last().unwrap(), 1);

        let long = "face ".repeat(40);
        let tokens = CaptionTokens::new(&tokenizer, &long, MAX_CAPTION_LENGTH).unwrap();
        assert_eq!(tokens.len(), MAX_CAPTION_LENGTH);
        assert_ne!(
            *tokens.forward.last().unwrap(),
            2,
            "truncation drops [EOS], as the reference"
        );
        assert_eq!(tokens.backward[0], tokens.forward[MAX_CAPTION_LENGTH - 1]);
    }
}
