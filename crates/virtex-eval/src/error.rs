//! What stops an evaluation pipeline; each variant names the file, key or
//! value at fault.

use std::path::{Path, PathBuf};

use virtex_data::coco::CocoError;
use virtex_data::images::ImageError;
use virtex_data::tokenizer::TokenizerError;
use virtex_train::TrainError;
use virtex_train::checkpoint::CheckpointError;
use virtex_train::config::ConfigError;
use virtex_train::source::SourceError;

use crate::caption_metrics::MetricsError;
use crate::transfer::ClassificationError;
use crate::voc07::devkit::VocError;

/// An evaluation that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model cannot be loaded.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The model has no caption decoder.
    #[error("{source_name} is a {task} model, which has no caption decoder")]
    NoDecoder {
        /// Where the model came from.
        source_name: String,
        /// Its pretraining task.
        task: virtex_text::PretrainingTask,
    },
    /// The tokenizer cannot be read.
    #[error("tokenizer {path}: {source}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// Why.
        source: TokenizerError,
    },
    /// The tokenizer and the config disagree.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The image list cannot be read.
    #[error(transparent)]
    Coco(#[from] CocoError),
    /// An image cannot be decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A directory cannot be read or a file written.
    #[error("{path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A COCO JSON without a `captions_<split>` name and no image directory.
    #[error("{0}: name the image directory (its name is not captions_<split>.json)")]
    NoImageDir(PathBuf),
    /// A virtex-rs checkpoint whose metadata cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A run directory without a checkpoint.
    #[error("no checkpoint in {0}: run `cargo xtask pretrain` first (or name a checkpoint)")]
    NoCheckpoint(PathBuf),
    /// A classification transfer that failed.
    #[error(transparent)]
    Classification(#[from] ClassificationError),
    /// A VOC devkit that cannot be read.
    #[error(transparent)]
    Voc(#[from] VocError),
    /// Captions that cannot be scored.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Captions of the emoji data, scored against references of which some
    /// name their image's subcategory and this image's do not.
    #[error("image {image_id} has no '<name>, a <subcategory> emoji' reference, which others have")]
    NoSubcategoryReference {
        /// The image.
        image_id: u64,
    },
    /// A run's file (its contact sheet) that could not be written.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A malformed input file.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Maps an I/O error to [`EvalError::Io`] naming `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}
