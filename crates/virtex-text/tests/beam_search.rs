//! Beam search gives, token for token, the captions of the reference's
//! `AutoRegressiveBeamSearch` on a randomly initialised head whose beams
//! compete (tools/fixtures/make_beam_search_fixture.py), under the
//! reference's prefix convention ([SOS] dropped after the first step) and
//! under the one that keeps it; the two disagree on most of the images.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use virtex_text::checkpoint::{CheckpointParts, load_virtex_checkpoint};
use virtex_text::decoding::{BeamPrefix, CaptionDecoder, DecodingStrategy};
use virtex_text::models::TextualHead;
use virtex_text::{PretrainingModel, PretrainingTask, TextualHeadName, TransformerTextualHead};
use virtex_vision::{ResNetArch, ResNetConfig};

type B = Flex;

#[derive(Deserialize)]
struct Expected {
    textual: String,
    vocab_size: usize,
    features_shape: [usize; 4],
    features: Vec<f32>,
    beam_drop_sos: Vec<Vec<u32>>,
    beam_keep_sos: Vec<Vec<u32>>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures/beam_search")
        .join(name)
}

#[test]
fn beam_search_reproduces_the_reference_under_both_prefix_conventions() {
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let device = Default::default();
    let TextualHeadName::Transformer { norm, size } = expected.textual.parse().unwrap() else {
        panic!("the fixture has a transformer head");
    };
    // The fixture's head reads 64-channel grids and has no backbone; a
    // ResNet-18 stands in, unused.
    let model = PretrainingModel::<B> {
        visual: ResNetConfig::virtex(ResNetArch::Resnet18).init(&device),
        textual: TextualHead::Transformer(TransformerTextualHead::new(
            expected.features_shape[1],
            expected.vocab_size,
            30,
            &size,
            norm,
            0.0,
            &device,
        )),
        backward_textual: None,
        task: PretrainingTask::Captioning,
    };
    let model = load_virtex_checkpoint(
        model,
        &fixture("forward_L2_H32_A2_F64_V3000.pth"),
        CheckpointParts::TextualOnly,
    )
    .unwrap();
    let head = model.transformer_head().unwrap();
    let features = Tensor::<B, 4>::from_data(
        TensorData::new(expected.features.clone(), expected.features_shape),
        &device,
    );
    let decode = |prefix| {
        CaptionDecoder {
            strategy: DecodingStrategy::Beam {
                beam_size: 5,
                per_node_beam_size: 2,
                prefix,
            },
            ..CaptionDecoder::default()
        }
        .decode(head, features.clone(), &mut StdRng::seed_from_u64(0))
        .into_iter()
        .map(|c| c.tokens)
        .collect::<Vec<_>>()
    };
    assert_eq!(decode(BeamPrefix::KeepSos), expected.beam_keep_sos);
    assert_eq!(decode(BeamPrefix::DropSos), expected.beam_drop_sos);
    let differ = expected
        .beam_drop_sos
        .iter()
        .zip(&expected.beam_keep_sos)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differ * 2 >= expected.beam_drop_sos.len(),
        "the fixture tells the conventions apart ({differ} images differ)"
    );
}
