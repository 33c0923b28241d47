//! # virtex-eval
//!
//! Evaluating VirTex backbones and captioners, as the reference's scripts do.
//! Each evaluation is a task run on the backend it is dispatched to, its
//! weights from any [`WeightsSource`]:
//!
//! - [`features`]: pooled features of a frozen backbone ([`features::FeatureTask`]).
//! - [`voc07`]: the VOC07 evaluation ([`voc07::Voc07Task`]): features, then
//!   the reference's per-class linear SVMs ([`voc07::protocol`]) on a
//!   devkit's splits ([`voc07::devkit`]); [`svm`] is the SVM solver and
//!   [`average_precision`] the AP it is scored by.
//! - [`transfer`]: the linear probe and fine-tuning on an ImageFolder
//!   dataset ([`transfer::TransferTask`]), with the classifier and its
//!   training loop in [`transfer::classifier`].
//! - [`emoji`]: the miniature VirTex experiment on the bundled emoji data
//!   (linear probes of pretrained and random backbones).
//! - [`captioning`]: captioning a set of images ([`captioning::CaptionTask`]),
//!   with per-word [`attention_maps`].
//! - [`caption_metrics`]: scoring captions against references with
//!   BLEU-1..4, ROUGE-L and CIDEr-D as pycocoevalcap does.
//! - [`run_captions`]: a run's captions of a whole split, scored (CIDEr-D,
//!   BLEU-4, distinct and top captions, the emoji's subcategory named) and
//!   shown on the run's contact sheet ([`run_captions::RunCaptioning`]).
//! - [`error`]: [`EvalError`], what stops a task.
//!
//! Caption a folder with a virtex-rs checkpoint:
//!
//! ```no_run
//! use std::path::Path;
//! use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS};
//! use virtex_eval::captioning::{CaptionTask, ImageSet};
//! use virtex_train::{config::Config, device::DeviceSpec, source::WeightsSource};
//!
//! let task = CaptionTask {
//!     source: WeightsSource::Native("runs/emoji_bicaptioning/checkpoint_800.safetensors".into()),
//!     config: Config::default(),
//!     tokenizer: None,
//!     decoder: None,
//!     beam_prefix: None,
//!     prior_penalty: None,
//!     backward_weight: None,
//!     images: ImageSet::folder(Path::new("data/emoji/val2017"))?,
//!     batch: 16,
//!     attention_dir: None,
//!     on_bad_image: BadImagePolicy::Skip,
//!     max_image_pixels: DEFAULT_MAX_PIXELS,
//! };
//! for result in DeviceSpec::Cpu.dispatch(task)??.results {
//!     println!("{:?}: {}", result.image, result.caption);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`WeightsSource`]: virtex_train::source::WeightsSource

pub mod attention_maps;
pub mod average_precision;
pub mod caption_metrics;
pub mod captioning;
pub mod emoji;
pub mod error;
pub mod features;
pub mod run_captions;
pub mod svm;
pub mod transfer;
pub mod voc07;

pub use error::EvalError;
