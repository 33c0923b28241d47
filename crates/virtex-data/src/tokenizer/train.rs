//! Training a BPE vocabulary and writing it as a SentencePiece `.model`
//! (the reference's `scripts/build_vocabulary.py` options: BPE, character
//! coverage 1.0, no BOS/EOS, control symbols `[SOS]`, `[EOS]`, `[MASK]`,
//! `<unk>` = 0).
//!
//! The trainer follows SentencePiece's BPE trainer in outline: words are the
//! `▁`-prefixed whitespace-separated pieces of the normalised captions,
//! every character is a piece, and the most frequent adjacent pair (ties:
//! lexicographically smallest) is merged until the vocabulary is full. Merged
//! pieces get scores `-0, -1, -2, …` in merge order, which is what
//! SentencePiece's BPE encoder ranks merges by. Text is normalised with the
//! `identity` rule (callers pass captions already lower-cased and
//! accent-stripped, as the reference does), so no character map is written.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use sentencepiece_model::{
    ModelProto, ModelType, NormalizerSpec, SentencePiece, TrainerSpec, Type,
};

use super::SPACE_SYMBOL;

/// The control symbols VirTex vocabularies carry, at ids 1, 2, 3.
pub const CONTROL_SYMBOLS: [&str; 3] = ["[SOS]", "[EOS]", "[MASK]"];

/// Trains a BPE vocabulary of `vocab_size` pieces (`<unk>` and the control
/// symbols included) on `texts`; returns the serialised `ModelProto`.
///
/// Fails if `vocab_size` cannot hold the special pieces and every character.
pub fn train_bpe<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    vocab_size: usize,
) -> Result<Vec<u8>, String> {
    // Word frequencies; a word is `▁` + a whitespace-separated token.
    let mut words: HashMap<String, u64> = HashMap::new();
    for text in texts {
        for token in text.split_whitespace() {
            *words.entry(format!("{SPACE_SYMBOL}{token}")).or_default() += 1;
        }
    }
    // Characters by frequency (most frequent first, then by character).
    let mut char_counts: BTreeMap<char, u64> = BTreeMap::new();
    for (word, count) in &words {
        for c in word.chars() {
            *char_counts.entry(c).or_default() += count;
        }
    }
    let mut chars: Vec<(char, u64)> = char_counts.into_iter().collect();
    chars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let specials = 1 + CONTROL_SYMBOLS.len();
    let merges_wanted = vocab_size
        .checked_sub(specials + chars.len())
        .ok_or_else(|| {
            format!(
                "vocab size {vocab_size} is below the {} special pieces and characters",
                specials + chars.len()
            )
        })?;

    // Words as symbol sequences, sorted for determinism.
    let mut corpus: Vec<(Vec<String>, u64)> = words
        .into_iter()
        .map(|(w, n)| (w.chars().map(String::from).collect(), n))
        .collect();
    corpus.sort();

    let mut merged: Vec<String> = Vec::with_capacity(merges_wanted);
    while merged.len() < merges_wanted {
        let mut pairs: HashMap<(&str, &str), u64> = HashMap::new();
        for (symbols, count) in &corpus {
            for pair in symbols.windows(2) {
                *pairs.entry((&pair[0], &pair[1])).or_default() += count;
            }
        }
        let Some((best, _)) = pairs
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        else {
            break; // every word is a single piece
        };
        let (left, right) = (best.0.to_string(), best.1.to_string());
        let piece = format!("{left}{right}");
        for (symbols, _) in &mut corpus {
            let mut i = 0;
            while i + 1 < symbols.len() {
                if symbols[i] == left && symbols[i + 1] == right {
                    symbols[i] = piece.clone();
                    symbols.remove(i + 1);
                }
                i += 1;
            }
        }
        merged.push(piece);
    }

    let piece = |text: &str, score: f32, kind: Type| SentencePiece {
        piece: Some(text.to_string()),
        score: Some(score),
        r#type: Some(kind as i32),
    };
    let mut pieces = vec![piece("<unk>", 0.0, Type::Unknown)];
    pieces.extend(CONTROL_SYMBOLS.iter().map(|s| piece(s, 0.0, Type::Control)));
    pieces.extend(
        merged
            .iter()
            .enumerate()
            .map(|(i, p)| piece(p, -(i as f32), Type::Normal)),
    );
    let next = merged.len();
    pieces.extend(
        chars
            .iter()
            .enumerate()
            .map(|(i, (c, _))| piece(&c.to_string(), -((next + i) as f32), Type::Normal)),
    );

    let model = ModelProto {
        pieces,
        trainer_spec: Some(TrainerSpec {
            model_type: Some(ModelType::Bpe as i32),
            vocab_size: Some(vocab_size as i32),
            character_coverage: Some(1.0),
            control_symbols: CONTROL_SYMBOLS.iter().map(|s| s.to_string()).collect(),
            unk_id: Some(0),
            bos_id: Some(-1),
            eos_id: Some(-1),
            pad_id: Some(-1),
            ..Default::default()
        }),
        normalizer_spec: Some(NormalizerSpec {
            name: Some("identity".into()),
            add_dummy_prefix: Some(true),
            remove_extra_whitespaces: Some(true),
            escape_whitespaces: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{Algorithm, SentencePieceTokenizer};

    #[test]
    fn a_trained_vocabulary_loads_and_round_trips() {
        let captions = [
            "a dog on the left",
            "a dog and a cat",
            "two dogs",
            "a cat on a mat",
        ];
        let bytes = train_bpe(captions.iter().copied(), 40).unwrap();
        let tokenizer = SentencePieceTokenizer::from_bytes(&bytes).unwrap();
        assert_eq!(tokenizer.algorithm(), Algorithm::Bpe);
        assert_eq!(tokenizer.vocab_size(), 40);
        for (id, piece) in ["<unk>", "[SOS]", "[EOS]", "[MASK]"].iter().enumerate() {
            assert_eq!(tokenizer.piece_to_id(piece), Some(id as u32));
        }
        for caption in captions {
            let ids = tokenizer.encode(caption);
            assert!(!ids.contains(&0), "{caption}: {ids:?}");
            assert_eq!(tokenizer.decode(&ids), caption);
        }
        // Frequent words become single pieces.
        assert_eq!(tokenizer.encode("a").len(), 1);
        assert!(tokenizer.encode("dog").len() <= 2);
        // Unseen letters are <unk>, a run of them one <unk>: "z" and "br".
        let zebra = tokenizer.encode("zebra");
        assert_eq!(zebra.iter().filter(|&&i| i == 0).count(), 2, "{zebra:?}");
    }

    #[test]
    fn too_small_a_vocabulary_is_refused() {
        let err = train_bpe(["abcdef"].iter().copied(), 5).unwrap_err();
        assert!(err.contains("vocab size 5"), "{err}");
    }
}
