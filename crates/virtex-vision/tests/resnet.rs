//! ResNet against torchvision: parameter counts, shapes, numerical parity on
//! committed fixtures (`tools/fixtures/make_resnet_fixtures.py`), weight I/O.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use burn_store::pytorch::PytorchReader;
use virtex_vision::pytorch::torch_save::{self, PickleValue, TorchTensor};
use virtex_vision::pytorch::{ExportNaming, TorchvisionWeights, export, torchvision_state_dict};
use virtex_vision::resnet::ResidualBlock;
use virtex_vision::{FrozenResNet, ResNet, ResNetArch, ResNetConfig, VisionError};

type B = Flex;
type AD = Autodiff<Flex>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-vision-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn read_tensor<const D: usize>(reader: &PytorchReader, key: &str) -> Tensor<B, D> {
    let data = reader.get(key).unwrap().to_data().unwrap();
    Tensor::from_data(data, &Default::default())
}

/// max |a - b| / max |b|
fn relative_error<const D: usize>(actual: Tensor<B, D>, expected: Tensor<B, D>) -> f32 {
    let scale = expected.clone().abs().max().into_scalar();
    let diff = (actual - expected).abs().max().into_scalar();
    diff / scale
}

#[test]
fn resnet50_parameter_count_and_shapes_match_torchvision() {
    let device = Default::default();
    let arch = ResNetArch::Resnet50;
    let with_fc = ResNetConfig::new(arch)
        .with_num_classes(Some(1000))
        .init::<B>(&device);
    assert_eq!(with_fc.num_learnable_params(), 25_557_032);
    let backbone = ResNetConfig::virtex(arch).init::<B>(&device);
    assert_eq!(backbone.num_learnable_params(), 23_508_032);

    let images =
        Tensor::<B, 4>::random([1, 3, 64, 64], burn::tensor::Distribution::Default, &device);
    let stages = backbone.forward_stages(images.clone());
    assert_eq!(stages.layer1.dims(), [1, 256, 16, 16]);
    assert_eq!(stages.layer2.dims(), [1, 512, 8, 8]);
    assert_eq!(stages.layer3.dims(), [1, 1024, 4, 4]);
    assert_eq!(stages.layer4.dims(), [1, 2048, 2, 2]);
    assert_eq!(backbone.forward_pooled(images.clone()).dims(), [1, 2048]);
    assert_eq!(
        with_fc.forward_logits(images.clone()).unwrap().dims(),
        [1, 1000]
    );
    assert!(backbone.forward_logits(images).is_none());

    // Full-depth key mapping: every torchvision key, with its shape, and nothing else.
    let exported: Vec<String> = torchvision_state_dict(&with_fc)
        .into_iter()
        .map(|(k, t)| format!("{k} {:?}", t.shape))
        .collect();
    let expected = std::fs::read_to_string(fixture("resnet50_state_dict_shapes.txt")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(exported, expected);
}

#[test]
fn resnet18_keys_and_parameter_count_match_torchvision() {
    let model = ResNetConfig::new(ResNetArch::Resnet18)
        .with_num_classes(Some(1000))
        .init::<B>(&Default::default());
    assert_eq!(model.num_learnable_params(), 11_689_512);
    let exported: Vec<String> = torchvision_state_dict(&model)
        .into_iter()
        .map(|(k, t)| format!("{k} {:?}", t.shape))
        .collect();
    let expected = std::fs::read_to_string(fixture("resnet18_state_dict_shapes.txt")).unwrap();
    assert_eq!(exported, expected.lines().collect::<Vec<_>>());
    assert_eq!(model.out_channels(), 512);
}

/// Loads the stem + layer1 fixture weights and compares layer1 outputs.
fn check_layer1_parity(arch: ResNetArch) {
    let name = arch.name();
    let device = Default::default();
    let weights =
        TorchvisionWeights::new(fixture(&format!("{name}_layer1.pth"))).allow_partial(true);
    let io = PytorchReader::new(fixture(&format!("{name}_layer1_io.pth"))).unwrap();
    let input: Tensor<B, 4> = read_tensor(&io, "input");

    // Eval mode: running statistics.
    let model = weights
        .load(ResNetConfig::new(arch).init::<B>(&device))
        .unwrap();
    let eval = model.forward_stages(input.clone()).layer1;
    let err = relative_error(eval, read_tensor(&io, "layer1_eval"));
    println!("{name} layer1 relative error, eval mode: {err:e}");
    assert!(err < 1e-4, "{name} eval-mode layer1 relative error {err}");

    // Train mode (autodiff backend): batch statistics.
    let model = weights
        .load(ResNetConfig::new(arch).init::<AD>(&device))
        .unwrap();
    let train = model
        .forward_stages(Tensor::from_inner(input))
        .layer1
        .inner();
    let err = relative_error(train, read_tensor(&io, "layer1_train"));
    println!("{name} layer1 relative error, train mode: {err:e}");
    assert!(err < 1e-4, "{name} train-mode layer1 relative error {err}");
}

#[test]
fn resnet18_matches_torchvision_numerically() {
    check_layer1_parity(ResNetArch::Resnet18);
}

#[test]
fn resnet50_matches_torchvision_numerically() {
    check_layer1_parity(ResNetArch::Resnet50);
}

#[test]
fn strict_loading_names_missing_unexpected_and_misshapen_keys() {
    let device = Default::default();
    let resnet18 = || ResNetConfig::new(ResNetArch::Resnet18).init::<B>(&device);

    let err = TorchvisionWeights::new(fixture("resnet18_layer1.pth"))
        .load(resnet18())
        .unwrap_err();
    match &err {
        VisionError::MissingKeys { keys, .. } => {
            assert!(
                keys.contains(&"layer2.0.downsample.0.weight".to_string()),
                "{keys:?}"
            );
            assert!(!keys.iter().any(|k| k.starts_with("layer1.")), "{keys:?}");
        }
        other => panic!("expected missing keys, got {other}"),
    }
    assert!(err.to_string().contains("resnet18_layer1.pth"));

    // ResNet-50's 1×1 layer1.0.conv1 does not fit ResNet-18's 3×3.
    let err = TorchvisionWeights::new(fixture("resnet50_layer1.pth"))
        .allow_partial(true)
        .load(resnet18())
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("layer1.0.conv1.weight") && message.contains("[64, 64, 1, 1]"),
        "{message}"
    );

    // An extra key is rejected by name.
    let mut state = torchvision_state_dict(&resnet18());
    state.push((
        "layer5.0.conv1.weight".into(),
        TorchTensor::f32(vec![1], &[0.0]),
    ));
    let path = scratch("extra.pth");
    torch_save::save(
        &path,
        &PickleValue::Dict(
            state
                .into_iter()
                .map(|(k, t)| (k, PickleValue::Tensor(t)))
                .collect(),
        ),
    )
    .unwrap();
    match TorchvisionWeights::new(&path).load(resnet18()).unwrap_err() {
        VisionError::UnexpectedKeys { keys, .. } => assert_eq!(keys, ["layer5.0.conv1.weight"]),
        other => panic!("expected unexpected keys, got {other}"),
    }

    let err = TorchvisionWeights::new(scratch("absent.pth"))
        .load(resnet18())
        .unwrap_err();
    assert!(err.to_string().contains("absent.pth"), "{err}");
}

#[test]
fn virtex_checkpoint_backbone_loads_from_its_prefix() {
    let device = Default::default();
    let source = ResNetConfig::virtex(ResNetArch::Resnet18).init::<B>(&device);
    let mut model = vec![(
        "textual.visual_projection.weight".to_string(),
        PickleValue::Tensor(TorchTensor::f32(vec![2, 512], &[0.5; 1024])),
    )];
    model.extend(
        torchvision_state_dict(&source)
            .into_iter()
            .map(|(k, t)| (format!("visual.cnn.{k}"), PickleValue::Tensor(t))),
    );
    let path = scratch("virtex_checkpoint.pth");
    let checkpoint = PickleValue::Dict(vec![
        ("model".into(), PickleValue::Dict(model)),
        ("iteration".into(), PickleValue::Str("500000".into())),
    ]);
    torch_save::save(&path, &checkpoint).unwrap();

    let loaded = TorchvisionWeights::virtex_checkpoint(&path)
        .load(ResNetConfig::new(ResNetArch::Resnet18).init::<B>(&device))
        .unwrap();
    let images =
        Tensor::<B, 4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
    let err = relative_error(loaded.forward(images.clone()), source.forward(images));
    assert!(err < 1e-6, "{err}");
}

#[test]
fn exports_reload_and_detectron2_names_follow_the_reference() {
    let device = Default::default();
    let source = ResNetConfig::new(ResNetArch::Resnet18).init::<B>(&device);
    let path = scratch("torchvision.pth");
    export(&source, &path, ExportNaming::Torchvision).unwrap();
    let reloaded = TorchvisionWeights::new(&path)
        .load(ResNetConfig::virtex(ResNetArch::Resnet18).init::<B>(&device))
        .unwrap();
    let images =
        Tensor::<B, 4>::random([1, 3, 32, 32], burn::tensor::Distribution::Default, &device);
    assert_eq!(
        reloaded.forward(images.clone()).into_data(),
        source.forward(images).into_data()
    );

    let path = scratch("detectron2.pth");
    export(&source, &path, ExportNaming::Detectron2).unwrap();
    let reader = PytorchReader::with_top_level_key(&path, "model").unwrap();
    let keys = reader.keys();
    for key in [
        "stem.conv1.weight",
        "stem.conv1.norm.running_var",
        "res2.0.conv1.norm.weight",
        "res3.0.shortcut.weight",
        "res5.1.conv2.norm.num_batches_tracked",
    ] {
        assert!(keys.contains(&key.to_string()), "{key} not in {keys:?}");
    }
    assert_eq!(
        keys.len(),
        120,
        "every torchvision key of a model without fc, renamed"
    );
}

#[test]
fn initialisation_follows_torchvision() {
    let device = Default::default();
    let model = ResNetConfig::new(ResNetArch::Resnet18).init::<B>(&device);
    // Kaiming normal, fan-out, ReLU gain: std = sqrt(2 / (64 * 7 * 7)).
    let w = model.conv1.weight.val();
    let n = w.shape().num_elements() as f32;
    let mean = w.clone().mean().into_scalar();
    let std = ((w - mean).powf_scalar(2.0).sum().into_scalar() / n).sqrt();
    let expected = (2.0f32 / (64.0 * 49.0)).sqrt();
    assert!(
        (std - expected).abs() / expected < 0.05,
        "std {std}, expected {expected}"
    );

    let last_gamma = |m: &ResNet<B>| match &m.layer1[0] {
        ResidualBlock::Basic(b) => b.bn2.gamma.val().into_data(),
        ResidualBlock::Bottleneck(b) => b.bn3.gamma.val().into_data(),
    };
    assert_eq!(last_gamma(&model), TensorData::from([1.0f32; 64]));
    let zero = ResNetConfig::virtex(ResNetArch::Resnet18).init::<B>(&device);
    assert_eq!(last_gamma(&zero), TensorData::from([0.0f32; 64]));
}

#[test]
fn frozen_backbone_uses_running_statistics_and_passes_no_gradient() {
    let device = Default::default();
    let weights = TorchvisionWeights::new(fixture("resnet18_layer1.pth")).allow_partial(true);
    let model = weights
        .load(ResNetConfig::new(ResNetArch::Resnet18).init::<AD>(&device))
        .unwrap();
    let io = PytorchReader::new(fixture("resnet18_layer1_io.pth")).unwrap();
    let input: Tensor<B, 4> = read_tensor(&io, "input");

    let frozen = FrozenResNet::<AD>::new(model.clone());
    let eval = frozen.inner.forward_stages(input.clone()).layer1;
    assert!(relative_error(eval, read_tensor(&io, "layer1_eval")) < 1e-4);

    let pooled = frozen.forward_pooled(Tensor::from_inner(input));
    assert_eq!(pooled.dims(), [2, 512]);
    assert!(!pooled.is_require_grad(), "frozen features carry no graph");
}
