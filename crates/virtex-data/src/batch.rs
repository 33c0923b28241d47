//! What a pretraining batch holds, why one cannot be produced, and how the
//! ranks of a data-parallel run share it.

use crate::images::ImageError;
use crate::tasks::TaskTargets;

/// A failure while producing a batch.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// An image could not be used (policy `Error`).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The tokenizer lacks `[SOS]` or `[EOS]`.
    #[error("the tokenizer has no [SOS]/[EOS] control symbols")]
    NoBoundaryTokens,
    /// A sample without any caption.
    #[error("image {0} has no caption")]
    NoCaption(u64),
    /// Multilabel classification of an image without instance annotations.
    #[error("image {0} has no instance annotations (multilabel classification)")]
    NoInstances(u64),
    /// A global batch that the ranks cannot share equally.
    #[error(
        "a batch of {batch_size} cannot be shared equally by {world} ranks (rank {rank}): \
         OPTIM.BATCH_SIZE must be a multiple of the world size"
    )]
    RankShare {
        /// The global batch size.
        batch_size: usize,
        /// The rank asked for.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// A tar shard that cannot be read.
    #[error(transparent)]
    Shard(#[from] crate::shards::ShardError),
    /// A loader thread that panicked (a rayon worker's panic included): the
    /// batches it had yet to produce are lost, so the stream ends here.
    #[error("the {thread} thread panicked: {message}")]
    Panicked {
        /// Which thread, e.g. `COCO loader, epoch 3`.
        thread: String,
        /// What the panic said.
        message: String,
    },
    /// A loader thread that could not be started.
    #[error("cannot start the {thread} thread: {message}")]
    Spawn {
        /// Which thread.
        thread: String,
        /// What the system said.
        message: String,
    },
    /// A loader thread that stopped before its epoch's end without saying
    /// why (after an error it already reported, or killed): the stream does
    /// not go on to another epoch, which would skip the rest of this one.
    #[error("the {thread} thread ended without finishing epoch {epoch}")]
    Ended {
        /// Which thread.
        thread: String,
        /// The epoch it was producing.
        epoch: u64,
    },
}

/// One batch: images, caption tokens in both directions, and the task's targets.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainingBatch {
    /// COCO ids of the images.
    pub image_ids: Vec<u64>,
    /// Normalised images, `[batch, 3, size, size]` row-major.
    pub images: Vec<f32>,
    /// Image side.
    pub size: usize,
    /// `[SOS] … [EOS]` padded with 0, `[batch, max_len]` row-major.
    pub forward: Vec<u32>,
    /// The reversed tokens, padded, `[batch, max_len]`.
    pub backward: Vec<u32>,
    /// Padded length.
    pub max_len: usize,
    /// Tokens per caption.
    pub lengths: Vec<usize>,
    /// The targets of the pipeline's [`TaskView`](crate::tasks::TaskView).
    pub targets: TaskTargets,
}

impl PretrainingBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.image_ids.len()
    }

    /// Whether every sample was skipped.
    pub fn is_empty(&self) -> bool {
        self.image_ids.is_empty()
    }
}

/// The rows of each global batch of `batch_size` that `rank` among `world`
/// data-parallel ranks produces: `batch_size / world`, which must be whole
/// (and `rank` below `world`).
pub fn rank_share(batch_size: usize, rank: usize, world: usize) -> Result<usize, LoaderError> {
    if world == 0 || rank >= world || !batch_size.is_multiple_of(world) {
        return Err(LoaderError::RankShare {
            batch_size,
            rank,
            world,
        });
    }
    Ok(batch_size / world)
}
