//! The pretraining loader on the bundled emoji dataset, for each task view.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtex_data::augment::TrainAugmentation;
use virtex_data::batch::{LoaderError, rank_share};
use virtex_data::coco::CocoCaptions;
use virtex_data::images::BadImagePolicy;
use virtex_data::instances::CocoInstances;
use virtex_data::loader::PretrainingLoader;
use virtex_data::pipeline::{Preprocessing, SamplePipeline};
use virtex_data::tasks::{MaskedLmConfig, TaskTargets, TaskView, token_bag};
use virtex_data::tokenizer::SentencePieceTokenizer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> Arc<SentencePieceTokenizer> {
    Arc::new(
        SentencePieceTokenizer::from_file(root().join("data/fixtures/tokenizer/emoji_bpe.model"))
            .unwrap(),
    )
}

/// Captioning samples with the training augmentation at 32².
fn pipeline() -> SamplePipeline {
    SamplePipeline::new(
        tokenizer(),
        Preprocessing::Train(TrainAugmentation::new(32)),
    )
}

fn loader_with(dataset: CocoCaptions, pipeline: SamplePipeline, batch: usize) -> PretrainingLoader {
    PretrainingLoader::with_pipeline(Arc::new(dataset), pipeline, batch, 42)
}

fn loader(dataset: CocoCaptions, batch: usize) -> PretrainingLoader {
    loader_with(dataset, pipeline(), batch)
}

fn emoji_val() -> CocoCaptions {
    CocoCaptions::load(&root().join("data/emoji"), "val").unwrap()
}

#[test]
fn batches_have_images_tokens_and_lengths() {
    let loader = loader(emoji_val(), 8);
    assert_eq!(loader.batches_per_epoch(), 170 / 8);
    let batch = loader.batch(0, 0).unwrap();
    assert_eq!(batch.len(), 8);
    assert_eq!(batch.images.len(), 8 * 3 * 32 * 32);
    for (row, &length) in batch.lengths.iter().enumerate() {
        let forward = &batch.forward[row * batch.max_len..][..length];
        let backward = &batch.backward[row * batch.max_len..][..length];
        assert_eq!(forward[0], 1, "[SOS] first");
        assert_eq!(forward.iter().rev().copied().collect::<Vec<_>>(), backward);
        assert!(
            batch.forward[row * batch.max_len + length..(row + 1) * batch.max_len]
                .iter()
                .all(|&t| t == 0)
        );
    }
    assert!(batch.images.iter().all(|v| v.is_finite()));
}

#[test]
fn a_batch_of_chosen_images_holds_them_in_the_order_given() {
    let loader = loader(emoji_val(), 8);
    let positions = [30, 2, 17];
    let batch = loader.batch_of(0, &positions).unwrap();
    let ids: Vec<u64> = positions
        .iter()
        .map(|&p| loader.dataset().images[p].id)
        .collect();
    assert_eq!(batch.image_ids, ids);
    assert_eq!(batch.images.len(), 3 * 3 * 32 * 32);
}

#[test]
fn batches_do_not_depend_on_the_thread_count() {
    let loader = loader(emoji_val(), 6);
    let on = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| loader.batch(3, 2).unwrap())
    };
    assert_eq!(on(1), on(2));
    assert_ne!(
        loader.batch(3, 2).unwrap(),
        loader.batch(4, 2).unwrap(),
        "epochs reshuffle"
    );
}

#[test]
fn the_prefetching_epoch_yields_every_batch_in_order() {
    let loader = loader(emoji_val(), 32);
    let batches: Vec<_> = loader.epoch(1, 2).into_iter().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 170 / 32);
    assert_eq!(batches[3], loader.batch(1, 3).unwrap());
}

#[test]
fn batches_from_an_iteration_continue_into_the_next_epochs() {
    let loader = loader(emoji_val(), 32);
    let per_epoch = loader.batches_per_epoch() as u64;
    assert_eq!(per_epoch, 5);
    // Resume at the last batch of epoch 1: then all of epoch 2.
    let mut batches = loader.batches_from(2 * per_epoch - 1, 2);
    assert_eq!(batches.epoch(), 1);
    assert_eq!(batches.recv().unwrap(), loader.batch(1, 4).unwrap());
    assert_eq!(batches.recv().unwrap(), loader.batch(2, 0).unwrap());
    assert_eq!(batches.epoch(), 2);
    let rest: Vec<_> = batches.take(4).map(Result::unwrap).collect();
    assert_eq!(rest[3], loader.batch(2, 4).unwrap());
}

#[test]
fn ranks_share_each_global_batch_in_rank_order() {
    assert_eq!(rank_share(12, 2, 3).unwrap(), 4);
    for (batch_size, rank, world) in [(12, 0, 5), (12, 3, 3), (12, 0, 0)] {
        match rank_share(batch_size, rank, world) {
            Err(LoaderError::RankShare { .. }) => {}
            other => panic!("({batch_size}, {rank}, {world}): expected RankShare, got {other:?}"),
        }
    }
    let whole = loader(emoji_val(), 6).batch(1, 2).unwrap();
    let mut ids = Vec::new();
    for rank in 0..3 {
        let part = loader(emoji_val(), 6)
            .for_rank(rank, 3)
            .unwrap()
            .batch(1, 2)
            .unwrap();
        assert_eq!(part.len(), 2);
        ids.extend(part.image_ids);
    }
    assert_eq!(ids, whole.image_ids);
    assert!(loader(emoji_val(), 6).for_rank(0, 4).is_err());
}

#[test]
fn a_corrupt_image_is_an_error_or_skipped_by_policy() {
    let mut dataset = emoji_val();
    dataset.images.truncate(4);
    dataset.images[1].path = root().join("data/fixtures/images/truncated.jpg");
    let strict = loader(dataset.clone(), 4);
    match strict.batch(0, 0).unwrap_err() {
        LoaderError::Image(err) => assert!(err.to_string().contains("truncated.jpg"), "{err}"),
        other => panic!("expected an image error, got {other}"),
    }
    let lenient = loader_with(
        dataset,
        pipeline().with_bad_image_policy(BadImagePolicy::Skip),
        4,
    );
    let batch = lenient.batch(0, 0).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(lenient.skipped(), 1);
    // Drawn again, it counts again, and is listed once.
    lenient.batch(0, 0).unwrap();
    assert_eq!(lenient.skipped(), 2);
    let listed = lenient.skipped_images();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].to_string(),
        format!(
            "{}: truncated JPEG (no end-of-image marker)",
            root().join("data/fixtures/images/truncated.jpg").display()
        )
    );
}

#[test]
fn evaluation_preprocessing_is_not_random() {
    let tokenizer = tokenizer();
    let mut dataset = emoji_val();
    dataset.images.truncate(2);
    let dataset = Arc::new(dataset);
    let eval = |seed| {
        let pipeline = SamplePipeline::new(tokenizer.clone(), Preprocessing::Eval { size: 48 });
        let loader = PretrainingLoader::with_pipeline(dataset.clone(), pipeline, 2, seed);
        let batch = loader.batch(0, 0).unwrap();
        let pixels = 3 * 48 * 48;
        let mut by_id: Vec<(u64, Vec<f32>)> = batch
            .image_ids
            .iter()
            .zip(batch.images.chunks(pixels))
            .map(|(&id, image)| (id, image.to_vec()))
            .collect();
        by_id.sort_by_key(|(id, _)| *id);
        by_id
    };
    assert_eq!(eval(1), eval(2));
}

#[test]
fn token_classification_targets_are_each_captions_word_ids() {
    let loader = loader_with(
        emoji_val(),
        pipeline().with_task(TaskView::TokenClassification),
        8,
    );
    let batch = loader.batch(0, 1).unwrap();
    let TaskTargets::Labels { labels, width } = &batch.targets else {
        panic!("expected labels, got {:?}", batch.targets);
    };
    for (row, &length) in batch.lengths.iter().enumerate() {
        let bag = token_bag(&batch.forward[row * batch.max_len..][..length]);
        assert!(!bag.is_empty());
        assert_eq!(&labels[row * width..][..bag.len()], bag.as_slice());
        assert!(
            labels[row * width + bag.len()..(row + 1) * width]
                .iter()
                .all(|&l| l == 0)
        );
    }
}

#[test]
fn multilabel_targets_come_from_instances_and_skip_unlabelled_images() {
    let emoji = root().join("data/emoji");
    let mut instances = CocoInstances::load(&emoji, "val").unwrap();
    assert_eq!(instances.num_categories, 99);
    assert_eq!(instances.labels.len(), 170);
    // Drop every other image's instances: the epoch must leave those out.
    let unlabelled: Vec<u64> = instances.labels.keys().copied().step_by(2).collect();
    for id in &unlabelled {
        instances.labels.remove(id);
    }
    let expected = instances.clone();
    let task = TaskView::MultilabelClassification(Arc::new(instances));
    let loader = loader_with(emoji_val(), pipeline().with_task(task), 5);
    assert_eq!(loader.len(), 170 - unlabelled.len());
    let mut seen = 0;
    for batch in loader.epoch(0, 2) {
        let batch = batch.unwrap();
        let TaskTargets::Labels { labels, width } = &batch.targets else {
            panic!("expected labels");
        };
        for (row, id) in batch.image_ids.iter().enumerate() {
            let want = &expected.labels[id];
            assert_eq!(&labels[row * width..][..want.len()], want.as_slice());
            assert!(want.iter().all(|&c| (1..=99).contains(&c)));
            seen += 1;
        }
    }
    assert_eq!(seen, loader.batches_per_epoch() * 5);
}

#[test]
fn masked_lm_targets_label_only_masked_positions_deterministically() {
    let task = TaskView::MaskedLm {
        config: MaskedLmConfig::default(),
        mask_id: 3,
        vocab_size: tokenizer().vocab_size() as u32,
    };
    let loader = loader_with(emoji_val(), pipeline().with_task(task), 16);
    let batch = loader.batch(2, 0).unwrap();
    assert_eq!(batch, loader.batch(2, 0).unwrap());
    let TaskTargets::MaskedLm { tokens, labels } = &batch.targets else {
        panic!("expected masked-LM targets");
    };
    assert_eq!(tokens.len(), batch.forward.len());
    let mut predicted = 0;
    for ((&token, &label), &original) in tokens.iter().zip(labels).zip(&batch.forward) {
        if label != 0 {
            assert_eq!((token, label), (3, original));
            predicted += 1;
        }
    }
    assert!(
        predicted >= 16,
        "every caption has at least one masked word"
    );
}
