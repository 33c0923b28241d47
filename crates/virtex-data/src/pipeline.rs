//! What turns a decoded image and its captions into a training sample, and
//! samples into a [`PretrainingBatch`]: caption choice, preprocessing,
//! tokenisation and the task's targets. Shared by the COCO-format loader
//! ([`crate::loader`]) and the shard stream ([`crate::shards`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::augment::TrainAugmentation;
use crate::batch::{LoaderError, PretrainingBatch};
use crate::caption::{CaptionTokens, MAX_CAPTION_LENGTH, normalize_caption};
use crate::images::{BadImagePolicy, EvalTransform, ImageError, to_normalized_chw};
use crate::tasks::{MaskedCaption, TaskTargets, TaskView, pad_batch, token_bag};
use crate::tokenizer::SentencePieceTokenizer;

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
    skipped: Arc<Skipped>,
}

/// What a pipeline's clones have skipped under [`BadImagePolicy::Skip`].
#[derive(Default)]
struct Skipped {
    /// Skips, each time an image is drawn.
    count: AtomicUsize,
    /// Each image skipped, once, with why it was the first time.
    images: Mutex<BTreeMap<PathBuf, String>>,
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
            skipped: Arc::default(),
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

    /// Images skipped so far under [`BadImagePolicy::Skip`], counted each
    /// time one is drawn (an image left out of every epoch counts once per
    /// epoch).
    pub fn skipped(&self) -> usize {
        self.skipped.count.load(Ordering::Relaxed)
    }

    /// The images skipped so far, each once, by path, with why it was left
    /// out the first time.
    pub fn skipped_images(&self) -> Vec<ImageError> {
        let images = self
            .skipped
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        images
            .iter()
            .map(|(path, message)| ImageError {
                path: path.clone(),
                message: message.clone(),
            })
            .collect()
    }

    /// Counts one skipped sample, and records its image (`err` names it).
    pub(crate) fn skip(&self, err: ImageError) {
        self.skipped.count.fetch_add(1, Ordering::Relaxed);
        let mut images = self
            .skipped
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        images.entry(err.path).or_insert(err.message);
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
            Err(err) if self.policy == BadImagePolicy::Skip => {
                self.skip(err);
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
