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
    let tokenizer = SentencePieceTokenizer::from_file(fixture(&format!("{model}.model"))).unwrap();
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
    assert!(checked >= 300, "{checked} cases");
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
