//! The evaluation pipelines end to end on real images: a freshly trained
//! checkpoint captions a COCO split and a folder (with attention maps), gives
//! its backbone to feature extraction and to the backbone export (Detectron2
//! names, and torchvision names read back as the same backbone); captions are
//! scored against the emoji references; VOC07 SVMs run on a small devkit.

use std::path::{Path, PathBuf};

use serde_json::json;
use virtex_data::coco::{CaptionResult, CocoCaptions, ImageRef, read_references};
use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS, image_files};
use virtex_eval::caption_metrics::{pair_with_references, score_captions};
use virtex_eval::captioning::{CaptionTask, ImageSet};
use virtex_eval::features::{Extraction, FeatureTask};
use virtex_eval::run_captions::RunCaptioning;
use virtex_eval::voc07::Voc07Task;
use virtex_train::config::{Config, DecoderName};
use virtex_train::device::{BackendTask, CpuBackend};
use virtex_train::source::WeightsSource;
use virtex_train::trainer::{CONTACT_SHEET, Pretraining, SHEET_IMAGES, sheet_sample};
use virtex_vision::ResNetArch;
use virtex_vision::pytorch::ExportNaming;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_trained_checkpoint_captions_images_and_exports_its_backbone() {
    let root = root();
    let output = scratch("caption");
    let sets: Vec<String> = vec![
        format!("DATA.ROOT={}", root.join("data/emoji").display()),
        format!(
            "DATA.TOKENIZER_MODEL={}",
            root.join("data/vocab/emoji_1k.model").display()
        ),
        "OPTIM.NUM_ITERATIONS=2".into(),
        "TRAIN.VALIDATE_EVERY=0".into(),
    ];
    let config = Config::load(
        Some(&root.join("data/configs/tests/emoji_tiny.yaml")),
        &sets,
    )
    .unwrap();
    Pretraining {
        config,
        output: output.clone(),
        resume: false,
        init_from: None,
        world: None,
        precision: virtex_vision::Precision::F32,
    }
    .run::<CpuBackend>(Default::default())
    .unwrap();

    // A three-image COCO split and a three-image directory.
    let split = output.join("annotations/captions_tiny2017.json");
    std::fs::create_dir_all(split.parent().unwrap()).unwrap();
    std::fs::create_dir_all(output.join("tiny2017")).unwrap();
    let val = CocoCaptions::load(&root.join("data/emoji"), "val").unwrap();
    let mut listed = Vec::new();
    for image in &val.images[..3] {
        let name = image
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        std::fs::copy(&image.path, output.join("tiny2017").join(&name)).unwrap();
        listed.push(json!({"id": image.id, "file_name": name}));
    }
    let annotations: Vec<_> = listed
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"id": i + 1, "image_id": image["id"], "caption": "an emoji"}))
        .collect();
    std::fs::write(
        &split,
        json!({"images": listed, "annotations": annotations}).to_string(),
    )
    .unwrap();

    let checkpoint = WeightsSource::Native(output.join("checkpoint_2.safetensors"));
    let task = |images: ImageSet, decoder| CaptionTask {
        source: checkpoint.clone(),
        config: Config::default(),
        tokenizer: None,
        decoder: Some(decoder),
        beam_prefix: None,
        prior_penalty: None,
        backward_weight: None,
        images,
        batch: 2,
        attention_dir: None,
        on_bad_image: BadImagePolicy::Error,
        max_image_pixels: DEFAULT_MAX_PIXELS,
    };
    let coco = task(
        ImageSet::from_path(&split, None).unwrap(),
        DecoderName::BeamSearch,
    )
    .run::<CpuBackend>(Default::default())
    .unwrap()
    .results;
    // A prior penalty or backward weight out of range is refused, naming
    // the key and the value.
    let refused = CaptionTask {
        prior_penalty: Some(-1.0),
        ..task(
            ImageSet::from_path(&split, None).unwrap(),
            DecoderName::Greedy,
        )
    }
    .run::<CpuBackend>(Default::default())
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("MODEL.DECODER.PRIOR_PENALTY") && refused.contains("got -1"),
        "{refused}"
    );
    let refused = CaptionTask {
        backward_weight: Some(f64::NAN),
        ..task(
            ImageSet::from_path(&split, None).unwrap(),
            DecoderName::BeamSearch,
        )
    }
    .run::<CpuBackend>(Default::default())
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("MODEL.DECODER.BACKWARD_WEIGHT") && refused.contains("got NaN"),
        "{refused}"
    );
    let ids: Vec<u64> = coco
        .iter()
        .map(|c| match c.image {
            ImageRef::Id { image_id } => image_id,
            ImageRef::File { .. } => panic!("a COCO split names images by id"),
        })
        .collect();
    assert_eq!(
        ids,
        val.images[..3].iter().map(|i| i.id).collect::<Vec<_>>()
    );

    // The run's captions of the whole split, scored, and its contact sheet:
    // the seeded sample of the split, each caption marked, the figures on top.
    let report = RunCaptioning {
        checkpoint: output.join("checkpoint_2.safetensors"),
        split: "val".into(),
    }
    .run::<CpuBackend>(Default::default())
    .unwrap();
    assert_eq!((report.split.as_str(), report.iteration), ("val", 2));
    assert_eq!(report.figures.images, val.images.len());
    assert!(report.figures.subcategory_right.is_some());
    let all = virtex_data::coco::read_results(&report.captions).unwrap();
    assert_eq!(all.len(), val.images.len());
    assert_eq!(report.sheet, output.join(CONTACT_SHEET));
    let sheet = std::fs::read_to_string(&report.sheet).unwrap();
    assert_eq!(sheet.matches("<img ").count(), SHEET_IMAGES);
    const { assert!(SHEET_IMAGES >= 24) };
    assert_eq!(sheet.matches("class=\"mark ").count(), SHEET_IMAGES);
    for (name, value) in report.figures.header("val") {
        assert!(sheet.contains(&format!("<th>{name}</th>")), "{name}");
        assert!(!value.is_empty());
    }
    let header_end = sheet.find("<img ").unwrap();
    for figure in ["CIDEr-D", "top caption", "subcategory right"] {
        assert!(sheet[..header_end].contains(figure), "{figure} at the top");
    }
    let first_sheet_image = val.images[sheet_sample(val.images.len(), 0)[0]]
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        sheet.contains(&format!("alt=\"{first_sheet_image}\"")),
        "the seeded sample's images"
    );

    let attention = output.join("attention");
    let dir = CaptionTask {
        attention_dir: Some(attention.clone()),
        ..task(
            ImageSet::from_path(&output.join("tiny2017"), None).unwrap(),
            DecoderName::Greedy,
        )
    }
    .run::<CpuBackend>(Default::default())
    .unwrap()
    .results;
    assert_eq!(dir.len(), 3);
    assert!(matches!(&dir[0].image, ImageRef::File { file_name } if file_name.ends_with(".jpg")));
    // One attention strip per image: the image, then a panel per word.
    for path in image_files(&output.join("tiny2017")).unwrap() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let words = std::fs::read_to_string(attention.join(format!("{stem}.txt"))).unwrap();
        let strip = image::open(attention.join(format!("{stem}.png"))).unwrap();
        assert_eq!(strip.height(), 224);
        assert_eq!(strip.width(), 224 * (words.lines().count() as u32 + 1));
    }

    // Feature extraction reads the same checkpoint's backbone.
    let images = image_files(&output.join("tiny2017")).unwrap();
    let extraction = Extraction {
        batch: 2,
        l2_normalize: true,
        ..Extraction::new(32)
    };
    let features = FeatureTask {
        source: checkpoint.clone(),
        arch: ResNetArch::Resnet50,
        images,
        extraction,
    }
    .run::<CpuBackend>(Default::default())
    .unwrap()
    .features;
    assert_eq!(
        (features.rows, features.dim),
        (3, 512),
        "ResNet-18 from the checkpoint's config"
    );

    // Unreadable files among the images (the fixtures of
    // tools/fixtures/make_bad_image_fixtures.py and make_image_fixtures.py):
    // skipped and listed with why, or the first one stops the task.
    let mixed = output.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    let bad = ["bomb.png", "empty.jpg", "not_an_image.jpg", "truncated.jpg"];
    for name in bad {
        std::fs::copy(
            root.join("data/fixtures/images").join(name),
            mixed.join(name),
        )
        .unwrap();
    }
    for path in image_files(&output.join("tiny2017")).unwrap() {
        std::fs::copy(&path, mixed.join(path.file_name().unwrap())).unwrap();
    }
    let lenient = CaptionTask {
        on_bad_image: BadImagePolicy::Skip,
        ..task(ImageSet::folder(&mixed).unwrap(), DecoderName::Greedy)
    }
    .run::<CpuBackend>(Default::default())
    .unwrap();
    assert_eq!(lenient.results.len(), 3, "the three emoji are captioned");
    let skipped: Vec<String> = lenient
        .skipped
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(skipped, bad);
    assert!(lenient.skipped[0].message.contains("96000000 pixels"));
    let strict = task(ImageSet::folder(&mixed).unwrap(), DecoderName::Greedy)
        .run::<CpuBackend>(Default::default())
        .unwrap_err();
    assert!(strict.to_string().contains("bomb.png"), "{strict}");
    let mixed_images = image_files(&mixed).unwrap();
    let extracted = FeatureTask {
        source: checkpoint.clone(),
        arch: ResNetArch::Resnet50,
        images: mixed_images.clone(),
        extraction: Extraction {
            on_bad_image: BadImagePolicy::Skip,
            ..extraction
        },
    }
    .run::<CpuBackend>(Default::default())
    .unwrap();
    assert_eq!(extracted.features.rows, 3);
    assert_eq!(extracted.skipped.len(), 4);
    assert!(
        extracted
            .images
            .iter()
            .all(|p| p.extension().unwrap() == "jpg" && !bad.iter().any(|b| p.ends_with(b)))
    );
    // The rows written are the good images' rows, in order.
    let diff = extracted
        .features
        .values
        .iter()
        .zip(&features.values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-5, "{diff}");

    // The Detectron2 export writes the same backbone under Detectron2's names.
    let pth = output.join("detectron2.pth");
    checkpoint
        .export_backbone(ResNetArch::Resnet18, &pth, ExportNaming::Detectron2)
        .unwrap();
    let reader = burn_store::pytorch::PytorchReader::with_top_level_key(&pth, "model").unwrap();
    let keys = reader.keys();
    assert_eq!(keys.len(), 120, "ResNet-18 without fc: {keys:?}");
    assert!(keys.contains(&"res5.1.conv2.norm.running_var".to_string()));
    // Under torchvision's names (`export-backbone --to torchvision`), the
    // export reads back as the same backbone: the same features.
    let torchvision = output.join("torchvision.pth");
    checkpoint
        .export_backbone(
            ResNetArch::Resnet18,
            &torchvision,
            ExportNaming::Torchvision,
        )
        .unwrap();
    let reread = FeatureTask {
        source: WeightsSource::Torchvision(torchvision),
        arch: ResNetArch::Resnet18,
        images: image_files(&output.join("tiny2017")).unwrap(),
        extraction,
    }
    .run::<CpuBackend>(Default::default())
    .unwrap()
    .features;
    assert_eq!((reread.rows, reread.dim), (features.rows, features.dim));
    let diff = reread
        .values
        .iter()
        .zip(&features.values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-6, "{diff}");
    std::fs::remove_dir_all(output).unwrap();
}

#[test]
fn scores_captions_of_the_emoji_val_split() {
    let refs =
        read_references(&root().join("data/emoji/annotations/captions_val2017.json")).unwrap();
    // One human caption per image as the "prediction": scores far above a
    // constant caption's.
    let result = |image_id: u64, caption: &str| CaptionResult {
        image: ImageRef::Id { image_id },
        caption: caption.into(),
    };
    let human: Vec<_> = refs
        .iter()
        .take(40)
        .map(|(&id, c)| result(id, &c[0]))
        .collect();
    let constant: Vec<_> = refs
        .keys()
        .take(40)
        .map(|&id| result(id, "an emoji of a thing"))
        .collect();
    let cider: Vec<f64> = [human, constant]
        .iter()
        .map(|results| {
            let scores = score_captions(&pair_with_references(results, &refs).unwrap()).unwrap();
            assert_eq!(scores.images, 40);
            scores.cider
        })
        .collect();
    assert!(cider[0] > 2.0 * cider[1], "{cider:?}");

    let err = pair_with_references(&[result(999_999_999, "a")], &refs).unwrap_err();
    assert!(err.to_string().contains("999999999"), "{err}");
}

/// A two-class devkit of emoji images: flags and faces, one difficult.
fn devkit(root: &Path) {
    let emoji = self::root().join("data/emoji/train2017");
    let mut names: Vec<String> = std::fs::read_dir(&emoji)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    std::fs::create_dir_all(root.join("JPEGImages")).unwrap();
    std::fs::create_dir_all(root.join("ImageSets/Main")).unwrap();
    let mut lists: [[String; 2]; 2] = Default::default();
    let picks = [("1f1e", 0), ("1f60", 1)];
    for (prefix, class) in picks {
        for (i, name) in names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .take(12)
            .enumerate()
        {
            let stem = name.trim_end_matches(".jpg");
            std::fs::copy(emoji.join(name), root.join("JPEGImages").join(name)).unwrap();
            let split = usize::from(i >= 8);
            for (c, list) in lists.iter_mut().enumerate() {
                let label = if c != class {
                    "-1"
                } else if split == 1 && i == 11 {
                    "0"
                } else {
                    "1"
                };
                list[split].push_str(&format!("{stem} {label}\n"));
            }
        }
    }
    for (c, class) in ["flag", "face"].iter().enumerate() {
        for (s, split) in ["trainval", "test"].iter().enumerate() {
            std::fs::write(
                root.join(format!("ImageSets/Main/{class}_{split}.txt")),
                &lists[c][s],
            )
            .unwrap();
        }
    }
}

#[test]
fn voc07_runs_the_protocol_on_a_devkit() {
    let root = scratch("voc");
    devkit(&root);
    let report = Voc07Task {
        source: WeightsSource::Random,
        arch: ResNetArch::Resnet18,
        voc_root: root.clone(),
        size: 32,
        batch: 8,
    }
    .run::<CpuBackend>(Default::default())
    .unwrap();
    assert_eq!(report.classes.len(), 2);
    assert_eq!(report.classes[0].class, "face");
    // Even random features separate flags from faces on this devkit.
    assert!(report.map > 0.5, "{report:?}");
    std::fs::remove_dir_all(&root).unwrap();
}
