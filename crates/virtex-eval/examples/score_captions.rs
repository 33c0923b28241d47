//! Scores generated captions against human references with BLEU-1..4,
//! ROUGE-L and CIDEr-D, as pycocoevalcap does, and prints the scores.
//!
//! ```sh
//! cargo run -p virtex-eval --example score_captions
//! cargo run -p virtex-eval --example score_captions -- my_captions.json
//! ```
//!
//! The input is a JSON array of `{"candidate": "…", "references": ["…", …]}`
//! objects, one per image. Without an argument it reads the committed
//! fixture `data/fixtures/captioning/captions.json` (16 COCO-style images)
//! and also prints what pycocoevalcap computed on it
//! (`data/fixtures/captioning/expected.json`, made by
//! `tools/fixtures/make_caption_metrics_fixture.py`). To score a COCO results
//! file against a COCO captions JSON instead, see
//! `virtex_eval::caption_metrics::pair_with_references`.

use serde::Deserialize;
use virtex_eval::caption_metrics::{CaptionPair, score_captions};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/fixtures/captioning"
);

/// One image of the input file.
#[derive(Deserialize)]
struct Image {
    candidate: String,
    references: Vec<String>,
}

/// What pycocoevalcap computed on the fixture.
#[derive(Deserialize)]
struct Pycocoevalcap {
    bleu: [f64; 4],
    rouge_l: f64,
    cider: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argument = std::env::args().nth(1);
    let path = argument
        .clone()
        .unwrap_or_else(|| format!("{FIXTURE}/captions.json"));
    let images: Vec<Image> = serde_json::from_slice(&std::fs::read(&path)?)?;
    let pairs: Vec<CaptionPair> = images
        .into_iter()
        .map(|image| CaptionPair {
            candidate: image.candidate,
            references: image.references,
        })
        .collect();

    let scores = score_captions(&pairs)?;
    println!("{path}: {} images", scores.images);
    print_scores("virtex-eval", scores.bleu, scores.rouge_l, scores.cider);
    if argument.is_none() {
        let expected: Pycocoevalcap =
            serde_json::from_slice(&std::fs::read(format!("{FIXTURE}/expected.json"))?)?;
        print_scores(
            "pycocoevalcap",
            expected.bleu,
            expected.rouge_l,
            expected.cider,
        );
    }
    Ok(())
}

/// One line of scores on pycocoevalcap's scale (the reference reports CIDEr-D
/// ×100, so 0.94 here is its "94.0").
fn print_scores(who: &str, bleu: [f64; 4], rouge_l: f64, cider: f64) {
    println!(
        "{who:>14}: BLEU-1 {:.4}  BLEU-2 {:.4}  BLEU-3 {:.4}  BLEU-4 {:.4}  ROUGE-L {:.4}  CIDEr-D {:.4}",
        bleu[0], bleu[1], bleu[2], bleu[3], rouge_l, cider
    );
}
