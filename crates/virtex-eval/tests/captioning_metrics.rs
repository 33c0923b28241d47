//! BLEU, ROUGE-L and CIDEr-D against pycocoevalcap's numbers on the same
//! captions (`tools/fixtures/make_caption_metrics_fixture.py`).

use std::path::Path;

use serde_json::Value;
use virtex_eval::caption_metrics::{CaptionPair, MetricsError, ptb, score_captions};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures/captioning")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn pairs() -> Vec<(u64, CaptionPair)> {
    fixture("captions.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            (
                image["image_id"].as_u64().unwrap(),
                CaptionPair {
                    candidate: image["candidate"].as_str().unwrap().to_string(),
                    references: image["references"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_string())
                        .collect(),
                },
            )
        })
        .collect()
}

#[test]
fn tokenization_matches_stanford_ptb_through_pycocoevalcap() {
    let expected = fixture("expected.json");
    for (id, pair) in pairs() {
        let want = &expected["tokenized"][id.to_string()];
        assert_eq!(
            ptb::tokenize(&pair.candidate),
            want["candidate"].as_str().unwrap(),
            "image {id} candidate"
        );
        for (reference, want) in pair
            .references
            .iter()
            .zip(want["references"].as_array().unwrap())
        {
            assert_eq!(
                ptb::tokenize(reference),
                want.as_str().unwrap(),
                "image {id}"
            );
        }
    }
}

#[test]
fn scores_agree_with_pycocoevalcap() {
    let expected = fixture("expected.json");
    let pairs: Vec<CaptionPair> = pairs().into_iter().map(|(_, p)| p).collect();
    let scores = score_captions(&pairs).unwrap();
    let close = |ours: f64, theirs: &Value, what: &str| {
        let theirs = theirs.as_f64().unwrap();
        assert!(
            (ours - theirs).abs() < 1e-3,
            "{what}: virtex-eval {ours}, pycocoevalcap {theirs}"
        );
    };
    for n in 0..4 {
        close(
            scores.bleu[n],
            &expected["bleu"][n],
            &format!("BLEU-{}", n + 1),
        );
    }
    close(scores.rouge_l, &expected["rouge_l"], "ROUGE-L");
    close(scores.cider, &expected["cider"], "CIDEr-D");
    for (i, ours) in scores.cider_per_image.iter().enumerate() {
        close(
            *ours,
            &expected["cider_per_image"][i],
            &format!("CIDEr-D image {i}"),
        );
    }
}

#[test]
fn a_perfect_caption_beats_a_wrong_one() {
    let mut pairs: Vec<CaptionPair> = pairs().into_iter().map(|(_, p)| p).collect();
    let base = score_captions(&pairs).unwrap();
    pairs[1].candidate = pairs[1].references[0].clone();
    let improved = score_captions(&pairs).unwrap();
    assert!(improved.cider_per_image[1] > base.cider_per_image[1]);
    assert!(improved.bleu[3] > base.bleu[3]);
}

#[test]
fn empty_input_and_missing_references_are_errors() {
    assert!(matches!(score_captions(&[]), Err(MetricsError::Empty)));
    let pair = CaptionPair {
        candidate: "a dog".into(),
        references: vec![],
    };
    assert!(matches!(
        score_captions(&[pair]),
        Err(MetricsError::NoReferences { index: 0 })
    ));
}
