//! Why a pretraining run could not start or stopped.

use std::path::PathBuf;

use virtex_data::batch::LoaderError;
use virtex_data::coco::CocoError;
use virtex_data::tokenizer::TokenizerError;
use virtex_text::models::{ModelConfigError, TargetsMismatch};

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::metrics::MetricsError;

/// A pretraining run that could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A split's annotations or images cannot be read.
    #[error("DATA.ROOT {root}: {source}")]
    Dataset {
        /// `DATA.ROOT`.
        root: PathBuf,
        /// What is wrong.
        source: CocoError,
    },
    /// `DATA.TOKENIZER_MODEL` cannot be loaded.
    #[error("DATA.TOKENIZER_MODEL: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// Multilabel classification over a vocabulary that is not categories + 1.
    #[error(
        "DATA.VOCAB_SIZE is {vocab_size} but the {split} instances list {categories} \
         categories (needs categories + 1 = {})",
        categories + 1
    )]
    CategoryCount {
        /// The split.
        split: String,
        /// `DATA.VOCAB_SIZE`.
        vocab_size: usize,
        /// Categories in the instances file.
        categories: usize,
    },
    /// A split with fewer usable images than one batch.
    #[error(
        "{split} split of {root} has {usable} usable images, fewer than OPTIM.BATCH_SIZE {batch_size}"
    )]
    TooFewImages {
        /// The split.
        split: String,
        /// `DATA.ROOT`.
        root: PathBuf,
        /// Images the loader can use.
        usable: usize,
        /// `OPTIM.BATCH_SIZE`.
        batch_size: usize,
    },
    /// A batch could not be produced.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// `--init-from` weights that cannot be read.
    #[error("--init-from: {0}")]
    Init(#[from] crate::source::SourceError),
    /// The model cannot be built from the config.
    #[error(transparent)]
    Model(#[from] ModelConfigError),
    /// The loader's targets are not the model's task's.
    #[error(transparent)]
    Targets(#[from] TargetsMismatch),
    /// `OPTIM.NO_DECAY` is not a regular expression.
    #[error("OPTIM.NO_DECAY: {0}")]
    NoDecay(#[from] regex::Error),
    /// A checkpoint cannot be written, read or pruned.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `metrics.jsonl` or a plot cannot be written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The contact sheet cannot be written.
    #[error("writing the contact sheet {path}: {source}")]
    ContactSheet {
        /// The sheet.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The output directory cannot be created.
    #[error("creating output directory {path}: {source}")]
    Output {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A fresh run into a directory that already holds a run.
    #[error(
        "{output} already holds checkpoints (newest: {newest}); pass --resume to continue \
         that run, or choose another --output"
    )]
    OutputHoldsRun {
        /// The output directory.
        output: PathBuf,
        /// Its newest checkpoint.
        newest: PathBuf,
    },
    /// `DATA.SHARDS` that cannot be streamed.
    #[error("DATA.SHARDS {pattern}: {source}")]
    Shards {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        source: virtex_data::shards::ShardError,
    },
    /// Multilabel classification needs COCO instances, which shards lack.
    #[error(
        "DATA.SHARDS: multilabel_classification needs the COCO instance annotations \
         under DATA.ROOT; train it from the COCO-format split"
    )]
    ShardsWithoutInstances,
    /// `DATA.USE_PERCENTAGE` below 100 with shards.
    #[error(
        "DATA.USE_PERCENTAGE is {0}, but it selects images of DATA.ROOT's train split; \
         with DATA.SHARDS name fewer shards instead"
    )]
    ShardsWithPercentage(f64),
    /// Resuming a shard run with another number of ranks.
    #[error(
        "--resume: {checkpoint} records the shard streams of {ranks} ranks; resume it with \
         WORLD_SIZE={ranks} (this run has {world})"
    )]
    ResumeWorldSize {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// Ranks it records.
        ranks: usize,
        /// Ranks of this run.
        world: usize,
    },
    /// The other ranks of a data-parallel run failed or could not be reached.
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistributedError),
    /// `--resume` from a checkpoint of another model or dataset.
    #[error("--resume: {0} was written with different MODEL or DATA settings")]
    ResumeMismatch(PathBuf),
    /// `--resume` from a newest checkpoint that cannot be read (damaged
    /// after it was written: a checkpoint's write is atomic).
    #[error(
        "--resume: {0}; move it out of the output directory to resume from the checkpoint \
         before it"
    )]
    ResumeUnreadable(CheckpointError),
    /// The loss became NaN or infinite.
    #[error("iteration {iteration}: the loss is {loss}; stopping ({})", match last_checkpoint {
        Some(path) => format!("the last good checkpoint is {}", path.display()),
        None => "no checkpoint was written yet".to_string(),
    })]
    NonFiniteLoss {
        /// The iteration, from 1.
        iteration: u64,
        /// The loss.
        loss: f64,
        /// The last good checkpoint (the divergence guard's, else the newest).
        last_checkpoint: Option<PathBuf>,
    },
    /// The training loss left its range (`TRAIN.DIVERGENCE_FACTOR`).
    #[error(
        "iteration {iteration}: the training loss diverged (loss {loss:.4}; the mean of {}, \
         {:.4}, is over {factor} × the lowest mean so far, {:.4}, of {}); stopping ({})",
        window.iterations(), window.mean, best.mean, best.iterations(),
        match last_good_checkpoint {
            Some(path) => format!("the last good checkpoint is {}", path.display()),
            None => "no good checkpoint was written".to_string(),
        }
    )]
    Diverged {
        /// The iteration the run stopped at, from 1.
        iteration: u64,
        /// Its loss.
        loss: f64,
        /// The window of `TRAIN.DIVERGENCE_WINDOW` iterations (fewer at the
        /// start of a run) ending there, which tripped the guard.
        window: crate::trainer::LossWindow,
        /// The window of the lowest mean so far.
        best: crate::trainer::LossWindow,
        /// `TRAIN.DIVERGENCE_FACTOR`.
        factor: f64,
        /// The newest checkpoint written at or before the end of `best`,
        /// kept whatever `TRAIN.KEEP_LAST` says.
        last_good_checkpoint: Option<PathBuf>,
    },
    /// A checkpoint could not be written (no space, no permission, the
    /// directory gone); the file it would have replaced is as it was.
    #[error("writing the checkpoint {path}: {source}; stopping ({})", match previous {
        Some(path) => format!("the previous checkpoint {} is intact", path.display()),
        None => "no checkpoint was written before".to_string(),
    })]
    CheckpointWrite {
        /// The checkpoint.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
        /// The checkpoint written before, untouched.
        previous: Option<PathBuf>,
    },
}
