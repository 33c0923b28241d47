//! Parallel, prefetching batches for the pretraining tasks: decode + augment +
//! tokenize (+ the task's targets) on rayon's worker threads while the model
//! trains on the previous batch. Every sample's randomness comes from
//! `(seed, epoch, index)`, so the batches are identical whatever the number of
//! threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rayon::prelude::*;

use crate::augment::TrainAugmentation;
use crate::caption::{CaptionTokens, MAX_CAPTION_LENGTH, normalize_caption};
use crate::coco::CocoCaptions;
pub use crate::images::BadImagePolicy;
use crate::images::{EvalTransform, ImageError, load_rgb, to_normalized_chw};
use crate::tasks::{MaskedCaption, TaskTargets, TaskView, pad_batch, token_bag};
use crate::tokenizer::SentencePieceTokenizer;
use image::RgbImage;

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
    /// The targets of the loader's [`TaskView`].
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

/// How samples' images are prepared.
#[derive(Clone, Debug, PartialEq)]
pub enum Preprocessing {
    /// Caption-aware training augmentation.
    Train(TrainAugmentation),
    /// Evaluation: shorter side → `size`, centre crop.
    Eval {
        /// Output side.
        size: u32,
    },
}

impl Preprocessing {
    /// Output image side.
    pub fn size(&self) -> u32 {
        match self {
            Preprocessing::Train(augment) => augment.size,
            Preprocessing::Eval { size } => *size,
        }
    }
}

/// A processed sample.
pub(crate) struct Sample {
    id: u64,
    pixels: Vec<f32>,
    tokens: CaptionTokens,
    target: SampleTarget,
}

/// One sample's task target.
enum SampleTarget {
    None,
    Labels(Vec<u32>),
    Masked(MaskedCaption),
}

/// What turns a decoded image and its captions into a training sample, and
/// samples into a [`PretrainingBatch`]: caption choice, preprocessing,
/// tokenisation and the task's targets. Shared by the COCO-format loader and
/// the shard stream ([`crate::shards`]).
#[derive(Clone)]
pub struct SamplePipeline {
    tokenizer: Arc<SentencePieceTokenizer>,
    preprocessing: Preprocessing,
    task: TaskView,
    policy: BadImagePolicy,
    max_caption_length: usize,
    first_caption_only: bool,
    skipped: Arc<AtomicUsize>,
}

impl SamplePipeline {
    /// Captioning samples (see [`Self::with_task`]), undecodable images an
    /// error, captions up to [`MAX_CAPTION_LENGTH`] tokens.
    pub fn new(tokenizer: Arc<SentencePieceTokenizer>, preprocessing: Preprocessing) -> Self {
        Self {
            tokenizer,
            preprocessing,
            task: TaskView::Captioning,
            policy: BadImagePolicy::Error,
            max_caption_length: MAX_CAPTION_LENGTH,
            first_caption_only: false,
            skipped: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Uses each image's first caption only (`DATA.USE_SINGLE_CAPTION`)
    /// instead of drawing one of them.
    pub fn with_first_caption_only(mut self, first_only: bool) -> Self {
        self.first_caption_only = first_only;
        self
    }

    /// Produces `task`'s targets.
    pub fn with_task(mut self, task: TaskView) -> Self {
        self.task = task;
        self
    }

    /// Sets what to do with undecodable images.
    pub fn with_bad_image_policy(mut self, policy: BadImagePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Truncates captions to `tokens` tokens, `[SOS]` and `[EOS]` included.
    pub fn with_max_caption_length(mut self, tokens: usize) -> Self {
        self.max_caption_length = tokens;
        self
    }

    /// The task whose targets are produced.
    pub fn task(&self) -> &TaskView {
        &self.task
    }

    /// The bad-image policy.
    pub fn policy(&self) -> BadImagePolicy {
        self.policy
    }

    /// Images skipped so far under [`BadImagePolicy::Skip`].
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Counts one skipped sample.
    pub(crate) fn count_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Output image side.
    pub fn size(&self) -> u32 {
        self.preprocessing.size()
    }

    /// One sample of image `id` from its decoded `image` and `captions` (one
    /// is drawn with `rng`, which also drives the augmentation); `None` when
    /// the image is unusable and the policy skips it.
    pub(crate) fn sample(
        &self,
        id: u64,
        image: Result<RgbImage, ImageError>,
        captions: &[String],
        rng: &mut StdRng,
    ) -> Result<Option<Sample>, LoaderError> {
        let image = match image {
            Ok(image) => image,
            Err(_) if self.policy == BadImagePolicy::Skip => {
                self.count_skipped();
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let captions = match self.first_caption_only {
            true => &captions[..captions.len().min(1)],
            false => captions,
        };
        let caption = normalize_caption(captions.choose(rng).ok_or(LoaderError::NoCaption(id))?);
        let (image, caption) = match &self.preprocessing {
            Preprocessing::Train(augment) => augment.apply(&image, &caption, rng),
            Preprocessing::Eval { size } => {
                (EvalTransform::pretraining(*size).apply(&image), caption)
            }
        };
        let tokens = CaptionTokens::new(&self.tokenizer, &caption, self.max_caption_length)
            .ok_or(LoaderError::NoBoundaryTokens)?;
        let target = match &self.task {
            TaskView::Captioning => SampleTarget::None,
            TaskView::TokenClassification => SampleTarget::Labels(token_bag(&tokens.forward)),
            TaskView::MultilabelClassification(instances) => SampleTarget::Labels(
                instances
                    .labels
                    .get(&id)
                    .cloned()
                    .ok_or(LoaderError::NoInstances(id))?,
            ),
            TaskView::MaskedLm {
                config,
                mask_id,
                vocab_size,
            } => SampleTarget::Masked(config.mask(&tokens.forward, *mask_id, *vocab_size, rng)),
        };
        Ok(Some(Sample {
            id,
            pixels: to_normalized_chw(&image),
            tokens,
            target,
        }))
    }

    /// The samples as one padded batch (skipped ones already left out).
    pub(crate) fn assemble(&self, samples: &[Sample]) -> PretrainingBatch {
        let forward: Vec<&[u32]> = samples
            .iter()
            .map(|s| s.tokens.forward.as_slice())
            .collect();
        let backward: Vec<&[u32]> = samples
            .iter()
            .map(|s| s.tokens.backward.as_slice())
            .collect();
        let (forward, max_len, lengths) = pad_batch(&forward);
        let (backward, _, _) = pad_batch(&backward);
        PretrainingBatch {
            image_ids: samples.iter().map(|s| s.id).collect(),
            images: samples
                .iter()
                .flat_map(|s| s.pixels.iter().copied())
                .collect(),
            size: self.size() as usize,
            forward,
            backward,
            max_len,
            lengths,
            targets: self.targets(samples),
        }
    }

    /// Pads the samples' task targets into one batch.
    fn targets(&self, samples: &[Sample]) -> TaskTargets {
        let labels = |pick: fn(&SampleTarget) -> &[u32]| -> Vec<&[u32]> {
            samples.iter().map(|s| pick(&s.target)).collect()
        };
        match self.task {
            TaskView::Captioning => TaskTargets::Captioning,
            TaskView::TokenClassification | TaskView::MultilabelClassification(_) => {
                let (labels, width, _) = pad_batch(&labels(|t| match t {
                    SampleTarget::Labels(labels) => labels,
                    _ => &[],
                }));
                TaskTargets::Labels { labels, width }
            }
            TaskView::MaskedLm { .. } => {
                let (tokens, _, _) = pad_batch(&labels(|t| match t {
                    SampleTarget::Masked(masked) => &masked.tokens,
                    _ => &[],
                }));
                let (labels, _, _) = pad_batch(&labels(|t| match t {
                    SampleTarget::Masked(masked) => &masked.labels,
                    _ => &[],
                }));
                TaskTargets::MaskedLm { tokens, labels }
            }
        }
    }
}

/// The random generator of sample `index` in a stream seeded `epoch_seed`.
pub(crate) fn sample_rng(epoch_seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(epoch_seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// The seed of everything random in `epoch` of a stream seeded `seed`.
pub(crate) fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Produces pretraining batches from a COCO-format dataset.
#[derive(Clone)]
pub struct PretrainingLoader {
    dataset: Arc<CocoCaptions>,
    /// The dataset positions an epoch visits (all, or those with instances).
    visited: Arc<Vec<usize>>,
    pipeline: SamplePipeline,
    batch_size: usize,
    seed: u64,
    /// This loader's rank among `world` data-parallel ranks: it produces
    /// rows `rank·b..(rank+1)·b` of every global batch, `b = batch_size / world`.
    rank: usize,
    world: usize,
}

impl PretrainingLoader {
    /// A captioning loader over `dataset` producing batches of `batch_size`
    /// (see [`Self::with_task`] for the other tasks).
    pub fn new(
        dataset: Arc<CocoCaptions>,
        tokenizer: Arc<SentencePieceTokenizer>,
        preprocessing: Preprocessing,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        Self::with_pipeline(
            dataset,
            SamplePipeline::new(tokenizer, preprocessing),
            batch_size,
            seed,
        )
    }

    /// A loader over `dataset` whose samples `pipeline` makes; for
    /// multilabel classification, the images without instances are left out.
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
            world: 1,
        }
    }

    /// The loader of `rank` among `world` data-parallel ranks: its equal
    /// share of each global batch of `batch_size` (which `world` must divide).
    pub fn for_rank(mut self, rank: usize, world: usize) -> Result<Self, LoaderError> {
        if world == 0 || rank >= world || !self.batch_size.is_multiple_of(world) {
            return Err(LoaderError::RankShare {
                batch_size: self.batch_size,
                rank,
                world,
            });
        }
        self.rank = rank;
        self.world = world;
        Ok(self)
    }

    /// Produces `task`'s targets; for multilabel classification, the images
    /// without instances are left out from then on.
    pub fn with_task(self, task: TaskView) -> Self {
        let pipeline = self.pipeline.with_task(task);
        let (rank, world) = (self.rank, self.world);
        let mut loader = Self::with_pipeline(self.dataset, pipeline, self.batch_size, self.seed);
        (loader.rank, loader.world) = (rank, world);
        loader
    }

    /// Number of images an epoch visits.
    pub fn len(&self) -> usize {
        self.visited.len()
    }

    /// Whether no image is visited.
    pub fn is_empty(&self) -> bool {
        self.visited.is_empty()
    }

    /// Sets what to do with undecodable images.
    pub fn with_bad_image_policy(mut self, policy: BadImagePolicy) -> Self {
        self.pipeline = self.pipeline.with_bad_image_policy(policy);
        self
    }

    /// Truncates captions to `tokens` tokens, `[SOS]` and `[EOS]` included
    /// (default [`MAX_CAPTION_LENGTH`], the reference's).
    pub fn with_max_caption_length(mut self, tokens: usize) -> Self {
        self.pipeline = self.pipeline.with_max_caption_length(tokens);
        self
    }

    /// Images skipped so far under [`BadImagePolicy::Skip`].
    pub fn skipped(&self) -> usize {
        self.pipeline.skipped()
    }

    /// Full batches per epoch (the last partial batch is dropped, as the reference).
    pub fn batches_per_epoch(&self) -> usize {
        self.visited.len() / self.batch_size
    }

    /// The sample order of `epoch`: a permutation seeded by `(seed, epoch)`.
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = self.visited.as_ref().clone();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(self.seed, epoch)));
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
        let share = self.batch_size / self.world;
        let indices = &global[self.rank * share..(self.rank + 1) * share];
        let samples: Vec<Option<Sample>> = indices
            .par_iter()
            .map(|&index| self.sample(epoch, index))
            .collect::<Result<_, _>>()?;
        let samples: Vec<Sample> = samples.into_iter().flatten().collect();
        Ok(self.pipeline.assemble(&samples))
    }

    /// Every full batch of `epoch` in order, produced on a background thread
    /// up to `prefetch` batches ahead of the consumer.
    pub fn epoch(
        &self,
        epoch: u64,
        prefetch: usize,
    ) -> Receiver<Result<PretrainingBatch, LoaderError>> {
        self.epoch_from(epoch, 0, prefetch)
    }

    /// [`Self::epoch`] starting at batch `first` (resuming mid-epoch).
    pub fn epoch_from(
        &self,
        epoch: u64,
        first: usize,
        prefetch: usize,
    ) -> Receiver<Result<PretrainingBatch, LoaderError>> {
        let (sender, receiver) = sync_channel(prefetch.max(1));
        let loader = self.clone();
        std::thread::spawn(move || {
            let order = loader.order(epoch);
            for batch in first..loader.batches_per_epoch() {
                let result = loader.batch_in_order(&order, epoch, batch);
                let failed = result.is_err();
                if sender.send(result).is_err() || failed {
                    break;
                }
            }
        });
        receiver
    }
}
