//! What a run trains and validates on: the datasets, tokenizer and loaders a
//! config names, and the stream of training batches from a given iteration,
//! from a COCO-format split (`DATA.ROOT`) or from tar shards (`DATA.SHARDS`).

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use virtex_data::batch::{LoaderError, PretrainingBatch, rank_share};
use virtex_data::coco::{CocoCaptions, CocoError};
use virtex_data::images::ImageError;
use virtex_data::instances::CocoInstances;
use virtex_data::loader::{CocoBatches, PretrainingLoader};
use virtex_data::pipeline::{Preprocessing, SamplePipeline};
use virtex_data::shards::{ShardStream, StreamPosition, expand_shard_pattern};
use virtex_data::tasks::TaskView;
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_text::PretrainingTask;

use crate::config::Config;
use crate::error::TrainError;

/// Where the training batches come from.
#[derive(Clone)]
pub(crate) enum TrainSource {
    /// The `train` split of `DATA.ROOT`.
    Coco(PretrainingLoader),
    /// The shards `DATA.SHARDS` names.
    Shards(ShardStream),
}

/// The datasets, tokenizer and loaders a config names.
pub(crate) struct Data {
    /// `DATA.TOKENIZER_MODEL`.
    pub tokenizer: Arc<SentencePieceTokenizer>,
    /// This rank's training batches.
    pub train: TrainSource,
    /// The `val` split of `DATA.ROOT` (shards or not).
    pub val: PretrainingLoader,
}

pub(crate) fn dataset_error(config: &Config) -> impl FnOnce(CocoError) -> TrainError + '_ {
    |source| TrainError::Dataset {
        root: config.data.root.clone(),
        source,
    }
}

fn load_split(config: &Config, split: &str) -> Result<CocoCaptions, TrainError> {
    let mut dataset =
        CocoCaptions::load(&config.data.root, split).map_err(dataset_error(config))?;
    if split == "train" && config.data.use_percentage < 100.0 {
        let keep = (dataset.images.len() as f64 * config.data.use_percentage / 100.0).ceil();
        dataset.images.truncate(keep as usize);
    }
    Ok(dataset)
}

fn task_view(config: &Config, split: &str, vocab_size: u32) -> Result<TaskView, TrainError> {
    Ok(match config.model.name {
        PretrainingTask::Bicaptioning | PretrainingTask::Captioning => TaskView::Captioning,
        PretrainingTask::TokenClassification => TaskView::TokenClassification,
        PretrainingTask::MultilabelClassification => {
            let instances =
                CocoInstances::load(&config.data.root, split).map_err(dataset_error(config))?;
            if instances.num_categories + 1 != config.data.vocab_size {
                return Err(TrainError::CategoryCount {
                    split: split.into(),
                    vocab_size: config.data.vocab_size,
                    categories: instances.num_categories,
                });
            }
            TaskView::MultilabelClassification(Arc::new(instances))
        }
        PretrainingTask::MaskedLm => TaskView::MaskedLm {
            config: config.data.masked_lm,
            mask_id: config.data.mask_index,
            vocab_size,
        },
    })
}

impl Data {
    /// The data of `rank` among `world` data-parallel ranks: its share of
    /// every training batch (validation is rank 0's and whole).
    pub fn new(config: &Config, rank: usize, world: usize) -> Result<Self, TrainError> {
        let tokenizer = SentencePieceTokenizer::from_file(&config.data.tokenizer_model)?;
        config.check_tokenizer(&tokenizer, &config.data.tokenizer_model)?;
        let vocab = tokenizer.vocab_size() as u32;
        let tokenizer = Arc::new(tokenizer);
        let pipeline = |split: &str, preprocessing| -> Result<SamplePipeline, TrainError> {
            Ok(SamplePipeline::new(tokenizer.clone(), preprocessing)
                .with_bad_image_policy(config.data.on_bad_image)
                .with_max_caption_length(config.data.max_caption_length)
                .with_first_caption_only(config.data.use_single_caption)
                .with_task(task_view(config, split, vocab)?))
        };
        let loader = |split: &str, preprocessing| -> Result<PretrainingLoader, TrainError> {
            let loader = PretrainingLoader::with_pipeline(
                Arc::new(load_split(config, split)?),
                pipeline(split, preprocessing)?,
                config.optim.batch_size,
                config.random_seed,
            );
            if loader.batches_per_epoch() == 0 {
                return Err(TrainError::TooFewImages {
                    split: split.into(),
                    root: config.data.root.clone(),
                    usable: loader.len(),
                    batch_size: config.optim.batch_size,
                });
            }
            Ok(loader)
        };
        let augmentation = Preprocessing::Train(config.train_augmentation()?);
        let train = match &config.data.shards {
            None => TrainSource::Coco(loader("train", augmentation)?.for_rank(rank, world)?),
            Some(pattern) => {
                if config.model.name == PretrainingTask::MultilabelClassification {
                    return Err(TrainError::ShardsWithoutInstances);
                }
                if config.data.use_percentage < 100.0 {
                    return Err(TrainError::ShardsWithPercentage(config.data.use_percentage));
                }
                let shard_error = |source| TrainError::Shards {
                    pattern: pattern.clone(),
                    source,
                };
                let share = rank_share(config.optim.batch_size, rank, world)?;
                let shards = expand_shard_pattern(pattern).map_err(shard_error)?;
                let stream = ShardStream::new(
                    shards,
                    pipeline("train", augmentation)?,
                    share,
                    config.random_seed,
                )
                .and_then(|stream| stream.for_rank(rank, world))
                .map_err(shard_error)?
                .with_shuffle_buffer(config.data.shuffle_buffer);
                TrainSource::Shards(stream)
            }
        };
        let size = config.data.image_crop_size;
        Ok(Self {
            val: loader("val", Preprocessing::Eval { size })?,
            train,
            tokenizer,
        })
    }

    /// Images and samples skipped so far in both splits.
    pub fn skipped(&self) -> usize {
        let train = match &self.train {
            TrainSource::Coco(loader) => loader.skipped(),
            TrainSource::Shards(stream) => stream.pipeline().skipped(),
        };
        train + self.val.skipped()
    }

    /// The images skipped so far in both splits, each once, by path, with
    /// why.
    pub fn skipped_images(&self) -> Vec<ImageError> {
        let mut images = match &self.train {
            TrainSource::Coco(loader) => loader.skipped_images(),
            TrainSource::Shards(stream) => stream.pipeline().skipped_images(),
        };
        images.extend(self.val.skipped_images());
        images.sort_by(|a, b| a.path.cmp(&b.path));
        images.dedup_by(|a, b| a.path == b.path);
        images
    }
}

/// Training batches from an iteration on, across epochs.
pub(crate) enum Batches {
    /// A COCO-format split: the position follows from the iteration.
    Coco(CocoBatches),
    /// Shards: the position after the last batch taken.
    Shards {
        receiver: Receiver<Result<(PretrainingBatch, StreamPosition), LoaderError>>,
        position: StreamPosition,
        /// The stream thread's name, for an error when it has ended.
        thread: String,
    },
}

impl Batches {
    /// The batches of iteration `iteration` on; a shard stream continues from
    /// `position` (the resumed checkpoint's).
    pub fn starting_at(
        source: &TrainSource,
        iteration: u64,
        position: StreamPosition,
        prefetch: usize,
    ) -> Self {
        match source {
            TrainSource::Coco(loader) => Self::Coco(loader.batches_from(iteration, prefetch)),
            TrainSource::Shards(stream) => Self::Shards {
                receiver: stream.batches_from(position, prefetch),
                position,
                thread: stream.thread(),
            },
        }
    }

    /// The next training batch. A loader thread's error or panic is an
    /// error here, and so is every later call: the stream never skips on.
    pub fn next(&mut self) -> Result<PretrainingBatch, LoaderError> {
        match self {
            Self::Coco(batches) => batches.recv(),
            Self::Shards {
                receiver,
                position,
                thread,
            } => {
                // The stream's thread ends only after sending its error (or
                // its panic): past that, there is nothing more to take.
                let (batch, after) = receiver.recv().map_err(|_| LoaderError::Ended {
                    thread: thread.clone(),
                    epoch: position.epoch,
                })??;
                *position = after;
                Ok(batch)
            }
        }
    }

    /// What a checkpoint records of the data position: the shard stream's
    /// (nothing for a COCO-format split, whose position is the iteration's).
    pub fn position(&self) -> Option<StreamPosition> {
        match self {
            Self::Coco(_) => None,
            Self::Shards { position, .. } => Some(*position),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use virtex_data::augment::TrainAugmentation;
    use virtex_data::shards::write_shards;

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The emoji val split with a pipeline that panics on every sample (a
    /// flip probability above 1).
    fn panicking() -> (CocoCaptions, SamplePipeline) {
        let dataset = CocoCaptions::load(&root().join("data/emoji"), "val").unwrap();
        let tokenizer = SentencePieceTokenizer::from_file(
            root().join("data/fixtures/tokenizer/emoji_bpe.model"),
        )
        .unwrap();
        let augment = TrainAugmentation {
            flip_probability: 2.0,
            ..TrainAugmentation::new(16)
        };
        let pipeline = SamplePipeline::new(Arc::new(tokenizer), Preprocessing::Train(augment));
        (dataset, pipeline)
    }

    /// `next` is the loader thread's panic, then that the thread has ended.
    fn stops_with_the_panic(mut batches: Batches, thread: &str, epoch: u64) {
        let err = batches.next().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the {thread} thread panicked: p=2.0 is outside range [0.0, 1.0]")
        );
        let err = batches.next().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the {thread} thread ended without finishing epoch {epoch}")
        );
    }

    #[test]
    fn a_panicking_loader_thread_is_an_error_and_the_end_of_the_batches() {
        let (dataset, pipeline) = panicking();
        let loader =
            PretrainingLoader::with_pipeline(Arc::new(dataset.clone()), pipeline.clone(), 8, 0);
        // An iteration inside epoch 2.
        let iteration = 2 * loader.batches_per_epoch() as u64 + 5;
        let source = TrainSource::Coco(loader);
        let batches = Batches::starting_at(&source, iteration, StreamPosition::START, 2);
        stops_with_the_panic(batches, "COCO loader, epoch 2", 2);

        let dir = std::env::temp_dir().join(format!("virtex-train-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let written = write_shards(&dataset, &dir, "val", 200, 0).unwrap();
        let stream = ShardStream::new(written.shards, pipeline, 8, 0).unwrap();
        let source = TrainSource::Shards(stream);
        let position = StreamPosition {
            epoch: 4,
            offset: 16,
        };
        let batches = Batches::starting_at(&source, 0, position, 2);
        stops_with_the_panic(batches, "shard stream, rank 0", 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
