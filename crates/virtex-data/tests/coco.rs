//! Indexing COCO-format captions: the bundled emoji dataset, and malformed files.

use std::path::{Path, PathBuf};

use virtex_data::coco::{CocoCaptions, CocoError};

fn emoji_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/emoji")
}

/// A scratch dataset: one real image and the given annotation text.
fn scratch(name: &str, annotations: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("virtex-coco-{name}-{}", std::process::id()));
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    std::fs::create_dir_all(root.join("val2017")).unwrap();
    let source = CocoCaptions::load(&emoji_root(), "val").unwrap().images[0]
        .path
        .clone();
    std::fs::copy(source, root.join("val2017/a.jpg")).unwrap();
    std::fs::write(root.join("annotations/captions_val2017.json"), annotations).unwrap();
    root
}

#[test]
fn the_bundled_emoji_dataset_indexes() {
    // (split, images, captions), as docs/data.md lists them.
    let expected = [
        ("train", 3415, 11818),
        ("val", 170, 607),
        ("test", 201, 730),
    ];
    let mut ids = std::collections::BTreeSet::new();
    for (split, images, captions) in expected {
        let dataset = CocoCaptions::load(&emoji_root(), split).unwrap();
        assert_eq!(dataset.images.len(), images, "{split}");
        assert_eq!(
            dataset
                .images
                .iter()
                .map(|i| i.captions.len())
                .sum::<usize>(),
            captions,
            "{split}"
        );
        assert!(dataset.images.windows(2).all(|w| w[0].id < w[1].id));
        assert!(dataset.images.iter().all(|i| i.captions.len() >= 3));
        for image in &dataset.images {
            assert!(
                ids.insert(image.id),
                "{split}: image id {} repeats",
                image.id
            );
        }
    }
    // Ids are 1-based positions in sort_order order across the three splits.
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        (1..=3786).collect::<Vec<u64>>()
    );
}

/// Whether an error is the expected kind.
type IsExpected = fn(&CocoError) -> bool;

#[test]
fn bad_annotation_files_are_named_with_the_problem() {
    let image = r#"{"id": 7, "file_name": "a.jpg"}"#;
    let cases: [(&str, String, IsExpected); 4] = [
        ("truncated", format!(r#"{{"images": [{image}], "annotations": [{{"id": 1, "#), |e| {
            matches!(e, CocoError::Json { .. })
        }),
        (
            "unknown",
            format!(r#"{{"images": [{image}], "annotations": [{{"id": 1, "image_id": 8, "caption": "a"}}]}}"#),
            |e| matches!(e, CocoError::UnknownImage { image_id: 8, .. }),
        ),
        (
            "empty",
            format!(r#"{{"images": [{image}], "annotations": [{{"id": 3, "image_id": 7, "caption": "  "}}]}}"#),
            |e| matches!(e, CocoError::EmptyCaption { annotation_id: 3, .. }),
        ),
        (
            "missing",
            r#"{"images": [{"id": 9, "file_name": "b.jpg"}], "annotations": [{"id": 1, "image_id": 9, "caption": "a"}]}"#.to_string(),
            |e| matches!(e, CocoError::MissingImage { image_id: 9, .. }),
        ),
    ];
    for (name, text, expected) in cases {
        let root = scratch(name, &text);
        let err = CocoCaptions::load(&root, "val").unwrap_err();
        assert!(expected(&err), "{name}: {err}");
        assert!(
            err.to_string().contains("captions_val2017.json"),
            "{name}: {err}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
    let err = CocoCaptions::load(&std::env::temp_dir().join("no-such-dataset"), "val").unwrap_err();
    assert!(matches!(err, CocoError::Read { .. }), "{err}");
}

#[test]
fn every_bundled_image_decodes_at_64_px() {
    for split in ["train", "val", "test"] {
        for image in CocoCaptions::load(&emoji_root(), split).unwrap().images {
            let rgb = virtex_data::images::load_rgb(&image.path).unwrap();
            assert_eq!(rgb.dimensions(), (64, 64), "{}", image.path.display());
        }
    }
}

#[test]
fn an_instance_of_an_unlisted_category_is_named() {
    let root = scratch("instances", r#"{"images": [], "annotations": []}"#);
    let path = root.join("annotations/instances_val2017.json");
    std::fs::write(
        &path,
        r#"{"images": [{"id": 1, "file_name": "a.jpg"}],
            "categories": [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 5},
                            {"id": 8, "image_id": 1, "category_id": 5},
                            {"id": 9, "image_id": 1, "category_id": 2}]}"#,
    )
    .unwrap();
    let instances = virtex_data::instances::CocoInstances::load(&root, "val").unwrap();
    assert_eq!(
        instances.labels[&1],
        [1, 2],
        "ids remapped in order, once each"
    );
    std::fs::write(
        &path,
        r#"{"categories": [{"id": 5, "name": "dog"}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 6}]}"#,
    )
    .unwrap();
    let err = virtex_data::instances::CocoInstances::load(&root, "val").unwrap_err();
    assert!(
        matches!(
            err,
            CocoError::UnknownCategory {
                category_id: 6,
                annotation_id: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("instances_val2017.json"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}
