//! Loads the textual heads of a checkpoint written by the reference's model
//! code, computes the bicaptioning loss of six captions, and captions the six
//! feature grids with greedy decoding, printing the text.
//!
//! ```sh
//! cargo run -p virtex-text --example official_checkpoint
//! ```
//!
//! The checkpoint (`data/fixtures/virtex_text/bicaptioning_L2_H32_A2_F128.pth`,
//! made by `tools/fixtures/make_virtex_text_fixture.py`) has the official
//! layout (`{"model": state_dict}`, keys `textual.*` and `backward_textual.*`)
//! but no visual backbone: its heads read random `[6, 64, 3, 3]` "layer4"
//! grids, stored with the captions and the reference's results in
//! `expected.json` beside it. The heads were trained until they give each grid
//! its caption, so decoding should print the six captions back. A ResNet-18
//! stands in as the model's backbone and is never run: the model takes
//! tensors, and `PretrainingModel::forward_features` starts after the
//! backbone. Token ids are turned into text with the bundled emoji
//! vocabulary, which the fixture was made with.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::Flex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_text::decoder::TransformerDecoder;
use virtex_text::decoding::{CaptionDecoder, DecodingStrategy};
use virtex_text::models::{BackwardTextualHead, PretrainingInput, PretrainingTargets, TextualHead};
use virtex_text::pytorch::{CheckpointParts, load_virtex_checkpoint};
use virtex_text::{PretrainingModel, PretrainingTask, TextualHeadName, TransformerTextualHead};
use virtex_vision::{ResNetArch, ResNetConfig};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/fixtures/virtex_text"
);
const VOCABULARY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/vocab/emoji_1k.model"
);

/// The parts of `expected.json` this example reads.
#[derive(Deserialize)]
struct Fixture {
    textual: String,
    vocab_size: usize,
    features_shape: [usize; 4],
    features: Vec<f32>,
    captions: Vec<String>,
    forward: Vec<Vec<i64>>,
    backward: Vec<Vec<i64>>,
    lengths: Vec<usize>,
    loss: f32,
}

/// Token rows `[batch, T]`.
fn token_rows<B: Backend>(rows: &[Vec<i64>], device: &B::Device) -> Tensor<B, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), device)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixture: Fixture =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURE}/expected.json"))?)?;
    let device = Default::default();

    // A bicaptioning model shaped as the checkpoint: heads over 64 channels.
    let TextualHeadName::Transformer { norm, size } = fixture.textual.parse()? else {
        return Err("the fixture has a Transformer head".into());
    };
    let channels = fixture.features_shape[1];
    let model = PretrainingModel {
        visual: ResNetConfig::virtex(ResNetArch::Resnet18).init::<Flex>(&device),
        textual: TextualHead::Transformer(TransformerTextualHead::new(
            channels,
            fixture.vocab_size,
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
    };
    let checkpoint = format!("{FIXTURE}/bicaptioning_L2_H32_A2_F128.pth");
    let model = load_virtex_checkpoint(model, checkpoint.as_ref(), CheckpointParts::TextualOnly)?;

    let features = Tensor::<Flex, 4>::from_data(
        TensorData::new(fixture.features, fixture.features_shape),
        &device,
    ); // [6, 64, 3, 3]
    let input = PretrainingInput {
        images: Tensor::zeros([fixture.lengths.len(), 3, 32, 32], &device), // unused here
        forward: token_rows(&fixture.forward, &device),
        backward: token_rows(&fixture.backward, &device),
        lengths: fixture.lengths,
        targets: PretrainingTargets::Captions,
    };
    let output = model.forward_features(features.clone(), &input)?;
    let loss: f32 = output.loss.into_scalar();
    println!(
        "bicaptioning loss {loss:.6} (the reference's code: {:.6})",
        fixture.loss
    );

    let tokenizer = SentencePieceTokenizer::from_file(VOCABULARY)?;
    let head = model.transformer_head().ok_or("no Transformer head")?;
    let decoder = CaptionDecoder {
        strategy: DecodingStrategy::Greedy,
        ..CaptionDecoder::default()
    };
    let captions = decoder.decode(head, features, &mut StdRng::seed_from_u64(0));
    for (caption, trained_on) in captions.iter().zip(&fixture.captions) {
        println!(
            "{:>44}  (trained on: {trained_on})",
            tokenizer.decode(&caption.tokens)
        );
    }
    Ok(())
}
