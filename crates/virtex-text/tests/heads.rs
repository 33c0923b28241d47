//! Behaviour of the textual heads and pretraining models on tiny sizes.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use burn_flex::Flex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use virtex_text::decoding::{CaptionDecoder, DecodingStrategy};
use virtex_text::models::{PretrainingInput, PretrainingTargets};
use virtex_text::{
    NormPosition, PretrainingModelConfig, PretrainingTask, TextualHeadName, TransformerSize,
    TransformerTextualHead,
};
use virtex_vision::ResNetArch;

type B = Flex;
type AD = Autodiff<Flex>;

const SIZE: TransformerSize = TransformerSize {
    layers: 2,
    hidden: 16,
    heads: 2,
    feedforward: 32,
};

fn head<Bk: Backend>(norm: NormPosition, vocab: usize) -> TransformerTextualHead<Bk> {
    TransformerTextualHead::new(8, vocab, 30, &SIZE, norm, 0.1, &Default::default())
}

fn features<Bk: Backend>(batch: usize) -> Tensor<Bk, 4> {
    Tensor::random(
        [batch, 8, 2, 2],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    )
}

fn tokens<Bk: Backend>(rows: &[&[i64]]) -> Tensor<Bk, 2, Int> {
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(
        TensorData::new(flat, [rows.len(), rows[0].len()]),
        &Default::default(),
    )
}

fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn a_future_token_cannot_change_an_earlier_position() {
    for norm in [NormPosition::Post, NormPosition::Pre] {
        let head = head::<B>(norm, 40);
        let visual = features::<B>(1);
        let memory = head.memory(visual.clone());
        let before = tokens(&[&[1, 7, 9, 11, 13, 2]]);
        let after = tokens(&[&[1, 7, 9, 11, 30, 2]]);
        let causal = |t| head.decode_with(&head.transformer, memory.clone(), t, &[6], true);
        let (a, b) = (causal(before.clone()), causal(after.clone()));
        let earlier = |x: Tensor<B, 3>| x.slice([0..1, 0..4, 0..40]);
        assert!(max_abs_diff(earlier(a.clone()), earlier(b.clone())) < 1e-6);
        assert!(
            max_abs_diff(a, b) > 1e-3,
            "the changed position itself moves"
        );
        // Without the causal mask (masked LM), every position sees the change.
        let bidirectional = |t| head.decode_with(&head.transformer, memory.clone(), t, &[6], false);
        assert!(
            max_abs_diff(
                earlier(bidirectional(before)),
                earlier(bidirectional(after))
            ) > 1e-4
        );
    }
}

#[test]
fn padding_is_neither_attended_nor_embedded() {
    let head = head::<B>(NormPosition::Post, 40);
    let memory = head.memory(features::<B>(1));
    let decode = |t| head.decode_with(&head.transformer, memory.clone(), t, &[4], false);
    let a = decode(tokens(&[&[1, 7, 9, 2, 0, 0]]));
    let b = decode(tokens(&[&[1, 7, 9, 2, 5, 6]]));
    let valid = |x: Tensor<B, 3>| x.slice([0..1, 0..4, 0..40]);
    assert!(max_abs_diff(valid(a), valid(b)) < 1e-6);
    let embedded = head.embedding.forward(tokens(&[&[1, 0, 3]]));
    let padded: f32 = embedded
        .slice([0..1, 1..2, 0..16])
        .abs()
        .max()
        .into_scalar();
    assert_eq!(padded, 0.0);
}

#[test]
fn incremental_decoding_equals_the_full_prefix() {
    for norm in [NormPosition::Post, NormPosition::Pre] {
        let head = head::<B>(norm, 40);
        let visual = features::<B>(2);
        let rows: [&[i64]; 2] = [&[1, 7, 9, 11, 2], &[1, 4, 4, 8, 5]];
        let full = head.forward(visual.clone(), tokens(&rows), &[5, 5]);
        let mut cache = head.start(visual);
        for position in 0..5 {
            let column: Vec<i64> = rows.iter().map(|r| r[position]).collect();
            let step =
                Tensor::<B, 1, Int>::from_data(TensorData::new(column, [2]), &Default::default());
            let (logits, weights) = head.step(step, position, &mut cache);
            let want = full
                .clone()
                .slice([0..2, position..position + 1, 0..40])
                .squeeze_dim::<2>(1);
            assert!(
                max_abs_diff(logits, want) < 1e-5,
                "{norm:?} position {position}"
            );
            assert_eq!(
                weights.dims(),
                [2, 2, 4],
                "cross-attention over the 2×2 grid"
            );
        }
    }
}

/// The ids of every parameter of a module.
struct Ids(Vec<ParamId>);

impl<Bk: Backend> ModuleVisitor<Bk> for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        self.0.push(param.id);
    }
}

fn ids<Bk: Backend, M: Module<Bk>>(module: &M) -> Vec<ParamId> {
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

fn bicaptioning_config(vocab: usize) -> PretrainingModelConfig {
    PretrainingModelConfig {
        task: PretrainingTask::Bicaptioning,
        visual: ResNetArch::Resnet18,
        textual: TextualHeadName::Transformer {
            norm: NormPosition::Post,
            size: SIZE,
        },
        vocab_size: vocab,
        max_caption_length: 30,
        dropout: 0.1,
    }
}

#[test]
fn bicaptioning_shares_everything_but_the_backward_layers() {
    let model = bicaptioning_config(40)
        .init::<AD>(&Default::default())
        .unwrap();
    let head = model.transformer_head().unwrap();
    let backward = &model.backward_textual.as_ref().unwrap().transformer;
    // The backward layers start as a copy, under their own parameter ids.
    let (forward_ids, backward_ids) = (ids(&head.transformer), ids(backward));
    assert!(forward_ids.iter().all(|id| !backward_ids.contains(id)));
    let first =
        |t: &virtex_text::decoder::TransformerDecoder<AD>| t.layers[0].linear1.weight.val().inner();
    assert!(
        max_abs_diff(
            first(&head.transformer).reshape([-1]),
            first(backward).reshape([-1])
        ) == 0.0
    );
    // Everything else exists once: the model's parameters are the backbone,
    // the forward head and one more decoder.
    assert_eq!(
        model.num_params(),
        model.visual.num_params() + head.num_params() + backward.num_params()
    );

    // Both directions' losses reach the shared word embedding, and the tied
    // output layer reaches rows no input token looks up.
    let device = Default::default();
    let input = PretrainingInput::<AD> {
        images: Tensor::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device),
        forward: tokens(&[&[1, 7, 9, 2], &[1, 8, 2, 0]]),
        backward: tokens(&[&[2, 9, 7, 1], &[2, 8, 1, 0]]),
        lengths: vec![4, 3],
        targets: PretrainingTargets::Captions,
    };
    let output = model.forward(&input).unwrap();
    assert_eq!(output.components.len(), 2);
    let grads = output.components[1].1.backward();
    let words = &head.embedding.words.weight;
    let grad = words
        .grad(&grads)
        .expect("the backward loss reaches the shared embedding");
    let row: f32 = grad.slice([30..31, 0..16]).abs().sum().into_scalar();
    assert!(
        row > 0.0,
        "token 30 is never input; only the tied output can move it"
    );

    // Each direction's layers get their own gradient from the total loss:
    // the copy is its own autodiff leaf, not the forward layers' tensor.
    // (No dropout here: other tests draw from the same global generator.)
    let model = PretrainingModelConfig {
        dropout: 0.0,
        ..bicaptioning_config(40)
    }
    .init::<AD>(&device)
    .unwrap();
    let head = model.transformer_head().unwrap();
    let backward = &model.backward_textual.as_ref().unwrap().transformer;
    let output = model.forward(&input).unwrap();
    let grads = GradientsParams::from_grads(output.loss.backward(), &model);
    let forward_only = model.forward(&input).unwrap().components[0].1.clone();
    let forward_grads = GradientsParams::from_grads(forward_only.backward(), &model);
    let weight = |t: &virtex_text::decoder::TransformerDecoder<AD>| t.layers[0].linear1.weight.id;
    let backward_grad = grads
        .get::<B, 2>(weight(backward))
        .expect("the backward layers have a gradient on the first step");
    let forward_total = grads.get::<B, 2>(weight(&head.transformer)).unwrap();
    let forward_alone = forward_grads
        .get::<B, 2>(weight(&head.transformer))
        .unwrap();
    assert!(backward_grad.abs().max().into_scalar() > 0.0);
    assert!(
        max_abs_diff(forward_total.reshape([-1]), forward_alone.reshape([-1])) < 1e-4,
        "the forward layers' gradient is the forward loss's alone"
    );
}

#[test]
fn classification_and_masked_lm_models_train_on_their_targets() {
    let device = Default::default();
    let images = Tensor::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let caption = tokens::<AD>(&[&[1, 7, 9, 2], &[1, 8, 2, 0]]);
    for (task, textual, outputs) in [
        (
            PretrainingTask::TokenClassification,
            TextualHeadName::Linear,
            40,
        ),
        (
            PretrainingTask::MultilabelClassification,
            TextualHeadName::Linear,
            81,
        ),
        (
            PretrainingTask::MaskedLm,
            bicaptioning_config(40).textual,
            40,
        ),
    ] {
        let model = PretrainingModelConfig {
            task,
            textual,
            vocab_size: outputs,
            ..bicaptioning_config(40)
        }
        .init::<AD>(&device)
        .unwrap();
        let input = PretrainingInput::<AD> {
            images: images.clone(),
            forward: caption.clone(),
            backward: caption.clone(),
            lengths: vec![4, 3],
            targets: match task {
                PretrainingTask::MaskedLm => PretrainingTargets::MaskedLm {
                    tokens: tokens(&[&[1, 3, 9, 2], &[1, 3, 2, 0]]),
                    labels: tokens(&[&[0, 7, 0, 0], &[0, 8, 0, 0]]),
                },
                _ => PretrainingTargets::Labels(tokens(&[&[7, 9], &[8, 0]])),
            },
        };
        let output = model.forward(&input).unwrap();
        assert_eq!(output.components[0].0, task.to_string());
        let loss: f32 = output.loss.clone().into_scalar();
        assert!(loss.is_finite() && loss > 0.0, "{task}: {loss}");
        assert!(
            model
                .visual
                .conv1
                .weight
                .grad(&output.loss.backward())
                .is_some(),
            "{task}"
        );
        // A batch carrying another task's targets (a loader set up for
        // another task) is an error naming both, not a panic mid-forward.
        let captions = PretrainingInput {
            targets: PretrainingTargets::Captions,
            ..input
        };
        let err = model.forward(&captions).unwrap_err().to_string();
        assert!(
            err.contains(&task.to_string())
                && err.contains(task.targets())
                && err.contains("captions"),
            "{err}"
        );
    }
    let wrong = PretrainingModelConfig {
        task: PretrainingTask::Captioning,
        textual: TextualHeadName::Linear,
        ..bicaptioning_config(40)
    };
    let err = wrong.init::<B>(&device).unwrap_err().to_string();
    assert!(err.contains("captioning") && err.contains("none"), "{err}");
}

#[test]
fn a_tiny_trained_model_decodes_its_training_captions() {
    let mut head = head::<AD>(NormPosition::Post, 40);
    let visual = features::<AD>(2);
    let captions: [&[i64]; 2] = [&[1, 12, 5, 30, 2], &[1, 7, 22, 9, 2]];
    let input = tokens::<AD>(&captions);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..150 {
        let logits = head.forward(visual.clone(), input.clone(), &[5, 5]);
        let loss = virtex_text::losses::cross_entropy_ignoring_padding(
            logits.slice([0..2, 0..4, 0..40]),
            input.clone().slice([0..2, 1..5]),
        );
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optimizer.step(3e-3, head, grads);
    }
    let head = head.valid();
    let visual = visual.inner();
    let want: Vec<Vec<u32>> = captions
        .iter()
        .map(|c| c[1..4].iter().map(|&t| t as u32).collect())
        .collect();
    for strategy in [
        DecodingStrategy::Greedy,
        DecodingStrategy::default(),
        DecodingStrategy::Nucleus { top_p: 0.9 },
    ] {
        let decoder = CaptionDecoder {
            strategy,
            ..CaptionDecoder::default()
        };
        let got: Vec<Vec<u32>> = decoder
            .decode(&head, visual.clone(), &mut StdRng::seed_from_u64(0))
            .into_iter()
            .map(|c| c.tokens)
            .collect();
        assert_eq!(got, want, "{strategy:?}");
    }
}
