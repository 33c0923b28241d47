//! Beam search gives, token for token, the captions of the reference's
//! `AutoRegressiveBeamSearch` on a randomly initialised head whose beams
//! compete (tools/fixtures/make_beam_search_fixture.py), under the
//! reference's prefix convention ([SOS] dropped after the first step) and
//! under the one that keeps it; the two disagree on most of the images. The
//! prior penalty and the backward decoder's ranking change them as described.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::Flex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use virtex_data::caption::{CaptionTokens, MAX_CAPTION_LENGTH};
use virtex_text::decoder::TransformerDecoder;
use virtex_text::decoding::{BeamPrefix, CaptionDecoder, DecodingStrategy};
use virtex_text::losses::next_token_loss;
use virtex_text::{TextualHeadName, TransformerTextualHead};

mod beam_fixture;

type B = Flex;

#[test]
fn beam_search_reproduces_the_reference_under_both_prefix_conventions() {
    let (model, features, expected) = beam_fixture::fixture_model::<B>(&Default::default());
    let head = model.transformer_head().unwrap();
    let decode = |prefix| beam_fixture::beam_tokens(head, features.clone(), prefix);
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

/// First-step log-probabilities `[image][token]` after `[SOS]`.
fn first_log_probs(head: &TransformerTextualHead<B>, features: Tensor<B, 4>) -> Vec<Vec<f32>> {
    let batch = features.dims()[0];
    let device = features.device();
    let mut cache = head.start(features);
    let sos = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![1i64; batch], [batch]), &device);
    let (logits, _) = head.step(sos, 0, &mut cache);
    let logits = log_softmax(logits, 1).into_data().to_vec::<f32>().unwrap();
    logits
        .chunks(logits.len() / batch)
        .map(<[f32]>::to_vec)
        .collect()
}

#[test]
fn the_prior_penalty_picks_the_first_token_by_mutual_information() {
    let (model, features, _) = beam_fixture::fixture_model::<B>(&Default::default());
    let head = model.transformer_head().unwrap();
    let with_image = first_log_probs(head, features.clone());
    let without = first_log_probs(head, features.zeros_like());
    let greedy = |penalty| {
        CaptionDecoder {
            strategy: DecodingStrategy::Greedy,
            prior_penalty: penalty,
            ..CaptionDecoder::default()
        }
        .decode(head, features.clone(), &mut StdRng::seed_from_u64(0))
        .into_iter()
        .map(|c| c.tokens)
        .collect::<Vec<_>>()
    };
    let plain = greedy(0.0);
    let penalised = greedy(1.0);
    for (image, caption) in penalised.iter().enumerate() {
        // [SOS] (id 1) is banned as the first token, as a repeat.
        let best = (0..with_image[image].len())
            .filter(|&t| t != 1)
            .max_by(|&a, &b| {
                let score = |t: usize| with_image[image][t] - without[image][t];
                score(a).total_cmp(&score(b))
            })
            .unwrap();
        assert_eq!(caption[0] as usize, best, "image {image}");
    }
    let moved = plain
        .iter()
        .zip(&penalised)
        .filter(|(a, b)| a[0] != b[0])
        .count();
    assert!(moved > 0, "the penalty changes some first tokens");
    // Beam search opens with one of the best five penalised first tokens.
    let beams = CaptionDecoder {
        prior_penalty: 1.0,
        ..CaptionDecoder::default()
    }
    .decode(head, features, &mut StdRng::seed_from_u64(0));
    for (image, caption) in beams.iter().enumerate() {
        let score = |t: usize| with_image[image][t] - without[image][t];
        let above = (0..with_image[image].len())
            .filter(|&t| score(t) > score(caption.tokens[0] as usize))
            .count();
        assert!(above < 5, "image {image}: {above} better first tokens");
    }
}

/// `log p(tokens read backwards | image)` by the training loss: the
/// backward decoder's mean next-token loss over the training target
/// (virtex-data's framing), times its predictions.
fn backward_log_prob(
    head: &TransformerTextualHead<B>,
    backward: &TransformerDecoder<B>,
    image: Tensor<B, 4>,
    tokens: &[u32],
) -> f32 {
    let target = CaptionTokens::from_pieces(1, tokens.iter().copied(), 2, MAX_CAPTION_LENGTH);
    let sequence: Vec<i64> = target.backward.iter().map(|&t| i64::from(t)).collect();
    let length = sequence.len();
    let sequence =
        Tensor::<B, 2, Int>::from_data(TensorData::new(sequence, [1, length]), &image.device());
    let logits = head.decode_with(
        backward,
        head.memory(image),
        sequence.clone(),
        &[length],
        true,
    );
    -next_token_loss(logits, sequence).into_scalar() * (length - 1) as f32
}

#[test]
fn the_backward_weight_ranks_the_final_beams_by_the_backward_decoder() {
    let device = Default::default();
    let (model, features, expected) = beam_fixture::fixture_model::<B>(&device);
    let head = model.transformer_head().unwrap();
    let TextualHeadName::Transformer { norm, size } = expected.textual.parse().unwrap() else {
        panic!("the fixture has a transformer head");
    };
    B::seed(&device, 0);
    let backward = TransformerDecoder::<B>::new(&size, norm, 0.0, &device);
    let decode = |weight| {
        CaptionDecoder {
            backward_weight: weight,
            ..CaptionDecoder::default()
        }
        .decode_bicaptioning(
            head,
            Some(&backward),
            features.clone(),
            &mut StdRng::seed_from_u64(0),
        )
        .into_iter()
        .map(|c| c.tokens)
        .collect::<Vec<_>>()
    };
    // Weight 0 is the reference's search, backward decoder or not.
    let forward_best = decode(0.0);
    assert_eq!(forward_best, expected.beam_keep_sos);
    // A weight this large lets the backward decoder alone choose among the
    // final beams: never a caption it finds less likely than the forward best.
    let backward_best = decode(1e4);
    let mut changed = 0;
    for (image, (chosen, first)) in backward_best.iter().zip(&forward_best).enumerate() {
        let image_features = features.clone().narrow(0, image, 1);
        let chosen_score = backward_log_prob(head, &backward, image_features.clone(), chosen);
        let first_score = backward_log_prob(head, &backward, image_features, first);
        assert!(
            chosen_score >= first_score - 1e-3,
            "image {image}: {chosen:?} ({chosen_score}) below {first:?} ({first_score})"
        );
        changed += usize::from(chosen != first);
    }
    assert!(
        changed > 0,
        "the backward decoder prefers another beam somewhere"
    );
}
