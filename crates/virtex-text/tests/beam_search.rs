//! Beam search gives, token for token, the captions of the reference's
//! `AutoRegressiveBeamSearch` on a randomly initialised head whose beams
//! compete (tools/fixtures/make_beam_search_fixture.py), under the
//! reference's prefix convention ([SOS] dropped after the first step) and
//! under the one that keeps it; the two disagree on most of the images.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::Flex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use virtex_text::TransformerTextualHead;
use virtex_text::decoding::{BeamPrefix, CaptionDecoder, DecodingStrategy};

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
