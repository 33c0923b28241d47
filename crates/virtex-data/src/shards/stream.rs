//! Pretraining batches streamed from tar shards.
//!
//! The order is a function of `(seed, epoch, rank, world)` alone: each epoch
//! shuffles the shard list (the same permutation on every rank) and deals it
//! to the ranks round-robin; a rank reads its shards one after another into
//! a shuffle buffer and emits a random buffered sample each time the buffer
//! is full (then drains it at the end of the epoch). Only headers and
//! captions are read to decide the order; an emitted sample's image is read
//! and decoded on rayon's threads while the model trains on the previous
//! batch. So the batches do not depend on the number of threads, and a
//! [`StreamPosition`] (epoch, samples emitted in it) is all a resumed run
//! needs: it replays the order from the headers, reading no image.
//!
//! A rank's epoch ends when its shards are exhausted and the next begins at
//! once, so ranks with different amounts of data never wait for each other.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::ShardError;
use super::index::{ShardSample, index_shard, member_path, read_member};
use crate::batch::{LoaderError, PretrainingBatch};
use crate::images::{BadImagePolicy, DEFAULT_MAX_PIXELS, ImageError, decode_rgb_within};
use crate::pipeline::{Sample, SamplePipeline};
use crate::seed::{self, epoch_rng, epoch_seed, sample_rng};

/// Samples held for shuffling: WebDataset's customary `shuffle(1000)`.
pub const DEFAULT_SHUFFLE_BUFFER: usize = 1000;

/// Where a rank's stream stands: `offset` samples of `epoch` have been
/// emitted (bad pairs left out, undecodable images counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The epoch.
    pub epoch: u64,
    /// Samples of it already emitted.
    pub offset: u64,
}

impl StreamPosition {
    /// The beginning of the first epoch.
    pub const START: Self = Self {
        epoch: 0,
        offset: 0,
    };
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}, sample {}", self.epoch, self.offset)
    }
}

/// A rank's stream of pretraining batches over a shard set.
#[derive(Clone)]
pub struct ShardStream {
    shards: Arc<Vec<PathBuf>>,
    pipeline: SamplePipeline,
    batch_size: usize,
    seed: u64,
    rank: usize,
    world: usize,
    buffer: usize,
}

/// A sample chosen for a batch: its shard and where it stands in the stream.
struct Chosen {
    shard: usize,
    epoch: u64,
    offset: u64,
    sample: ShardSample,
}

impl ShardStream {
    /// Batches of `batch_size` samples from `shards` (a single rank), made
    /// by `pipeline`, with a [`DEFAULT_SHUFFLE_BUFFER`].
    pub fn new(
        shards: Vec<PathBuf>,
        pipeline: SamplePipeline,
        batch_size: usize,
        seed: u64,
    ) -> Result<Self, ShardError> {
        if shards.is_empty() {
            return Err(ShardError::TooFewShards {
                shards: 0,
                world: 1,
            });
        }
        Ok(Self {
            shards: Arc::new(shards),
            pipeline,
            batch_size: batch_size.max(1),
            seed,
            rank: 0,
            world: 1,
            buffer: DEFAULT_SHUFFLE_BUFFER,
        })
    }

    /// The stream of `rank` among `world` data-parallel ranks: its share of
    /// each epoch's shards.
    pub fn for_rank(mut self, rank: usize, world: usize) -> Result<Self, ShardError> {
        if rank >= world {
            return Err(ShardError::Rank { rank, world });
        }
        if self.shards.len() < world {
            return Err(ShardError::TooFewShards {
                shards: self.shards.len(),
                world,
            });
        }
        self.rank = rank;
        self.world = world;
        Ok(self)
    }

    /// Holds `samples` for shuffling (1 keeps each shard's order).
    pub fn with_shuffle_buffer(mut self, samples: usize) -> Self {
        self.buffer = samples.max(1);
        self
    }

    /// The shard files.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    /// The sample pipeline (its skipped count included).
    pub fn pipeline(&self) -> &SamplePipeline {
        &self.pipeline
    }

    /// This rank's shards in `epoch`, in reading order.
    pub fn rank_shards(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shards.len()).collect();
        order.shuffle(&mut epoch_rng(self.seed, epoch));
        order
            .into_iter()
            .skip(self.rank)
            .step_by(self.world)
            .collect()
    }

    /// The seed of this rank's randomness (the shard order is shared).
    fn rank_seed(&self) -> u64 {
        seed::rank_seed(self.seed, self.rank)
    }

    /// The name of the thread that produces this rank's batches, as its
    /// errors give it.
    pub fn thread(&self) -> String {
        format!("shard stream, rank {}", self.rank)
    }

    /// Batches from `position` on, across epochs without end, each with the
    /// position after it, produced on a background thread up to `prefetch`
    /// batches ahead. Dropping the receiver stops the thread. The channel
    /// closes only after an error: a panic on the stream's threads (a rayon
    /// worker's included) is sent as a [`LoaderError::Panicked`].
    pub fn batches_from(
        &self,
        position: StreamPosition,
        prefetch: usize,
    ) -> Receiver<Result<(PretrainingBatch, StreamPosition), LoaderError>> {
        let stream = self.clone();
        crate::prefetch::prefetch(prefetch, self.thread(), move |send| {
            let mut order = match stream.order_from(position) {
                Ok(order) => order,
                Err(err) => {
                    send(Err(err.into()));
                    return;
                }
            };
            while send(stream.next_batch(&mut order)) {}
        })
    }

    /// The sample order positioned at `position`, replayed from headers.
    fn order_from(&self, position: StreamPosition) -> Result<SampleOrder<'_>, ShardError> {
        let mut order = SampleOrder::new(self, position.epoch, false);
        for _ in 0..position.offset {
            if order.next()?.is_none() {
                break;
            }
        }
        order.counting = true;
        Ok(order)
    }

    /// The next batch and the position after it.
    fn next_batch<'a>(
        &'a self,
        order: &mut SampleOrder<'a>,
    ) -> Result<(PretrainingBatch, StreamPosition), LoaderError> {
        let mut chosen = Vec::with_capacity(self.batch_size);
        while chosen.len() < self.batch_size {
            match order.next()? {
                Some((shard, sample)) => chosen.push(Chosen {
                    shard,
                    epoch: order.epoch,
                    offset: order.emitted - 1,
                    sample,
                }),
                None if order.emitted == 0 => {
                    return Err(ShardError::NoSamples {
                        rank: self.rank,
                        shards: order.shards.len(),
                    }
                    .into());
                }
                None => *order = SampleOrder::new(self, order.epoch + 1, true),
            }
        }
        let position = StreamPosition {
            epoch: order.epoch,
            offset: order.emitted,
        };
        let samples: Vec<Option<Sample>> = chosen
            .par_iter()
            .map(|chosen| self.sample(chosen))
            .collect::<Result<_, _>>()?;
        let samples: Vec<Sample> = samples.into_iter().flatten().collect();
        Ok((self.pipeline.assemble(&samples), position))
    }

    /// Reads, decodes and prepares one chosen sample.
    fn sample(&self, chosen: &Chosen) -> Result<Option<Sample>, LoaderError> {
        let shard = &self.shards[chosen.shard];
        let name = member_path(shard, &chosen.sample.image);
        let image = read_member(shard, &chosen.sample.image)
            .map_err(|e| ImageError {
                path: name.clone(),
                message: format!("cannot read: {e}"),
            })
            .and_then(|bytes| decode_rgb_within(&bytes, &name, DEFAULT_MAX_PIXELS));
        let mut rng = sample_rng(epoch_seed(self.rank_seed(), chosen.epoch), chosen.offset);
        self.pipeline
            .sample(chosen.sample.id, image, &chosen.sample.captions, &mut rng)
    }
}

/// The order in which one epoch of a rank's samples is emitted.
struct SampleOrder<'a> {
    stream: &'a ShardStream,
    epoch: u64,
    /// This rank's shards, in reading order, and the next to read.
    shards: Vec<usize>,
    next_shard: usize,
    /// The samples of the shard being read, not yet buffered (reversed).
    pending: Vec<ShardSample>,
    current: usize,
    buffer: Vec<(usize, ShardSample)>,
    rng: StdRng,
    /// Samples emitted so far in this epoch.
    emitted: u64,
    /// Whether skipped pairs are counted (not while replaying for a resume).
    counting: bool,
}

impl<'a> SampleOrder<'a> {
    fn new(stream: &'a ShardStream, epoch: u64, counting: bool) -> Self {
        Self {
            stream,
            epoch,
            shards: stream.rank_shards(epoch),
            next_shard: 0,
            pending: Vec::new(),
            current: 0,
            buffer: Vec::with_capacity(stream.buffer),
            rng: epoch_rng(stream.rank_seed(), epoch),
            emitted: 0,
            counting,
        }
    }

    /// The next sample of the epoch, `None` at its end.
    fn next(&mut self) -> Result<Option<(usize, ShardSample)>, ShardError> {
        while self.buffer.len() < self.stream.buffer {
            if let Some(sample) = self.pending.pop() {
                self.buffer.push((self.current, sample));
            } else if self.next_shard < self.shards.len() {
                self.read_next_shard()?;
            } else {
                break;
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let pick = self.rng.random_range(0..self.buffer.len());
        self.emitted += 1;
        Ok(Some(self.buffer.swap_remove(pick)))
    }

    fn read_next_shard(&mut self) -> Result<(), ShardError> {
        let shard = self.shards[self.next_shard];
        let path = &self.stream.shards[shard];
        let index = index_shard(path)?;
        if let Some(message) = &index.corrupt {
            match self.stream.pipeline.policy() {
                BadImagePolicy::Error => {
                    return Err(ShardError::Read {
                        path: path.clone(),
                        message: message.clone(),
                    });
                }
                BadImagePolicy::Skip if self.counting => self.stream.pipeline.skip(ImageError {
                    path: path.clone(),
                    message: message.clone(),
                }),
                BadImagePolicy::Skip => {}
            }
        }
        if let Some(bad) = index.bad.first() {
            match self.stream.pipeline.policy() {
                BadImagePolicy::Error => {
                    return Err(ShardError::BadSample {
                        path: path.clone(),
                        key: bad.key.clone(),
                        reason: bad.reason.clone(),
                    });
                }
                BadImagePolicy::Skip if self.counting => {
                    for bad in &index.bad {
                        self.stream.pipeline.skip(ImageError {
                            path: path.join(&bad.key),
                            message: bad.reason.clone(),
                        });
                    }
                }
                BadImagePolicy::Skip => {}
            }
        }
        self.pending = index.samples;
        self.pending.reverse();
        self.current = shard;
        self.next_shard += 1;
        Ok(())
    }
}
