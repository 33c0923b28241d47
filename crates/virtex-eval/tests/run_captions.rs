//! The scoring of a split's captions ([`score_split`]): pycocoevalcap's
//! CIDEr-D and BLEU-4 on its fixture, and the distinct captions, the top
//! caption and the subcategory named on hand-made captions of bundled
//! emoji.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use virtex_data::coco::{CaptionResult, ImageRef, read_references};
use virtex_eval::EvalError;
use virtex_eval::run_captions::score_split;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn result(image_id: u64, caption: &str) -> CaptionResult {
    CaptionResult {
        image: ImageRef::Id { image_id },
        caption: caption.into(),
    }
}

fn fixture(name: &str) -> Value {
    let path = root().join("data/fixtures/captioning").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn coco_captions_score_as_pycocoevalcap_with_no_subcategory() {
    let (mut results, mut references) = (Vec::new(), BTreeMap::new());
    for image in fixture("captions.json").as_array().unwrap() {
        let id = image["image_id"].as_u64().unwrap();
        results.push(result(id, image["candidate"].as_str().unwrap()));
        let refs = image["references"].as_array().unwrap();
        references.insert(
            id,
            refs.iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect(),
        );
    }
    let expected = fixture("expected.json");
    let scored = score_split(&results, &references).unwrap();
    let figures = &scored.figures;
    let cider = expected["cider"].as_f64().unwrap();
    let bleu4 = expected["bleu"][3].as_f64().unwrap();
    assert!((figures.cider - cider).abs() < 1e-3, "{figures:?}");
    assert!((figures.bleu4 - bleu4).abs() < 1e-3, "{figures:?}");
    assert_eq!((figures.images, figures.distinct), (16, 16));
    // All different: the first is the top one, once in 16.
    assert_eq!(
        figures.top_caption,
        "A man riding a wave on top of a surfboard."
    );
    assert_eq!(figures.top_share, 1.0 / 16.0);
    assert_eq!(figures.subcategory_right, None);
    assert!(scored.subcategory_right.is_empty());
}

#[test]
fn emoji_captions_are_marked_by_the_subcategory_they_name() {
    // Bundled training emoji: 1, 2, 3 and 12 are "face smiling", 15 "face
    // affection".
    let references =
        read_references(&root().join("data/emoji/annotations/captions_train2017.json")).unwrap();
    let grinning = "grinning face, a face smiling emoji";
    let results = [
        result(1, grinning),                             // its own: right
        result(2, grinning),                             // another face smiling: right
        result(3, "winking face, a face smiling emoji"), // right
        result(15, grinning),                            // face affection: wrong
        result(12, "winking face"),                      // names no kind: wrong
    ];
    let scored = score_split(&results, &references).unwrap();
    let figures = &scored.figures;
    assert_eq!((figures.images, figures.distinct), (5, 3));
    assert_eq!(figures.top_caption, grinning);
    assert_eq!(figures.top_share, 0.6);
    assert_eq!(figures.subcategory_right, Some(0.6));
    assert_eq!(
        scored.subcategory_right,
        BTreeMap::from([(1, true), (2, true), (3, true), (12, false), (15, false)])
    );
    assert!(figures.cider > 0.0 && figures.bleu4 > 0.0, "{figures:?}");
    let shown = figures.to_string();
    assert!(
        shown.contains("3 distinct captions of 5, top caption 60.0%"),
        "{shown}"
    );
    let header = figures.header("train");
    let names: Vec<&str> = header.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names[..3],
        ["CIDEr-D", "top caption", "subcategory right"],
        "the three figures first"
    );
    assert!(header[2].1.starts_with("60.0%"), "{header:?}");

    // An image whose references name no subcategory among images whose do.
    let mut mixed = references.clone();
    mixed.insert(999_999, vec!["a dog on a couch".into()]);
    let mut with_it = results.to_vec();
    with_it.push(result(999_999, grinning));
    let err = score_split(&with_it, &mixed).unwrap_err();
    assert!(
        matches!(err, EvalError::NoSubcategoryReference { image_id: 999_999 }),
        "{err}"
    );
    // A caption of an image the split does not hold.
    let err = score_split(&[result(123_456_789, grinning)], &references).unwrap_err();
    assert!(err.to_string().contains("123456789"), "{err}");
}
