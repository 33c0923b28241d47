//! A `.pth`'s layout is told by its tensor names, on the committed fixtures
//! (a torchvision ResNet-18 stem and layer1; an official-format VirTex
//! bicaptioning checkpoint), and every refusal is one short line.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use virtex_train::source::{PthLayout, SourceError, WeightsSource};
use virtex_vision::ResNetArch;
use virtex_vision::pytorch::torch_save::{PickleValue, TorchTensor, save};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures")
        .join(name)
}

fn torchvision() -> PathBuf {
    fixture("resnet18_layer1.pth")
}

fn virtex() -> PathBuf {
    fixture("virtex_text/bicaptioning_L2_H32_A2_F128.pth")
}

/// A file of neither layout: a Detectron2 backbone (`{"model": {"stem.…"}}`)
/// of eight tensors.
fn detectron2(dir: &Path) -> PathBuf {
    let names = [
        "stem.conv1.weight",
        "stem.conv1.norm.weight",
        "stem.conv1.norm.bias",
        "res2.0.conv1.weight",
        "res2.0.conv1.norm.weight",
        "res2.0.conv1.norm.bias",
        "res2.0.conv2.weight",
        "res2.0.conv2.norm.weight",
    ];
    let tensors = names
        .iter()
        .map(|name| {
            let tensor = TorchTensor::f32(vec![2], &[1.0, 2.0]);
            (name.to_string(), PickleValue::Tensor(tensor))
        })
        .collect();
    let path = dir.join("detectron2.pth");
    let value = PickleValue::Dict(vec![
        ("model".into(), PickleValue::Dict(tensors)),
        ("__author__".into(), PickleValue::Str("virtex-rs".into())),
    ]);
    save(&path, &value).unwrap();
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-layout-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An error message a person can read at a glance: one line that names
/// five keys at most, not a state dict.
fn assert_short(message: &str) {
    eprintln!("{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    let quoted = message.matches('\'').count() + message.matches('"').count();
    assert!(quoted <= 2 * 6, "{message}");
}

#[test]
fn the_layout_is_detected_from_the_tensor_names() {
    assert_eq!(
        PthLayout::detect(&torchvision()).unwrap(),
        PthLayout::Torchvision
    );
    assert_eq!(PthLayout::detect(&virtex()).unwrap(), PthLayout::Virtex);
    assert_eq!(
        WeightsSource::from_arg(&torchvision(), None).unwrap(),
        WeightsSource::Torchvision(torchvision())
    );
    assert_eq!(
        WeightsSource::from_arg(&virtex(), None).unwrap(),
        WeightsSource::Virtex(virtex())
    );
    // A layout the names agree with is taken as it is.
    assert_eq!(
        WeightsSource::from_arg(&virtex(), Some(PthLayout::Virtex)).unwrap(),
        WeightsSource::Virtex(virtex())
    );
}

#[test]
fn a_file_of_neither_layout_is_refused_with_a_few_of_its_names() {
    let dir = scratch("unknown");
    let path = detectron2(&dir);
    let err = WeightsSource::from_arg(&path, None).unwrap_err();
    let SourceError::UnknownLayout { keys, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(keys.len(), 8);
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.contains("its 8 tensors are 'model.res2.0.conv1.norm.bias', ")
            && message.ends_with("'model.res2.0.conv2.weight' and 3 more"),
        "{message}"
    );
    // A layout given reads it as that layout anyway; what does not fit is
    // then named, a few keys at most.
    let forced = WeightsSource::from_arg(&path, Some(PthLayout::Torchvision)).unwrap();
    assert_eq!(forced, WeightsSource::Torchvision(path.clone()));
    let err = forced
        .backbone::<Flex>(ResNetArch::Resnet18, &Default::default())
        .unwrap_err();
    let message = err.to_string();
    assert_short(&message);
    assert!(message.contains(" more"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_layout_the_names_contradict_is_refused_in_one_line() {
    let err = WeightsSource::from_arg(&torchvision(), Some(PthLayout::Virtex)).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::WrongLayout {
                given: PthLayout::Virtex,
                found: PthLayout::Torchvision,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.ends_with(
            "resnet18_layer1.pth: --layout virtex, but the file is a torchvision ResNet \
             state dict: leave --layout out (it is detected) or pass --layout torchvision"
        ),
        "{message}"
    );
    let err = WeightsSource::from_arg(&virtex(), Some(PthLayout::Torchvision)).unwrap_err();
    assert_short(&err.to_string());
    assert!(matches!(err, SourceError::WrongLayout { .. }), "{err:?}");
}

#[test]
fn loading_a_file_as_the_wrong_layout_names_a_few_keys_only() {
    let device = Default::default();
    // What `--layout virtex` did with a torchvision file before detection:
    // burn-store's error lists every top-level key of the file.
    let err = WeightsSource::Virtex(torchvision())
        .backbone::<Flex>(ResNetArch::Resnet18, &device)
        .unwrap_err();
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.ends_with(
            "resnet18_layer1.pth: no state dict under the top-level key 'model'; its 30 \
             tensors are 'bn1.bias', 'bn1.num_batches_tracked', 'bn1.running_mean', \
             'bn1.running_var', 'bn1.weight' and 25 more"
        ),
        "{message}"
    );
    // The other way round: every backbone key is missing.
    let err = WeightsSource::Torchvision(virtex())
        .backbone::<Flex>(ResNetArch::Resnet18, &device)
        .unwrap_err();
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.contains("missing keys (") && message.contains(" more"),
        "{message}"
    );
}
