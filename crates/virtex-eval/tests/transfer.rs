//! Linear probe and fine-tuning on real images: two emoji subcategories in an
//! ImageFolder layout.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn_flex::Flex;
use virtex_eval::transfer::TransferMode;
use virtex_eval::transfer::classifier::{ClassificationResult, train_classifier};
use virtex_eval::transfer::image_folder::ImageFolder;
use virtex_train::config::Config;
use virtex_vision::{ResNetArch, ResNetConfig};

type B = Autodiff<Flex>;

/// `root/{train,val}/{flags,faces}/…` from the bundled emoji images whose
/// file names start with a regional-indicator pair (flags) or `1f60` (faces).
fn folders(root: &Path) -> PathBuf {
    let emoji = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/emoji/train2017");
    let mut names: Vec<String> = std::fs::read_dir(&emoji)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for (class, prefix) in [("flags", "1f1e"), ("faces", "1f60")] {
        let picked: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .take(16)
            .collect();
        assert_eq!(picked.len(), 16, "{prefix}");
        for (i, name) in picked.iter().enumerate() {
            let split = if i < 12 { "train" } else { "val" };
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(emoji.join(name), dir.join(name)).unwrap();
        }
    }
    root.to_path_buf()
}

/// burn's CPU backend has one random generator per process: the runs of
/// this file take turns, so each sees the same seeded initialisation.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(frozen: bool) -> ClassificationResult {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root =
        folders(&std::env::temp_dir().join(format!("virtex-clf-{frozen}-{}", std::process::id())));
    let config = Config::load(
        Some(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../data/configs/downstream/imagenet_clf.yaml"),
        ),
        &[
            format!("MODEL.VISUAL.FROZEN={frozen}"),
            "DATA.IMAGE_CROP_SIZE=32".into(),
            "OPTIM.BATCH_SIZE=8".into(),
            "OPTIM.NUM_ITERATIONS=30".into(),
            format!("OPTIM.LR={}", if frozen { 0.3 } else { 0.02 }),
        ],
    )
    .unwrap();
    let train = ImageFolder::load(&root.join("train")).unwrap();
    let val = ImageFolder::load_matching(&root.join("val"), &train).unwrap();
    assert_eq!(train.classes, ["faces", "flags"]);
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 0);
    let backbone = ResNetConfig::virtex(ResNetArch::Resnet18).init::<B>(&device);
    let result = train_classifier(backbone, &config, &train, &val, &device).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    result
}

#[test]
fn linear_probe_learns_to_tell_flags_from_faces() {
    let result = run(true);
    assert_eq!(result.mode, TransferMode::LinearProbe);
    assert!(
        result.loss_start_end.1 < result.loss_start_end.0,
        "{result:?}"
    );
    assert!(result.top1 >= 0.75, "{result:?}");
    assert_eq!(result.top5, 1.0, "two classes: top-2 is everything");
}

#[test]
fn fine_tuning_trains_end_to_end() {
    let result = run(false);
    assert_eq!(result.mode, TransferMode::FineTune);
    assert!(
        result.loss_start_end.1 < result.loss_start_end.0,
        "{result:?}"
    );
}

#[test]
fn mismatched_validation_classes_are_named() {
    let root = std::env::temp_dir().join(format!("virtex-clf-mismatch-{}", std::process::id()));
    folders(&root);
    std::fs::create_dir_all(root.join("val/cats")).unwrap();
    let train = ImageFolder::load(&root.join("train")).unwrap();
    let err = ImageFolder::load_matching(&root.join("val"), &train).unwrap_err();
    assert!(err.to_string().contains("cats"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
