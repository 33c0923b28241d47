//! The optimiser against hand-computed updates and the reference's groups.

use burn::backend::Autodiff;
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use virtex_text::{
    NormPosition, PretrainingModelConfig, PretrainingTask, TextualHeadName, TransformerSize,
};
use virtex_train::config::{LookaheadConfig, OptimConfig};
use virtex_train::optim::{StepRates, VirtexOptimizer};
use virtex_vision::ResNetArch;

type AD = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Toy<B: burn::tensor::backend::Backend> {
    weight: Param<Tensor<B, 1>>,
}

fn toy(values: &[f32]) -> Toy<AD> {
    Toy {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Default::default(),
        )),
    }
}

fn values(model: &Toy<AD>) -> Vec<f32> {
    model.weight.val().into_data().to_vec().unwrap()
}

/// One step on the loss `Σ c·w` (gradient `c`); the gradient norm read back.
fn step(optimizer: &mut VirtexOptimizer<AD>, model: Toy<AD>, c: &[f32], lr: f64) -> (Toy<AD>, f64) {
    let coefficients =
        Tensor::<AD, 1>::from_data(TensorData::new(c.to_vec(), [c.len()]), &Default::default());
    let loss = (model.weight.val() * coefficients).sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let (model, norm) = optimizer.step(model, grads, StepRates { cnn_lr: lr, lr });
    let norm = norm.expect("the toy's weight has a gradient").into_scalar();
    (model, f64::from(norm))
}

fn plain(momentum: f64, lookahead: bool) -> OptimConfig {
    OptimConfig {
        sgd_momentum: momentum,
        weight_decay: 0.0,
        clip_grad_norm: 0.0,
        lookahead: LookaheadConfig {
            enabled: lookahead,
            alpha: 0.5,
            steps: 2,
        },
        ..OptimConfig::default()
    }
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn lookahead_pulls_back_halfway_every_k_steps() {
    // k = 2, α = 0.5, lr 0.1, gradient 1. Without momentum: 1 → 0.9 → 0.8,
    // then slow = 1 + 0.5·(0.8 − 1) = 0.9. With momentum 0.9: buffers 1, 1.9,
    // so 1 → 0.9 → 0.71, then slow = 1 + 0.5·(0.71 − 1) = 0.855.
    for (momentum, after_one, after_two) in [(0.0, 0.9, 0.9), (0.9, 0.9, 0.855)] {
        let model = toy(&[1.0]);
        let mut optimizer = VirtexOptimizer::new(&model, &plain(momentum, true)).unwrap();
        let (model, _) = step(&mut optimizer, model, &[1.0], 0.1);
        assert!(close(&values(&model), &[after_one]), "{:?}", values(&model));
        let (model, _) = step(&mut optimizer, model, &[1.0], 0.1);
        assert!(close(&values(&model), &[after_two]), "{:?}", values(&model));
    }
}

#[test]
fn clipping_uses_the_global_norm() {
    let model = toy(&[0.0, 0.0]);
    let config = OptimConfig {
        clip_grad_norm: 1.0,
        ..plain(0.0, false)
    };
    let mut optimizer = VirtexOptimizer::new(&model, &config).unwrap();
    let (model, norm) = step(&mut optimizer, model, &[3.0, 4.0], 1.0);
    assert!((norm - 5.0).abs() < 1e-6);
    assert!(
        close(&values(&model), &[-0.6, -0.8]),
        "{:?}",
        values(&model)
    );
}

#[test]
fn sgd_weight_decay_and_adamw_follow_pytorch() {
    // SGD: d = g + λp = 1 + 0.1·2 = 1.2; p = 2 − 0.5·1.2 = 1.4.
    let model = toy(&[2.0]);
    let config = OptimConfig {
        weight_decay: 0.1,
        ..plain(0.9, false)
    };
    let mut optimizer = VirtexOptimizer::new(&model, &config).unwrap();
    let (model, _) = step(&mut optimizer, model, &[1.0], 0.5);
    assert!(close(&values(&model), &[1.4]));
    // AdamW's first step: p(1 − lr·λ) − lr·sign(g) (bias-corrected m/√v = ±1).
    let model = toy(&[2.0, -1.0]);
    let config = OptimConfig {
        optimizer_name: virtex_train::config::OptimizerName::Adamw,
        weight_decay: 0.1,
        ..plain(0.0, false)
    };
    let mut optimizer = VirtexOptimizer::new(&model, &config).unwrap();
    let (model, _) = step(&mut optimizer, model, &[0.3, -2.0], 0.01);
    assert!(
        close(&values(&model), &[2.0 * 0.999 - 0.01, -0.999 + 0.01]),
        "{:?}",
        values(&model)
    );
}

#[test]
fn groups_follow_the_reference_names_and_no_decay_regex() {
    let model = PretrainingModelConfig {
        task: PretrainingTask::Bicaptioning,
        visual: ResNetArch::Resnet18,
        textual: TextualHeadName::Transformer {
            norm: NormPosition::Post,
            size: TransformerSize {
                layers: 1,
                hidden: 16,
                heads: 2,
                feedforward: 32,
            },
        },
        vocab_size: 30,
        max_caption_length: 30,
        dropout: 0.1,
    }
    .init::<AD>(&Default::default())
    .unwrap();
    let optimizer = VirtexOptimizer::new(&model, &OptimConfig::default()).unwrap();
    let groups: std::collections::HashMap<&str, (bool, bool)> = optimizer
        .table()
        .by_id
        .values()
        .map(|info| (info.name.as_str(), (info.cnn, info.decay)))
        .collect();
    for (name, cnn, decay) in [
        ("visual.cnn.conv1.weight", true, true),
        ("visual.cnn.bn1.weight", true, true),
        ("visual.cnn.layer4.1.bn2.bias", true, true),
        ("textual.visual_projection.bias", false, true),
        ("textual.embedding.words.weight", false, true),
        ("textual.embedding.positions.weight", false, true),
        ("textual.embedding.layer_norm.weight", false, false),
        ("textual.embedding.layer_norm.bias", false, false),
        (
            "textual.transformer.layers.0.self_attn.in_proj_weight",
            false,
            true,
        ),
        (
            "textual.transformer.layers.0.self_attn.in_proj_bias",
            false,
            false,
        ),
        ("textual.transformer.layers.0.linear1.bias", false, false),
        ("textual.transformer.layers.0.norm3.weight", false, false),
        ("textual.output.bias", false, true),
        (
            "backward_textual.transformer.layers.0.linear2.weight",
            false,
            true,
        ),
        (
            "backward_textual.transformer.layers.0.norm1.bias",
            false,
            false,
        ),
    ] {
        assert_eq!(groups.get(name), Some(&(cnn, decay)), "{name}");
    }
    assert!(
        !groups.keys().any(|n| n.contains("running")),
        "buffers are not parameters"
    );
}
