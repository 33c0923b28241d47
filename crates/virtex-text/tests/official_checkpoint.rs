//! A checkpoint written by the reference's model code (see
//! tools/fixtures/make_virtex_text_fixture.py) loads, and gives the same
//! losses and the same greedy and beam-search captions.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::Flex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use virtex_text::decoder::TransformerDecoder;
use virtex_text::decoding::{BeamPrefix, CaptionDecoder, DecodingStrategy};
use virtex_text::models::{BackwardTextualHead, PretrainingInput, PretrainingTargets, TextualHead};
use virtex_text::pytorch::{CheckpointError, CheckpointParts, load_virtex_checkpoint};
use virtex_text::{PretrainingModel, PretrainingTask, TextualHeadName, TransformerTextualHead};
use virtex_vision::{ResNetArch, ResNetConfig, VisionError};

type B = Flex;

#[derive(Deserialize)]
struct Expected {
    textual: String,
    vocab_size: usize,
    features_shape: [usize; 4],
    features: Vec<f32>,
    forward: Vec<Vec<i64>>,
    backward: Vec<Vec<i64>>,
    lengths: Vec<usize>,
    loss: f32,
    captioning_forward: f32,
    captioning_backward: f32,
    greedy: Vec<Vec<u32>>,
    beam: Vec<Vec<u32>>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures/virtex_text")
        .join(name)
}

fn expected() -> Expected {
    serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap()
}

/// A bicaptioning model shaped like the fixture: its heads read 64-channel
/// features (the fixture has no backbone; a ResNet-18 stands in unused).
fn fixture_model(expected: &Expected) -> PretrainingModel<B> {
    let device = Default::default();
    let TextualHeadName::Transformer { norm, size } = expected.textual.parse().unwrap() else {
        panic!("fixture has a transformer head");
    };
    let channels = expected.features_shape[1];
    PretrainingModel {
        visual: ResNetConfig::virtex(ResNetArch::Resnet18).init(&device),
        textual: TextualHead::Transformer(TransformerTextualHead::new(
            channels,
            expected.vocab_size,
            30, // the reference's DATA.MAX_CAPTION_LENGTH
            &size,
            norm,
            0.1,
            &device,
        )),
        backward_textual: Some(BackwardTextualHead {
            transformer: TransformerDecoder::new(&size, norm, 0.1, &device),
        }),
        task: PretrainingTask::Bicaptioning,
    }
}

fn tokens(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(
        TensorData::new(flat, [rows.len(), rows[0].len()]),
        &Default::default(),
    )
}

#[test]
fn the_reference_checkpoint_gives_the_reference_losses_and_captions() {
    let expected = expected();
    let model = load_virtex_checkpoint(
        fixture_model(&expected),
        &fixture("bicaptioning_L2_H32_A2_F128.pth"),
        CheckpointParts::TextualOnly,
    )
    .unwrap();
    let device = Default::default();
    let features = Tensor::<B, 4>::from_data(
        TensorData::new(expected.features.clone(), expected.features_shape),
        &device,
    );
    let input = PretrainingInput {
        images: Tensor::zeros([expected.lengths.len(), 3, 32, 32], &device),
        forward: tokens(&expected.forward),
        backward: tokens(&expected.backward),
        lengths: expected.lengths.clone(),
        targets: PretrainingTargets::Captions,
    };
    let output = model.forward_features(features.clone(), &input).unwrap();
    let relative = |got: Tensor<B, 1>, want: f32| {
        let got: f32 = got.into_scalar();
        ((got - want) / want).abs()
    };
    assert!(relative(output.loss, expected.loss) < 1e-4);
    let names: Vec<&str> = output.components.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["captioning_forward", "captioning_backward"]);
    assert!(relative(output.components[0].1.clone(), expected.captioning_forward) < 1e-4);
    assert!(relative(output.components[1].1.clone(), expected.captioning_backward) < 1e-4);

    let head = model.transformer_head().unwrap();
    let rng = StdRng::seed_from_u64(0);
    let decode = |strategy| {
        CaptionDecoder {
            strategy,
            ..CaptionDecoder::default()
        }
        .decode(head, features.clone(), &mut rng.clone())
        .into_iter()
        .map(|c| c.tokens)
        .collect::<Vec<_>>()
    };
    assert_eq!(decode(DecodingStrategy::Greedy), expected.greedy);
    // The fixture's search keeps [SOS] in the prefix (beam_search.rs tests
    // the reference's, which drops it).
    let keep_sos = DecodingStrategy::Beam {
        beam_size: 5,
        per_node_beam_size: 2,
        prefix: BeamPrefix::KeepSos,
    };
    assert_eq!(decode(keep_sos), expected.beam);
    assert_ne!(
        expected.greedy, expected.beam,
        "the fixture tells the two apart"
    );
}

#[test]
fn a_missing_or_untied_key_is_named() {
    let expected = expected();
    // Loading the full model demands the backbone the fixture does not have.
    let err = load_virtex_checkpoint(
        fixture_model(&expected),
        &fixture("bicaptioning_L2_H32_A2_F128.pth"),
        CheckpointParts::Full,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("missing keys") && message.contains("visual.cnn.conv1.weight"),
        "{message}"
    );
    // A model without the backward head finds the file's backward keys unexpected.
    let mut model = fixture_model(&expected);
    model.backward_textual = None;
    let err = load_virtex_checkpoint(
        model,
        &fixture("bicaptioning_L2_H32_A2_F128.pth"),
        CheckpointParts::TextualOnly,
    )
    .unwrap_err();
    // The message names a few of them; the error holds them all.
    let key = "backward_textual.transformer.layers.0.self_attn.in_proj_weight";
    assert!(
        matches!(&err, CheckpointError::Keys(VisionError::UnexpectedKeys { keys, .. })
            if keys.iter().any(|k| k == key)),
        "{err}"
    );
    assert!(err.to_string().contains("unexpected keys (36): "), "{err}");
}
