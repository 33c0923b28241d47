//! A run's captions of a whole split, scored and shown: [`score_split`] is
//! the scoring (of `cargo xtask bench first-run`'s table and of the
//! contact sheet), [`RunCaptioning`] the pipeline that captions a split
//! with a run's checkpoint, scores it and rewrites the run's contact sheet
//! ([`CONTACT_SHEET`]) with the figures at the top and each caption marked
//! by whether it names its image's kind of emoji.
//!
//! ```no_run
//! use virtex_eval::run_captions::RunCaptioning;
//! use virtex_train::device::DeviceSpec;
//!
//! let report = DeviceSpec::Cpu.dispatch(RunCaptioning {
//!     checkpoint: "runs/emoji_bicaptioning/checkpoint_800.safetensors".into(),
//!     split: "val".into(),
//! })??;
//! println!("{}: {}", report.split, report.figures);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`CONTACT_SHEET`]: virtex_train::trainer::CONTACT_SHEET

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use virtex_data::coco::{CaptionResult, CocoCaptions, ImageRef};
use virtex_data::emoji::caption_subcategory;
use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS};
use virtex_train::checkpoint::read_meta;
use virtex_train::device::BackendTask;
use virtex_train::source::WeightsSource;
use virtex_train::trainer::{sheet_entry, sheet_sample, write_run_sheet};
use virtex_vision::AutodiffVisionBackend;

use crate::caption_metrics::{pair_with_references, score_captions};
use crate::captioning::{CaptionTask, ImageSet};
use crate::error::{EvalError, io};

/// Images per forward pass when captioning a split.
const BATCH: usize = 32;

/// The figures of a split's captions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptionFigures {
    /// Images captioned.
    pub images: usize,
    /// CIDEr-D, on pycocoevalcap's scale (0.70 is the reference's "70.0").
    pub cider: f64,
    /// Corpus BLEU-4, in [0, 1].
    pub bleu4: f64,
    /// Distinct captions.
    pub distinct: usize,
    /// The most frequent caption (of those equally frequent, the first
    /// given).
    pub top_caption: String,
    /// Its share of the images, in [0, 1].
    pub top_share: f64,
    /// The share of the images whose caption names the subcategory their
    /// `"<name>, a <subcategory> emoji"` reference names
    /// ([`caption_subcategory`]), in [0, 1]; `None` where no reference has
    /// that form (data other than the bundled emoji).
    pub subcategory_right: Option<f64>,
}

/// A split's captions scored: the figures, and each image's mark.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredCaptions {
    /// The figures.
    pub figures: CaptionFigures,
    /// Whether each image's caption names its subcategory, by image id
    /// (empty where [`CaptionFigures::subcategory_right`] is `None`).
    pub subcategory_right: BTreeMap<u64, bool>,
}

/// Scores `results` (by image id) against `references`: CIDEr-D and BLEU-4
/// as pycocoevalcap computes them, distinct captions, the top caption and
/// its share, and which captions name their image's subcategory. Every
/// image needs a `"<name>, a <subcategory> emoji"` reference, or none does.
pub fn score_split(
    results: &[CaptionResult],
    references: &BTreeMap<u64, Vec<String>>,
) -> Result<ScoredCaptions, EvalError> {
    let scores = score_captions(&pair_with_references(results, references)?)?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for result in results {
        *counts.entry(&result.caption).or_default() += 1;
    }
    let (top_caption, top_count) = results
        .iter()
        .map(|r| (r.caption.as_str(), counts[r.caption.as_str()]))
        .fold(("", 0), |top, this| if this.1 > top.1 { this } else { top });
    let mut marks = BTreeMap::new();
    let mut unmarked = None;
    for result in results {
        // Every result names its image by id: `pair_with_references` took them.
        let ImageRef::Id { image_id } = result.image else {
            continue;
        };
        let kind = references[&image_id]
            .iter()
            .find_map(|r| caption_subcategory(r));
        match kind {
            Some(kind) => {
                marks.insert(image_id, caption_subcategory(&result.caption) == Some(kind));
            }
            None => unmarked = unmarked.or(Some(image_id)),
        }
    }
    if let (Some(image_id), false) = (unmarked, marks.is_empty()) {
        return Err(EvalError::NoSubcategoryReference { image_id });
    }
    let images = results.len();
    Ok(ScoredCaptions {
        figures: CaptionFigures {
            images,
            cider: scores.cider,
            bleu4: scores.bleu[3],
            distinct: counts.len(),
            top_caption: top_caption.to_string(),
            top_share: top_count as f64 / images as f64,
            subcategory_right: (!marks.is_empty())
                .then(|| marks.values().filter(|&&right| right).count() as f64 / images as f64),
        },
        subcategory_right: marks,
    })
}

/// A share in [0, 1] as a percentage with one decimal.
fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

impl CaptionFigures {
    /// The figures as a contact sheet's header (name, value): CIDEr-D, the
    /// top caption's share and the subcategory-right share first.
    pub fn header(&self, split: &str) -> Vec<(String, String)> {
        let mut header = vec![
            ("CIDEr-D".to_string(), format!("{:.1}", 100.0 * self.cider)),
            (
                "top caption".to_string(),
                format!(
                    "{} of the images: \"{}\"",
                    percent(self.top_share),
                    self.top_caption
                ),
            ),
        ];
        if let Some(right) = self.subcategory_right {
            header.push((
                "subcategory right".to_string(),
                format!(
                    "{} (✓: the caption names its image's subcategory, ✗: it does not)",
                    percent(right)
                ),
            ));
        }
        header.extend([
            ("BLEU-4".to_string(), format!("{:.1}", 100.0 * self.bleu4)),
            ("distinct captions".to_string(), self.distinct.to_string()),
            (
                "split".to_string(),
                format!("{split}, {} images", self.images),
            ),
        ]);
        header
    }
}

impl std::fmt::Display for CaptionFigures {
    /// `CIDEr-D 72.4, BLEU-4 30.1, 98 distinct captions of 185, top caption
    /// 12.4% ("…"), subcategory right 45.0%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CIDEr-D {:.1}, BLEU-4 {:.1}, {} distinct captions of {}, top caption {} ({:?})",
            100.0 * self.cider,
            100.0 * self.bleu4,
            self.distinct,
            self.images,
            percent(self.top_share),
            self.top_caption
        )?;
        if let Some(right) = self.subcategory_right {
            write!(f, ", subcategory right {}", percent(right))?;
        }
        Ok(())
    }
}

/// Captions a split of a run's data with its checkpoint, as its config's
/// `MODEL.DECODER` says, scores them ([`score_split`]), writes them as
/// `captions_<split>.json` in the checkpoint's directory, and rewrites the
/// run's contact sheet there with the figures and the marks, on the
/// backend it is dispatched to.
#[derive(Clone, Debug)]
pub struct RunCaptioning {
    /// A virtex-rs checkpoint in its run's output directory: its config
    /// names the data (`DATA.ROOT`), the decoding and the seed that picks
    /// the sheet's images.
    pub checkpoint: PathBuf,
    /// The split of `DATA.ROOT` to caption: `val`, `test`.
    pub split: String,
}

/// What [`RunCaptioning`] made.
#[derive(Clone, Debug)]
pub struct RunCaptionReport {
    /// The split captioned.
    pub split: String,
    /// The checkpoint's iteration.
    pub iteration: u64,
    /// The scores.
    pub figures: CaptionFigures,
    /// Every caption (`[{"image_id", "caption"}]`).
    pub captions: PathBuf,
    /// The rewritten contact sheet.
    pub sheet: PathBuf,
}

impl BackendTask for RunCaptioning {
    type Output = Result<RunCaptionReport, EvalError>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let meta = read_meta(&self.checkpoint)?;
        let config = meta.config;
        let dataset = CocoCaptions::load(&config.data.root, &self.split)?;
        let seed = config.random_seed;
        // Scores cover the whole split: an unreadable image stops it.
        let results = CaptionTask {
            source: WeightsSource::Native(self.checkpoint.clone()),
            config,
            tokenizer: None,
            decoder: None,
            beam_prefix: None,
            prior_penalty: None,
            backward_weight: None,
            images: ImageSet::from_dataset(&dataset),
            batch: BATCH,
            attention_dir: None,
            on_bad_image: BadImagePolicy::Error,
            max_image_pixels: DEFAULT_MAX_PIXELS,
        }
        .run::<B>(device)?
        .results;
        let references: BTreeMap<u64, Vec<String>> = dataset
            .images
            .iter()
            .map(|image| (image.id, image.captions.clone()))
            .collect();
        let scored = score_split(&results, &references)?;

        let run = self.checkpoint.parent().unwrap_or(Path::new("."));
        let captions = run.join(format!("captions_{}.json", self.split));
        let json = serde_json::to_vec_pretty(&results).map_err(|e| EvalError::Io {
            path: captions.clone(),
            source: e.into(),
        })?;
        virtex_data::atomic::write_bytes(&captions, &json).map_err(io(&captions))?;

        let by_id: HashMap<u64, &str> = results
            .iter()
            .filter_map(|r| match r.image {
                ImageRef::Id { image_id } => Some((image_id, r.caption.as_str())),
                ImageRef::File { .. } => None,
            })
            .collect();
        let entries: Vec<_> = sheet_sample(dataset.images.len(), seed)
            .into_iter()
            .filter_map(|position| {
                let id = dataset.images[position].id;
                let mark = scored.subcategory_right.get(&id).copied();
                sheet_entry(&dataset, id, by_id.get(&id)?, mark)
            })
            .collect();
        let title = format!(
            "{}: {} captions after {} iterations",
            run.display(),
            self.split,
            meta.iteration
        );
        let sheet = write_run_sheet(run, &title, &scored.figures.header(&self.split), &entries)?;
        Ok(RunCaptionReport {
            split: self.split,
            iteration: meta.iteration,
            figures: scored.figures,
            captions,
            sheet,
        })
    }
}
