//! The reference's YAML configs load; overrides and bad keys are handled.

use std::path::{Path, PathBuf};

use virtex_text::{PretrainingTask, TextualHeadName};
use virtex_train::config::{Config, ConfigError, LrDecayName};
use virtex_vision::ResNetArch;

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/configs")
        .canonicalize()
        .unwrap()
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
}

#[test]
fn every_shipped_config_loads() {
    let mut files = Vec::new();
    yaml_files(&configs(), &mut files);
    assert!(files.len() >= 17, "{files:?}");
    for file in files {
        Config::load(Some(&file), &[]).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn the_base_config_equals_the_reference_defaults() {
    let base = Config::load(
        Some(&configs().join("_base_bicaptioning_R_50_L1_H1024.yaml")),
        &[],
    )
    .unwrap();
    let defaults = Config::load(
        None,
        &["MODEL.TEXTUAL.NAME=transdec_postnorm::L1_H1024_A16_F4096".into()],
    )
    .unwrap();
    // The file's relative paths are relative to it: `datasets/` beside `data/`.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().unwrap();
    assert_eq!(base.data.root, repo.join("datasets/coco"));
    assert_eq!(
        base.data.tokenizer_model,
        repo.join("datasets/vocab/coco_10k.model")
    );
    let mut base = base;
    base.data.root = defaults.data.root.clone();
    base.data.tokenizer_model = defaults.data.tokenizer_model.clone();
    assert_eq!(base, defaults);
    assert_eq!(base.optim.lr_decay_name, LrDecayName::Cosine);
    assert_eq!(
        (base.optim.cnn_lr, base.optim.lr, base.optim.batch_size),
        (0.2, 0.001, 256)
    );
}

#[test]
fn ablations_inherit_from_their_base() {
    let best = Config::load(
        Some(&configs().join("task_ablations/bicaptioning_R_50_L1_H2048.yaml")),
        &[],
    )
    .unwrap();
    assert_eq!(best.model.name, PretrainingTask::Bicaptioning);
    assert_eq!(
        best.model.textual.name.to_string(),
        "transdec_postnorm::L1_H2048_A32_F8192"
    );
    assert_eq!(best.optim.num_iterations, 500_000, "inherited");
    let wide = Config::load(
        Some(&configs().join("backbone_ablations/bicaptioning_R_50W2X_L1_H1024.yaml")),
        &[],
    )
    .unwrap();
    assert_eq!(wide.model.visual.name, ResNetArch::WideResnet50_2);
    let tokens = Config::load(
        Some(&configs().join("task_ablations/token_classification_R_50.yaml")),
        &[],
    )
    .unwrap();
    assert_eq!(tokens.model.textual.name, TextualHeadName::Linear);
}

#[test]
fn overrides_set_any_key() {
    let config = Config::load(
        Some(&configs().join("_base_bicaptioning_R_50_L1_H1024.yaml")),
        &[
            "OPTIM.LR=0.002".into(),
            "OPTIM.LOOKAHEAD.USE=false".into(),
            "DATA.ROOT=/data/coco".into(),
            "TRAIN.CHECKPOINT_EVERY=50".into(),
        ],
    )
    .unwrap();
    assert_eq!(config.optim.lr, 0.002);
    assert!(!config.optim.lookahead.enabled);
    assert_eq!(config.data.root, Path::new("/data/coco"));
    assert_eq!(config.train.checkpoint_every, 50);
}

/// Captioning resizes as the reference's `eval_captioning.py` (256 → 224,
/// in that ratio at other crops) unless `DATA.CAPTION_RESIZE_SIZE` says
/// otherwise; the bundled config, trained on whole images, captions whole
/// images.
#[test]
fn the_caption_transform_follows_the_config() {
    let base = configs().join("_base_bicaptioning_R_50_L1_H1024.yaml");
    let transform = Config::load(Some(&base), &[])
        .unwrap()
        .data
        .caption_transform();
    assert_eq!((transform.resize, transform.crop), (256, 224));
    let small = Config::load(Some(&base), &["DATA.IMAGE_CROP_SIZE=32".into()]).unwrap();
    assert_eq!(small.data.caption_transform().resize, 37);
    let bundled = Config::load(Some(&configs().join("emoji_bicaptioning.yaml")), &[]).unwrap();
    let transform = bundled.data.caption_transform();
    assert_eq!((transform.resize, transform.crop), (32, 32));
}

/// The reference decodes without the first-token prior penalty and ranks
/// beams by the forward decoder alone; the bundled config sets both, and
/// they reach the decoder.
#[test]
fn the_prior_penalty_and_backward_weight_reach_the_decoder() {
    let base = configs().join("_base_bicaptioning_R_50_L1_H1024.yaml");
    let reference = Config::load(Some(&base), &[]).unwrap();
    assert_eq!(reference.caption_decoder(None).prior_penalty, 0.0);
    let bundled = Config::load(Some(&configs().join("emoji_bicaptioning.yaml")), &[]).unwrap();
    assert_eq!(bundled.model.decoder.prior_penalty, 0.5);
    assert_eq!(bundled.caption_decoder(None).prior_penalty, 0.5);
    assert_eq!(reference.caption_decoder(None).backward_weight, 0.0);
    assert_eq!(bundled.caption_decoder(None).backward_weight, 2.0);
}

#[test]
fn bad_keys_and_values_are_named() {
    let base = configs().join("_base_bicaptioning_R_50_L1_H1024.yaml");
    for (set, key, needle) in [
        (
            "OPTIM.LEARNING_RATE=0.1",
            "OPTIM.LEARNING_RATE",
            "unknown field",
        ),
        ("OPTIM.LR=fast", "OPTIM.LR", "invalid type"),
        ("MODEL.VISUAL.NAME=resnet9", "MODEL.VISUAL.NAME", "resnet9"),
        (
            "MODEL.TEXTUAL.NAME=transdec_postnorm::L1_H100_A3_F400",
            "MODEL.TEXTUAL.NAME",
            "multiple",
        ),
        ("MODEL.NAME=contrastive", "MODEL.NAME", "contrastive"),
        ("OPTIM.WARMUP_STEPS=600000", "OPTIM.WARMUP_STEPS", "below"),
        (
            "MODEL.VISUAL.NAME=resnet18",
            "MODEL.VISUAL.FEATURE_SIZE",
            "512",
        ),
        ("OPTIM.NO_DECAY=(unclosed", "OPTIM.NO_DECAY", "unclosed"),
        (
            "DATA.CAPTION_RESIZE_SIZE=200",
            "DATA.CAPTION_RESIZE_SIZE",
            "below DATA.IMAGE_CROP_SIZE (224)",
        ),
        (
            "MODEL.DECODER.PRIOR_PENALTY=-0.5",
            "MODEL.DECODER.PRIOR_PENALTY",
            "≥ 0, got -0.5",
        ),
        (
            "MODEL.DECODER.BACKWARD_WEIGHT=-2",
            "MODEL.DECODER.BACKWARD_WEIGHT",
            "≥ 0, got -2",
        ),
    ] {
        match Config::load(Some(&base), &[set.into()]) {
            Err(ConfigError::Key {
                key: got, message, ..
            }) => {
                assert_eq!(got, key, "{set}: {message}");
                assert!(message.contains(needle), "{set}: {message}");
            }
            other => panic!("{set}: expected a key error, got {other:?}"),
        }
    }
    assert!(matches!(
        Config::load(None, &["OPTIM.LR".into()]),
        Err(ConfigError::Override(_))
    ));
    let missing = Config::load(Some(Path::new("no/such.yaml")), &[]).unwrap_err();
    assert!(missing.to_string().contains("no/such.yaml"), "{missing}");
}

#[test]
fn paths_in_a_config_are_relative_to_the_file_that_names_them() {
    let dir = std::env::temp_dir().join(format!("virtex-config-paths-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::write(
        dir.join("base/base.yaml"),
        "DATA:\n  ROOT: ../images\n  TOKENIZER_MODEL: ./vocab.model\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("child.yaml"),
        "_BASE_: base/base.yaml\nDATA:\n  ROOT: coco\n",
    )
    .unwrap();
    let base = Config::load(Some(&dir.join("base/base.yaml")), &[]).unwrap();
    assert_eq!(base.data.root, dir.join("images"));
    assert_eq!(base.data.tokenizer_model, dir.join("base/vocab.model"));
    // The child's DATA.ROOT is relative to the child; the tokenizer it
    // inherits stays relative to the base.
    let child = Config::load(Some(&dir.join("child.yaml")), &[]).unwrap();
    assert_eq!(child.data.root, dir.join("coco"));
    assert_eq!(child.data.tokenizer_model, dir.join("base/vocab.model"));
    // Absolute paths, and `--set` values (relative to where the command
    // runs), are kept as given.
    let set = Config::load(
        Some(&dir.join("child.yaml")),
        &["DATA.ROOT=datasets/coco".into()],
    )
    .unwrap();
    assert_eq!(set.data.root, Path::new("datasets/coco"));
    std::fs::remove_dir_all(dir).unwrap();
}
