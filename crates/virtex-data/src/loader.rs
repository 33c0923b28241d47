//! Parallel, prefetching batches from a COCO-format dataset: decoding,
//! augmentation, tokenisation and the task's targets run on rayon's worker
//! threads while the model trains on the previous batch. Every sample's
//! randomness comes from `(seed, epoch, index)` ([`crate::seed`]), so the
//! batches are identical whatever the number of threads.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::batch::{LoaderError, PretrainingBatch, rank_share};
use crate::coco::CocoCaptions;
use crate::images::load_rgb;
use crate::pipeline::{Sample, SamplePipeline};
use crate::seed::{epoch_rng, epoch_seed, sample_rng};
use crate::tasks::TaskView;

/// Produces pretraining batches from a COCO-format dataset.
#[derive(Clone)]
pub struct PretrainingLoader {
    dataset: Arc<CocoCaptions>,
    /// The dataset positions an epoch visits (all, or those with instances).
    visited: Arc<Vec<usize>>,
    pipeline: SamplePipeline,
    batch_size: usize,
    seed: u64,
    /// This loader's rank among the data-parallel ranks and its share of
    /// each global batch: it produces rows `rank·share..(rank+1)·share`.
    rank: usize,
    share: usize,
}

impl PretrainingLoader {
    /// A loader over `dataset` producing batches of `batch_size` whose
    /// samples `pipeline` makes; for multilabel classification, the images
    /// without instances are left out.
    pub fn with_pipeline(
        dataset: Arc<CocoCaptions>,
        pipeline: SamplePipeline,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        let visited = match pipeline.task() {
            TaskView::MultilabelClassification(instances) => (0..dataset.images.len())
                .filter(|&i| instances.labels.contains_key(&dataset.images[i].id))
                .collect(),
            _ => (0..dataset.images.len()).collect(),
        };
        Self {
            visited: Arc::new(visited),
            dataset,
            pipeline,
            batch_size,
            seed,
            rank: 0,
            share: batch_size,
        }
    }

    /// The loader of `rank` among `world` data-parallel ranks: its equal
    /// share of each global batch of `batch_size` ([`rank_share`]).
    pub fn for_rank(mut self, rank: usize, world: usize) -> Result<Self, LoaderError> {
        self.share = rank_share(self.batch_size, rank, world)?;
        self.rank = rank;
        Ok(self)
    }

    /// Number of images an epoch visits.
    pub fn len(&self) -> usize {
        self.visited.len()
    }

    /// Whether no image is visited.
    pub fn is_empty(&self) -> bool {
        self.visited.is_empty()
    }

    /// Images skipped so far under
    /// [`BadImagePolicy::Skip`](crate::images::BadImagePolicy::Skip).
    pub fn skipped(&self) -> usize {
        self.pipeline.skipped()
    }

    /// The images skipped so far, each once, with why
    /// ([`SamplePipeline::skipped_images`]).
    pub fn skipped_images(&self) -> Vec<crate::images::ImageError> {
        self.pipeline.skipped_images()
    }

    /// Full batches per epoch (the last partial batch is dropped, as the reference).
    pub fn batches_per_epoch(&self) -> usize {
        self.visited.len() / self.batch_size
    }

    /// The sample order of `epoch`: a permutation seeded by `(seed, epoch)`.
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = self.visited.as_ref().clone();
        order.shuffle(&mut epoch_rng(self.seed, epoch));
        order
    }

    fn sample(&self, epoch: u64, index: usize) -> Result<Option<Sample>, LoaderError> {
        let item = &self.dataset.images[index];
        let mut rng = sample_rng(epoch_seed(self.seed, epoch), index as u64);
        self.pipeline
            .sample(item.id, load_rgb(&item.path), &item.captions, &mut rng)
    }

    /// Batch `batch` of `epoch`, its samples processed in parallel.
    pub fn batch(&self, epoch: u64, batch: usize) -> Result<PretrainingBatch, LoaderError> {
        self.batch_in_order(&self.order(epoch), epoch, batch)
    }

    /// Batch `batch` of `epoch`, given the epoch's sample `order`.
    fn batch_in_order(
        &self,
        order: &[usize],
        epoch: u64,
        batch: usize,
    ) -> Result<PretrainingBatch, LoaderError> {
        let global = &order[batch * self.batch_size..(batch + 1) * self.batch_size];
        let indices = &global[self.rank * self.share..(self.rank + 1) * self.share];
        self.batch_of(epoch, indices)
    }

    /// The samples of the images at `positions` in the dataset, as `epoch`
    /// draws them, as one batch (processed in parallel; images skipped
    /// under [`BadImagePolicy::Skip`](crate::images::BadImagePolicy::Skip)
    /// left out).
    pub fn batch_of(
        &self,
        epoch: u64,
        positions: &[usize],
    ) -> Result<PretrainingBatch, LoaderError> {
        let samples: Vec<Option<Sample>> = positions
            .par_iter()
            .map(|&index| self.sample(epoch, index))
            .collect::<Result<_, _>>()?;
        let samples: Vec<Sample> = samples.into_iter().flatten().collect();
        Ok(self.pipeline.assemble(&samples))
    }

    /// The dataset the batches come from.
    pub fn dataset(&self) -> &CocoCaptions {
        &self.dataset
    }

    /// Every full batch of `epoch` in order, produced on a background thread
    /// up to `prefetch` batches ahead of the consumer. The channel closes
    /// after the last batch, or after an error (a panic on the loader's
    /// threads is a [`LoaderError::Panicked`]).
    pub fn epoch(
        &self,
        epoch: u64,
        prefetch: usize,
    ) -> Receiver<Result<PretrainingBatch, LoaderError>> {
        self.epoch_from(epoch, 0, prefetch, |batch| batch, None)
    }

    /// The batches of `epoch` from batch `first` on (resuming mid-epoch),
    /// each as `batch` makes it, then `end` if any: the marker that the
    /// epoch is complete.
    fn epoch_from<T: Send + 'static>(
        &self,
        epoch: u64,
        first: usize,
        prefetch: usize,
        batch: fn(PretrainingBatch) -> T,
        end: Option<T>,
    ) -> Receiver<Result<T, LoaderError>> {
        let loader = self.clone();
        crate::prefetch::prefetch(prefetch, coco_thread(epoch), move |send| {
            let order = loader.order(epoch);
            for index in first..loader.batches_per_epoch() {
                if !send(loader.batch_in_order(&order, epoch, index).map(batch)) {
                    return;
                }
            }
            if let Some(end) = end {
                send(Ok(end));
            }
        })
    }

    /// The batches of training iteration `iteration` on (batch
    /// `iteration mod batches_per_epoch` of epoch `iteration div
    /// batches_per_epoch`), across epochs without end, each epoch produced
    /// up to `prefetch` batches ahead. Panics if an epoch has no full batch.
    pub fn batches_from(&self, iteration: u64, prefetch: usize) -> CocoBatches {
        let per_epoch = self.batches_per_epoch() as u64;
        let epoch = iteration / per_epoch;
        let first = (iteration % per_epoch) as usize;
        CocoBatches {
            receiver: self.epoch_from(epoch, first, prefetch, Some, Some(None)),
            loader: Box::new(self.clone()),
            prefetch,
            epoch,
        }
    }
}

/// The name of the thread that produces `epoch`'s batches.
fn coco_thread(epoch: u64) -> String {
    format!("COCO loader, epoch {epoch}")
}

/// A [`PretrainingLoader`]'s batches across epochs
/// ([`PretrainingLoader::batches_from`]). The next epoch begins only once
/// the loader thread has said that this one is complete; an error, a panic
/// on the loader's threads, or a thread that ended before its epoch's end
/// ends the stream instead: every later [`CocoBatches::recv`] is an error
/// too, so the data position a resume counts on is never skipped over.
pub struct CocoBatches {
    loader: Box<PretrainingLoader>,
    prefetch: usize,
    epoch: u64,
    /// The epoch's batches, then `None` once it is complete.
    receiver: Receiver<Result<Option<PretrainingBatch>, LoaderError>>,
}

impl CocoBatches {
    /// The next batch, waiting for it if it is not ready yet.
    pub fn recv(&mut self) -> Result<PretrainingBatch, LoaderError> {
        loop {
            match self.receiver.recv() {
                Ok(Ok(Some(batch))) => return Ok(batch),
                Ok(Ok(None)) => {
                    self.epoch += 1;
                    self.receiver =
                        self.loader
                            .epoch_from(self.epoch, 0, self.prefetch, Some, Some(None));
                }
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    return Err(LoaderError::Ended {
                        thread: coco_thread(self.epoch),
                        epoch: self.epoch,
                    });
                }
            }
        }
    }

    /// The epoch being read.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Iterator for CocoBatches {
    type Item = Result<PretrainingBatch, LoaderError>;

    /// [`CocoBatches::recv`]: never `None`.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.recv())
    }
}
