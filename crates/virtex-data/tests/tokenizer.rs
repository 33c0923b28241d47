//! Id-for-id agreement with the SentencePiece library on committed fixtures
//! (`tools/fixtures/make_tokenizer_fixtures.py`): BPE and unigram models
//! trained on the bundled emoji captions with the reference's options.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use virtex_data::tokenizer::{Algorithm, SentencePieceTokenizer, TokenizerError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures/tokenizer")
        .join(name)
}

#[derive(Deserialize)]
struct Expected {
    text: String,
    ids: Vec<u32>,
}

fn check_agreement(model: &str, algorithm: Algorithm) {
    check_model_agreement(&fixture(&format!("{model}.model")), model, algorithm, 300);
}

/// `model_file` must give the ids recorded in `<model>_expected.jsonl`.
fn check_model_agreement(model_file: &Path, model: &str, algorithm: Algorithm, at_least: usize) {
    let tokenizer = SentencePieceTokenizer::from_file(model_file).unwrap();
    assert_eq!(tokenizer.algorithm(), algorithm);
    let expected = std::fs::read_to_string(fixture(&format!("{model}_expected.jsonl"))).unwrap();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in expected.lines() {
        let case: Expected = serde_json::from_str(line).unwrap();
        let ids = tokenizer.encode(&case.text);
        if ids != case.ids {
            mismatches.push(format!(
                "{:?}: got {ids:?}, SentencePiece {:?}",
                case.text, case.ids
            ));
        }
        checked += 1;
    }
    assert!(checked >= at_least, "{checked} cases");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn bpe_ids_equal_sentencepiece() {
    check_agreement("emoji_bpe", Algorithm::Bpe);
}

#[test]
fn unigram_ids_equal_sentencepiece() {
    check_agreement("emoji_unigram", Algorithm::Unigram);
}

/// The vocabulary `cargo xtask build-vocab` wrote for the emoji dataset
/// (data/vocab/emoji_1k.model) loads in the SentencePiece library, and the
/// library's ids for it are ours (tools/fixtures/make_vocab_fixture.py).
#[test]
fn the_built_vocabulary_agrees_with_sentencepiece() {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/vocab/emoji_1k.model");
    check_model_agreement(&built, "emoji_1k", Algorithm::Bpe, 300);
}

#[test]
fn virtex_special_tokens_are_control_symbols() {
    let tokenizer = SentencePieceTokenizer::from_file(fixture("emoji_bpe.model")).unwrap();
    assert_eq!(tokenizer.unk_id(), 0);
    assert_eq!(tokenizer.id_to_piece(0), Some("<unk>"));
    for (piece, id) in [("[SOS]", 1), ("[EOS]", 2), ("[MASK]", 3)] {
        assert_eq!(tokenizer.piece_to_id(piece), Some(id));
    }
    // Control symbols are never produced from text.
    let ids = tokenizer.encode("[SOS] [MASK]");
    assert!(!ids.contains(&1) && !ids.contains(&3), "{ids:?}");
    assert_eq!(tokenizer.decode(&[1, 2]), "");
}

#[test]
fn unreadable_and_malformed_models_name_the_file() {
    let err = SentencePieceTokenizer::from_file(fixture("missing.model")).unwrap_err();
    assert!(matches!(err, TokenizerError::Read { .. }));
    assert!(err.to_string().contains("missing.model"), "{err}");

    let err = SentencePieceTokenizer::from_file(fixture("emoji_bpe_expected.jsonl")).unwrap_err();
    assert!(
        err.to_string().contains("emoji_bpe_expected.jsonl"),
        "{err}"
    );
}
