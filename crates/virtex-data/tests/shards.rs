//! WebDataset shards written from the bundled emoji dataset and streamed
//! back: every sample once per epoch across ranks, exact resume, bad pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtex_data::batch::PretrainingBatch;
use virtex_data::coco::CocoCaptions;
use virtex_data::images::BadImagePolicy;
use virtex_data::pipeline::{Preprocessing, SamplePipeline};
use virtex_data::shards::{
    ShardStream, StreamPosition, expand_shard_pattern, index_shard, write_shards,
};
use virtex_data::tokenizer::SentencePieceTokenizer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-shards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn pipeline() -> SamplePipeline {
    let tokenizer =
        SentencePieceTokenizer::from_file(root().join("data/fixtures/tokenizer/emoji_bpe.model"))
            .unwrap();
    SamplePipeline::new(Arc::new(tokenizer), Preprocessing::Eval { size: 16 })
}

fn emoji_val() -> CocoCaptions {
    CocoCaptions::load(&root().join("data/emoji"), "val").unwrap()
}

/// The first `count` batches from `position`.
fn take(
    stream: &ShardStream,
    position: StreamPosition,
    count: usize,
) -> Vec<(PretrainingBatch, StreamPosition)> {
    stream
        .batches_from(position, 2)
        .iter()
        .take(count)
        .map(Result::unwrap)
        .collect()
}

#[test]
fn written_shards_hold_every_image_with_all_its_captions() {
    let dataset = emoji_val();
    let dir = scratch("write");
    let written = write_shards(&dataset, &dir, "val", 50, 0).unwrap();
    assert_eq!(written.samples, 170);
    assert_eq!(written.shards.len(), 4, "ceil(170 / 50)");
    assert_eq!(
        expand_shard_pattern(&written.pattern).unwrap(),
        written.shards
    );
    let mut seen = BTreeMap::new();
    for shard in &written.shards {
        let index = index_shard(shard).unwrap();
        assert!(index.bad.is_empty());
        for sample in index.samples {
            assert_eq!(sample.key, format!("{:012}", sample.id));
            assert!(seen.insert(sample.id, sample.captions).is_none());
        }
    }
    assert_eq!(seen.len(), 170);
    for image in &dataset.images {
        assert_eq!(seen[&image.id], image.captions);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn one_epoch_across_ranks_sees_every_sample_once() {
    let dir = scratch("ranks");
    let written = write_shards(&emoji_val(), &dir, "val", 40, 0).unwrap();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for rank in 0..3 {
        let stream = ShardStream::new(written.shards.clone(), pipeline(), 1, 7)
            .unwrap()
            .for_rank(rank, 3)
            .unwrap()
            .with_shuffle_buffer(64);
        for batch in stream.batches_from(StreamPosition::START, 4) {
            let (batch, position) = batch.unwrap();
            if position.epoch > 0 {
                break;
            }
            *seen.entry(batch.image_ids[0]).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 170);
    assert!(seen.values().all(|&n| n == 1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_resumed_stream_continues_exactly_across_an_epoch_boundary() {
    let dir = scratch("resume");
    let mut dataset = emoji_val();
    dataset.images.truncate(44);
    let written = write_shards(&dataset, &dir, "val", 11, 0).unwrap();
    let stream = ShardStream::new(written.shards, pipeline(), 8, 3)
        .unwrap()
        .with_shuffle_buffer(16);
    // 44 samples: batch 5 straddles epochs 0 and 1.
    let straight = take(&stream, StreamPosition::START, 8);
    assert_eq!(
        straight[4].1,
        StreamPosition {
            epoch: 0,
            offset: 40
        }
    );
    assert_eq!(
        straight[5].1,
        StreamPosition {
            epoch: 1,
            offset: 4
        }
    );
    let resumed = take(&stream, straight[3].1, 4);
    assert_eq!(resumed, straight[4..8]);
    // Epoch 0 is the first 44 samples: each image once.
    let mut epoch0: Vec<u64> = straight[..6]
        .iter()
        .flat_map(|(batch, _)| batch.image_ids.clone())
        .take(44)
        .collect();
    epoch0.sort();
    let mut all: Vec<u64> = dataset.images.iter().map(|i| i.id).collect();
    all.sort();
    assert_eq!(epoch0, all);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A shard holding one good sample and one of each kind of bad one.
fn shard_with_bad_pairs(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("mixed-0.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, bytes).unwrap();
    };
    let good = std::fs::read(root().join("data/fixtures/images/rgb.jpg")).unwrap();
    let truncated = std::fs::read(root().join("data/fixtures/images/truncated.jpg")).unwrap();
    add("good.jpg", &good);
    add("good.txt", b"a red square\n");
    add("lonely.jpg", &good);
    add("orphan.txt", b"a caption without its image");
    add("blank.jpg", &good);
    add("blank.json", br#"{"caption": "  "}"#);
    add("cut.jpg", &truncated);
    add("cut.txt", b"half a photo");
    builder.finish().unwrap();
    path
}

#[test]
fn bad_pairs_follow_the_bad_image_policy() {
    let dir = scratch("bad");
    let shard = shard_with_bad_pairs(&dir);
    let index = index_shard(&shard).unwrap();
    assert_eq!(index.samples.len(), 2, "good and cut");
    let reasons: Vec<(String, String)> = index
        .bad
        .iter()
        .map(|b| (b.key.clone(), b.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "lonely".into(),
                "an image without its caption (.txt or .json)".into()
            ),
            ("orphan".into(), "a caption without its image".into()),
            ("blank".into(), "empty caption".into()),
        ]
    );

    let strict = ShardStream::new(vec![shard.clone()], pipeline(), 1, 0).unwrap();
    let err = strict
        .batches_from(StreamPosition::START, 1)
        .recv()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mixed-0.tar") && err.contains("lonely"),
        "{err}"
    );

    let lenient = ShardStream::new(
        vec![shard],
        pipeline().with_bad_image_policy(BadImagePolicy::Skip),
        2,
        0,
    )
    .unwrap();
    let (batch, _) = lenient
        .batches_from(StreamPosition::START, 1)
        .recv()
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1, "the truncated JPEG is skipped when decoded");
    assert_eq!(batch.forward.len(), batch.max_len);
    // The three bad pairs and the truncated JPEG, once per epoch read (the
    // stream runs ahead of this reader, so maybe more than one epoch).
    assert!(lenient.pipeline().skipped() >= 4);
    // Each listed once, by its place in the shard.
    let listed: Vec<String> = lenient
        .pipeline()
        .skipped_images()
        .iter()
        .map(|err| err.path.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "mixed-0.tar/blank",
            "mixed-0.tar/cut.jpg",
            "mixed-0.tar/lonely",
            "mixed-0.tar/orphan"
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn too_few_shards_for_the_ranks_is_an_error() {
    let dir = scratch("few");
    let mut dataset = emoji_val();
    dataset.images.truncate(6);
    let written = write_shards(&dataset, &dir, "val", 3, 0).unwrap();
    let err = ShardStream::new(written.shards, pipeline(), 2, 0)
        .unwrap()
        .for_rank(0, 4)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "2 shards cannot be dealt to 4 ranks: every rank needs at least one"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_shard_cut_inside_an_image_is_noticed() {
    let dir = scratch("cut-image");
    let mut dataset = emoji_val();
    dataset.images.truncate(4);
    let written = write_shards(&dataset, &dir, "val", 4, 0).unwrap();
    let shard = &written.shards[0];
    let whole = index_shard(shard).unwrap();
    assert_eq!((whole.samples.len(), whole.corrupt), (4, None));
    // Cut in the middle of the second sample's JPEG, which the index seeks over.
    let image = &whole.samples[1].image;
    let bytes = std::fs::read(shard).unwrap();
    std::fs::write(shard, &bytes[..(image.offset + image.len / 2) as usize]).unwrap();
    let index = index_shard(shard).unwrap();
    assert_eq!(index.samples, whole.samples[..1]);
    assert!(index.bad.is_empty(), "{:?}", index.bad);
    let corrupt = index.corrupt.expect("the cut is noticed");
    assert!(
        corrupt.starts_with("corrupt tar archive") && corrupt.contains(&image.name),
        "{corrupt}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_shard_cut_short_keeps_what_precedes_the_cut() {
    let dir = scratch("cut");
    let mut dataset = emoji_val();
    dataset.images.truncate(40);
    let written = write_shards(&dataset, &dir, "val", 20, 0).unwrap();
    // An interrupted copy: the first shard loses the second half of its bytes.
    let first = &written.shards[0];
    let bytes = std::fs::read(first).unwrap();
    std::fs::write(first, &bytes[..bytes.len() / 2 + 100]).unwrap();
    let index = index_shard(first).unwrap();
    assert!(
        (5..20).contains(&index.samples.len()),
        "{} samples before the cut",
        index.samples.len()
    );
    let corrupt = index.corrupt.expect("the cut is noticed");
    assert!(corrupt.starts_with("corrupt tar archive"), "{corrupt}");

    let strict = ShardStream::new(written.shards.clone(), pipeline(), 4, 0)
        .unwrap()
        .with_shuffle_buffer(1);
    let err = strict
        .batches_from(StreamPosition::START, 1)
        .iter()
        .find_map(Result::err)
        .unwrap()
        .to_string();
    assert!(
        err.contains("val-000000.tar") && err.contains("corrupt"),
        "{err}"
    );

    let lenient = ShardStream::new(
        written.shards,
        pipeline().with_bad_image_policy(BadImagePolicy::Skip),
        1,
        0,
    )
    .unwrap();
    let mut seen = 0;
    for batch in lenient.batches_from(StreamPosition::START, 1) {
        let (batch, position) = batch.unwrap();
        if position.epoch > 0 {
            break;
        }
        seen += batch.len();
    }
    assert!((25..40).contains(&seen), "{seen} images in the first epoch");
    std::fs::remove_dir_all(dir).unwrap();
}
