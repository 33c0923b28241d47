//! # virtex-eval
//!
//! Evaluating VirTex backbones and captioners, as the reference's scripts do:
//! frozen features ([`features`]), VOC07 linear SVMs ([`voc07`],
//! [`voc07_task`]), linear probes and fine-tuning on ImageFolder data
//! ([`classification`], [`transfer`]), captioning a set of images
//! ([`captioner`]) and scoring captions with BLEU-1..4, ROUGE-L and CIDEr-D
//! as pycocoevalcap does ([`captioning`]), attention maps
//! ([`attention_maps`]) and the miniature VirTex experiment on the bundled
//! emoji data ([`emoji`]). Weights come from any [`WeightsSource`].
//!
//! Caption a folder with a virtex-rs checkpoint:
//!
//! ```no_run
//! use std::path::Path;
//! use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS};
//! use virtex_eval::captioner::{CaptionTask, ImageSet};
//! use virtex_train::{config::Config, device::DeviceSpec, source::WeightsSource};
//!
//! let task = CaptionTask {
//!     source: WeightsSource::Native("runs/emoji_bicaptioning/checkpoint_900.safetensors".into()),
//!     config: Config::default(),
//!     tokenizer: None,
//!     decoder: None,
//!     beam_prefix: None,
//!     prior_penalty: None,
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
pub mod captioner;
pub mod captioning;
pub mod classification;
pub mod emoji;
pub mod error;
pub mod features;
pub mod svm;
pub mod transfer;
pub mod voc07;
pub mod voc07_task;

pub use error::EvalError;
