//! The beam-search fixture (tools/fixtures/make_beam_search_fixture.py): a
//! randomly initialised forward head of the reference whose beams compete,
//! its visual features and the reference's captions. Shared by this crate's
//! beam-search tests and virtex-train's wgpu tests (`#[path]`), which decode
//! it on another backend.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use virtex_text::decoding::{BeamPrefix, CaptionDecoder, DecodingStrategy};
use virtex_text::models::TextualHead;
use virtex_text::pytorch::{CheckpointParts, load_virtex_checkpoint};
use virtex_text::{PretrainingModel, PretrainingTask, TextualHeadName, TransformerTextualHead};
use virtex_vision::{ResNetArch, ResNetConfig};

/// `expected.json`: the head's size, its input and the reference's tokens.
#[derive(Deserialize)]
pub struct Expected {
    pub textual: String,
    pub vocab_size: usize,
    pub features_shape: [usize; 4],
    pub features: Vec<f32>,
    /// `AutoRegressiveBeamSearch` with [SOS] dropped after the first step.
    pub beam_drop_sos: Vec<Vec<u32>>,
    /// The same with [SOS] kept.
    pub beam_keep_sos: Vec<Vec<u32>>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fixtures/beam_search")
        .join(name)
}

/// The fixture's head (inside a model: a ResNet-18 stands in, unused) and
/// its visual features `[8, 64, 3, 3]`, on `device`.
pub fn fixture_model<B: Backend>(
    device: &B::Device,
) -> (PretrainingModel<B>, Tensor<B, 4>, Expected) {
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let TextualHeadName::Transformer { norm, size } = expected.textual.parse().unwrap() else {
        panic!("the fixture has a transformer head");
    };
    // The fixture's head reads 64-channel grids and has no backbone.
    let model = PretrainingModel::<B> {
        visual: ResNetConfig::virtex(ResNetArch::Resnet18).init(device),
        textual: TextualHead::Transformer(TransformerTextualHead::new(
            expected.features_shape[1],
            expected.vocab_size,
            30,
            &size,
            norm,
            0.0,
            device,
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
    let features = Tensor::<B, 4>::from_data(
        TensorData::new(expected.features.clone(), expected.features_shape),
        device,
    );
    (model, features, expected)
}

/// Each image's tokens from the reference's search on the fixture (beam 5,
/// 2 per node) under `prefix`, decoding `features` `[batch, C, h, w]` with
/// `head`.
pub fn beam_tokens<B: Backend>(
    head: &TransformerTextualHead<B>,
    features: Tensor<B, 4>,
    prefix: BeamPrefix,
) -> Vec<Vec<u32>> {
    CaptionDecoder {
        strategy: DecodingStrategy::Beam {
            beam_size: 5,
            per_node_beam_size: 2,
            prefix,
        },
        ..CaptionDecoder::default()
    }
    .decode(head, features, &mut StdRng::seed_from_u64(0))
    .into_iter()
    .map(|c| c.tokens)
    .collect()
}
