//! Captioning metrics, computed as pycocoevalcap computes them (the
//! reference's `scripts/eval_captioning.py` and COCO's caption server):
//! PTB tokenisation, corpus BLEU-1..4, ROUGE-L, CIDEr-D.
//!
//! METEOR (a Java jar with paraphrase tables) and SPICE (a Java jar that
//! downloads Stanford CoreNLP models at run time) have no Rust
//! implementation and cannot be installed offline; see docs/deviations.md.
//!
//! ```
//! use virtex_eval::caption_metrics::{CaptionPair, score_captions};
//!
//! let pairs = vec![CaptionPair {
//!     candidate: "A dog runs on the grass.".into(),
//!     references: vec!["A dog running on grass.".into(), "The dog runs.".into()],
//! }];
//! let scores = score_captions(&pairs).unwrap();
//! assert!(scores.bleu[0] > 0.5 && scores.cider >= 0.0);
//! ```

mod bleu;
mod cider;
mod ngrams;
pub mod ptb;
mod rouge;

use std::collections::BTreeMap;

use serde::Serialize;
use virtex_data::coco::{CaptionResult, ImageRef};

/// One image: a generated caption and the human references.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptionPair {
    /// The caption to score (raw text; tokenised here).
    pub candidate: String,
    /// Its reference captions (raw text).
    pub references: Vec<String>,
}

/// Corpus scores, on pycocoevalcap's scale (the reference reports CIDEr
/// ×100: 0.94 here is its "94.0").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptionScores {
    /// BLEU-1..4.
    pub bleu: [f64; 4],
    /// ROUGE-L (mean over images).
    pub rouge_l: f64,
    /// CIDEr-D (mean over images).
    pub cider: f64,
    /// CIDEr-D of each image, in input order.
    pub cider_per_image: Vec<f64>,
    /// Images scored.
    pub images: usize,
}

/// Input the metrics cannot score.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// No images.
    #[error("no captions to score")]
    Empty,
    /// A generated caption named by file, not by COCO image id.
    #[error("result {index} names its image by file name ({file_name}); scoring needs image_id")]
    NoImageId {
        /// Its position in the results.
        index: usize,
        /// The file name.
        file_name: String,
    },
    /// A generated caption of an image the references do not have.
    #[error("image_id {image_id} (result {index}) has no reference captions")]
    UnknownImage {
        /// Its position in the results.
        index: usize,
        /// The image id.
        image_id: u64,
    },
    /// An image without references.
    #[error("image {index} has no reference captions")]
    NoReferences {
        /// Its position in the input.
        index: usize,
    },
}

/// Pairs each generated caption with its image's references (from
/// [`virtex_data::coco::read_references`]).
pub fn pair_with_references(
    results: &[CaptionResult],
    references: &BTreeMap<u64, Vec<String>>,
) -> Result<Vec<CaptionPair>, MetricsError> {
    results
        .iter()
        .enumerate()
        .map(|(index, result)| {
            let image_id = match &result.image {
                ImageRef::Id { image_id } => *image_id,
                ImageRef::File { file_name } => {
                    return Err(MetricsError::NoImageId {
                        index,
                        file_name: file_name.clone(),
                    });
                }
            };
            let references = references
                .get(&image_id)
                .ok_or(MetricsError::UnknownImage { index, image_id })?;
            Ok(CaptionPair {
                candidate: result.caption.clone(),
                references: references.clone(),
            })
        })
        .collect()
}

/// BLEU, ROUGE-L and CIDEr-D of `pairs`, after PTB tokenisation.
pub fn score_captions(pairs: &[CaptionPair]) -> Result<CaptionScores, MetricsError> {
    if pairs.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = pairs.iter().position(|p| p.references.is_empty()) {
        return Err(MetricsError::NoReferences { index });
    }
    let tokenized: Vec<(String, Vec<String>)> = pairs
        .iter()
        .map(|p| {
            (
                ptb::tokenize(&p.candidate),
                p.references.iter().map(|r| ptb::tokenize(r)).collect(),
            )
        })
        .collect();
    let words: Vec<(Vec<&str>, Vec<Vec<&str>>)> = tokenized
        .iter()
        .map(|(c, refs)| {
            (
                c.split_whitespace().collect(),
                refs.iter()
                    .map(|r| r.split_whitespace().collect())
                    .collect(),
            )
        })
        .collect();
    let rouge = tokenized
        .iter()
        .map(|(c, refs)| rouge::rouge_l(c, refs))
        .sum::<f64>()
        / pairs.len() as f64;
    let cider_per_image = cider::cider_d(&words);
    Ok(CaptionScores {
        bleu: bleu::corpus_bleu(&words),
        rouge_l: rouge,
        cider: cider_per_image.iter().sum::<f64>() / pairs.len() as f64,
        cider_per_image,
        images: pairs.len(),
    })
}
