//! Sharded tar datasets in the WebDataset layout, for captioned-image
//! collections beyond COCO (CC3M, CC12M, RedCaps): each sample is a run of
//! tar members sharing a key, `<key>.jpg` (or `.jpeg`, `.png`) with
//! `<key>.txt` (the caption) or `<key>.json` (`"caption"` or `"captions"`,
//! optionally `"image_id"`), in shards named `prefix-{000000..000099}.tar`.
//!
//! - [`expand_shard_pattern`] turns a brace pattern into the shard files.
//! - [`index_shard`] reads one shard's member headers and captions in place
//!   (no unpacking; image bytes are read only when a sample is used).
//! - [`ShardStream`] streams pretraining batches from the shards: the shard
//!   order is shuffled each epoch and the shards are dealt to the ranks of a
//!   data-parallel run, samples are shuffled within a buffer, and every batch
//!   carries the [`StreamPosition`] a resumed run continues from.
//! - [`write_shards`] writes any COCO-format dataset as shards.
//!
//! ```no_run
//! use std::sync::Arc;
//! use virtex_data::pipeline::{Preprocessing, SamplePipeline};
//! use virtex_data::shards::{ShardStream, StreamPosition, expand_shard_pattern};
//! use virtex_data::tokenizer::SentencePieceTokenizer;
//!
//! let shards = expand_shard_pattern("shards/train-{000000..000009}.tar")?;
//! let tokenizer = Arc::new(SentencePieceTokenizer::from_file("vocab.model")?);
//! let pipeline = SamplePipeline::new(tokenizer, Preprocessing::Eval { size: 224 });
//! // Rank 0 of 2, 32 images per batch, seed 0.
//! let stream = ShardStream::new(shards, pipeline, 32, 0)?.for_rank(0, 2)?;
//! for batch in stream.batches_from(StreamPosition::START, 2).iter().take(10) {
//!     let (batch, position) = batch?;
//!     println!("{} images; resume from {position}", batch.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod index;
mod pattern;
mod stream;
mod write;

use std::path::PathBuf;

pub use index::{BadPair, MemberSpan, ShardIndex, ShardSample, index_shard};
pub use pattern::expand_shard_pattern;
pub use stream::{DEFAULT_SHUFFLE_BUFFER, ShardStream, StreamPosition};
pub use write::{ShardsWritten, write_shards};

/// A shard set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A malformed brace pattern.
    #[error("shard pattern '{pattern}': {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// A pattern that names no existing file.
    #[error("shard pattern '{pattern}' names {count} files, but {missing} does not exist")]
    Missing {
        /// The pattern.
        pattern: String,
        /// Files it names.
        count: usize,
        /// The first that is missing.
        missing: PathBuf,
    },
    /// A shard that cannot be read as a tar archive.
    #[error("{path}: {message}")]
    Read {
        /// The shard.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A sample that is not an image with a caption (under `BadImagePolicy::Error`).
    #[error("{path}: sample '{key}': {reason}")]
    BadSample {
        /// The shard.
        path: PathBuf,
        /// The sample's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Fewer shards than ranks: some rank would get nothing.
    #[error("{shards} shards cannot be dealt to {world} ranks: every rank needs at least one")]
    TooFewShards {
        /// Shards in the set.
        shards: usize,
        /// Ranks of the run.
        world: usize,
    },
    /// A rank number outside the world.
    #[error("rank {rank} is not below the world size {world}")]
    Rank {
        /// The rank.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// A whole epoch of a rank's shards without one usable sample.
    #[error("rank {rank}'s {shards} shards hold no usable sample")]
    NoSamples {
        /// The rank.
        rank: usize,
        /// Its shards.
        shards: usize,
    },
    /// Writing shards failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
