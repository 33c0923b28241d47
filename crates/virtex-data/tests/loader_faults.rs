//! A loader thread that panics ends the stream with an error naming the
//! panic, at the first batch or mid-epoch, and no further batch (of this
//! epoch or a next one) follows. The panics come from real inputs the
//! pipeline does not guard against: a flip probability above 1 (rand's
//! `random_bool` panics on every sample) and a masked-LM vocabulary of 0
//! (drawing a random replacement id from `0..0` panics, only for captions
//! with at least two words).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtex_data::augment::TrainAugmentation;
use virtex_data::batch::LoaderError;
use virtex_data::coco::CocoCaptions;
use virtex_data::loader::PretrainingLoader;
use virtex_data::pipeline::{Preprocessing, SamplePipeline};
use virtex_data::shards::{ShardStream, StreamPosition, write_shards};
use virtex_data::tasks::{MaskedLmConfig, TaskView};
use virtex_data::tokenizer::SentencePieceTokenizer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn emoji_val() -> CocoCaptions {
    CocoCaptions::load(&root().join("data/emoji"), "val").unwrap()
}

fn pipeline(augment: TrainAugmentation) -> SamplePipeline {
    let tokenizer =
        SentencePieceTokenizer::from_file(root().join("data/fixtures/tokenizer/emoji_bpe.model"))
            .unwrap();
    SamplePipeline::new(Arc::new(tokenizer), Preprocessing::Train(augment))
}

/// Panics on every sample: `random_bool(2.0)`.
fn panicking_flip() -> SamplePipeline {
    pipeline(TrainAugmentation {
        flip_probability: 2.0,
        ..TrainAugmentation::new(16)
    })
}

/// Whether `err` is the panic of thread `thread` and its message has `said`.
fn is_panic(err: &LoaderError, thread: &str, said: &str) -> bool {
    matches!(err, LoaderError::Panicked { thread: t, message } if t == thread && message.contains(said))
}

#[test]
fn a_loader_that_panics_at_each_first_batch_stops_the_stream() {
    let loader = PretrainingLoader::with_pipeline(Arc::new(emoji_val()), panicking_flip(), 8, 7);
    let per_epoch = loader.batches_per_epoch() as u64;
    // From the start, and resuming mid-epoch 3.
    for (iteration, epoch) in [(0, 0), (3 * per_epoch + 5, 3)] {
        let mut batches = loader.batches_from(iteration, 2);
        let thread = format!("COCO loader, epoch {epoch}");
        let err = batches.recv().unwrap_err();
        assert!(is_panic(&err, &thread, "outside range"), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("the {thread} thread panicked: p=2.0 is outside range [0.0, 1.0]")
        );
        // Not the next epoch's first batch (which panics too): the stream
        // stays ended, and says so.
        for _ in 0..2 {
            let err = batches.recv().unwrap_err();
            assert!(
                matches!(&err, LoaderError::Ended { thread: t, epoch: e } if *t == thread && *e == epoch),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("the {thread} thread ended without finishing epoch {epoch}")
            );
        }
        assert_eq!(batches.epoch(), epoch);
    }
    // The one-epoch stream ends after the panic.
    let items: Vec<_> = loader.epoch(1, 2).into_iter().collect();
    assert!(
        matches!(&items[..], [Err(err)] if is_panic(err, "COCO loader, epoch 1", "outside range")),
        "{items:?}"
    );
}

#[test]
fn a_loader_that_panics_mid_epoch_stops_there_without_a_new_epoch() {
    const BATCH: usize = 4;
    let dataset = emoji_val();
    // The epoch's order depends on the seed and the images alone, so a
    // well-behaved loader tells which image the third batch holds.
    let order: Vec<u64> = {
        let clean = PretrainingLoader::with_pipeline(
            Arc::new(dataset.clone()),
            pipeline(TrainAugmentation::new(16)),
            BATCH,
            7,
        );
        (0..3)
            .flat_map(|b| clean.batch(0, b).unwrap().image_ids)
            .collect()
    };
    let fatal = order[2 * BATCH + 1];
    // Captions without words are never masked; the fatal image's is, and
    // its random replacement id is drawn from 0..0.
    let mut dataset = dataset;
    for image in &mut dataset.images {
        image.captions = match image.id == fatal {
            true => vec!["a dog surfing a big wave".into()],
            false => vec![String::new()],
        };
    }
    let task = TaskView::MaskedLm {
        config: MaskedLmConfig {
            mask_proportion: 1.0,
            mask_probability: 0.0,
            replace_probability: 1.0,
        },
        mask_id: 3,
        vocab_size: 0,
    };
    let faulty = pipeline(TrainAugmentation::new(16)).with_task(task);
    let loader = PretrainingLoader::with_pipeline(Arc::new(dataset), faulty, BATCH, 7);

    let mut batches = loader.batches_from(0, 1);
    for b in 0..2 {
        let batch = batches.recv().unwrap();
        assert_eq!(batch.image_ids, order[b * BATCH..(b + 1) * BATCH]);
    }
    let err = batches.recv().unwrap_err();
    assert!(
        is_panic(&err, "COCO loader, epoch 0", "empty range"),
        "{err:?}"
    );
    // The rest of epoch 0 is not skipped for epoch 1: nothing follows.
    let err = batches.recv().unwrap_err();
    assert!(
        matches!(err, LoaderError::Ended { epoch: 0, .. }),
        "{err:?}"
    );
    assert_eq!(batches.epoch(), 0);
}

#[test]
fn a_shard_stream_that_panics_sends_the_panic_and_ends() {
    let dir = std::env::temp_dir().join(format!("virtex-loader-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let written = write_shards(&emoji_val(), &dir, "val", 100, 0).unwrap();
    let stream = ShardStream::new(written.shards, panicking_flip(), 8, 0)
        .unwrap()
        .for_rank(1, 2)
        .unwrap();
    assert_eq!(stream.thread(), "shard stream, rank 1");
    let items: Vec<_> = stream
        .batches_from(StreamPosition::START, 2)
        .iter()
        .collect();
    assert!(
        matches!(&items[..], [Err(err)] if is_panic(err, "shard stream, rank 1", "outside range")),
        "{items:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
