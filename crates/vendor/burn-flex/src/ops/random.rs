//! Random tensors (`float_random` in f32 and f64, `int_random`; half
//! precision keeps burn-backend's `TensorData::random`).
//!
//! burn-backend's `TensorData::random` builds a new distribution sampler for
//! every element (`Element::random` is `distribution.sampler(rng).sample()`)
//! and draws a 64-bit word per Bernoulli trial. Dropout asks for a Bernoulli
//! mask the size of its input on every training step, so here the sampler
//! is built once per tensor, and Bernoulli trials are decided on 32-bit words
//! that the generator writes in bulk (ChaCha's block function fills whole
//! buffers far faster than it answers one word at a time).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{Distribution, Element, ElementConversion, TensorData};
use burn_std::Shape;
use burn_std::rand::RngExt;

use crate::backend::{FlexRng, SEED, get_seeded_rng};

/// Words drawn per bulk fill: 16 KiB, which stays in L1.
const BERNOULLI_CHUNK: usize = 4096;

/// Runs `draw` with the backend's generator: the one `Backend::seed` stored,
/// or one seeded from entropy when none was. The generator is stored back
/// afterwards, so the random ops after a `seed` call form one reproducible
/// stream.
pub(crate) fn with_backend_rng<T>(draw: impl FnOnce(&mut FlexRng) -> T) -> T {
    let mut seed = SEED.lock().unwrap();
    draw(seed.get_or_insert_with(get_seeded_rng))
}

/// A tensor of `shape` sampled from `distribution` with `rng`.
pub(crate) fn random<E>(shape: Shape, distribution: Distribution, rng: &mut FlexRng) -> TensorData
where
    E: Element + rand::distr::uniform::SampleUniform,
    rand::distr::StandardUniform: rand::distr::Distribution<E>,
{
    let numel = shape.num_elements();
    let values: Vec<E> = match distribution {
        Distribution::Bernoulli(prob) => bernoulli(numel, prob, rng),
        _ => {
            let mut sampler = distribution.sampler::<_, E>(rng);
            (0..numel).map(|_| sampler.sample()).collect()
        }
    };
    TensorData::new(values, shape)
}

/// `numel` Bernoulli trials that are 1 with probability `prob`: a uniform
/// 32-bit word `w` gives 1 when `w < prob · 2³²` (so `prob` is resolved to
/// 2⁻³², and 0 and 1 are exact).
///
/// # Panics
/// When `prob` is not in `[0, 1]`, as `rand::distr::Bernoulli::new` does.
fn bernoulli<E: Element>(numel: usize, prob: f64, rng: &mut FlexRng) -> Vec<E> {
    assert!(
        (0.0..=1.0).contains(&prob),
        "Bernoulli probability must be in [0, 1], got {prob}"
    );
    let threshold = (prob * 4_294_967_296.0) as u64;
    let (one, zero) = (1.elem::<E>(), 0.elem::<E>());
    let mut values = Vec::with_capacity(numel);
    let mut words = vec![0u32; BERNOULLI_CHUNK.min(numel)];
    let mut left = numel;
    while left > 0 {
        let words = &mut words[..BERNOULLI_CHUNK.min(left)];
        rng.fill(words);
        values.extend(words.iter().map(|&word| {
            if u64::from(word) < threshold {
                one
            } else {
                zero
            }
        }));
        left -= words.len();
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::rand::SeedableRng;

    fn mean(data: &TensorData) -> f64 {
        let values = data.as_slice::<f32>().unwrap();
        values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
    }

    #[test]
    fn bernoulli_trials_are_zero_or_one_at_the_requested_rate() {
        let mut rng = FlexRng::seed_from_u64(7);
        // 3 chunks and a remainder.
        let shape = Shape::new([3, 4096 + 123]);
        for prob in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let data = random::<f32>(shape.clone(), Distribution::Bernoulli(prob), &mut rng);
            assert_eq!(data.shape, shape);
            let values = data.as_slice::<f32>().unwrap();
            assert!(values.iter().all(|&v| v == 0.0 || v == 1.0));
            // 12,657 trials: the standard error of the rate is at most 0.0045.
            assert!(
                (mean(&data) - prob).abs() < 0.02,
                "p = {prob}: rate {}",
                mean(&data)
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_tensor() {
        for distribution in [
            Distribution::Bernoulli(0.3),
            Distribution::Uniform(-2.0, 3.0),
            Distribution::Normal(1.0, 0.5),
            Distribution::Default,
        ] {
            let draw = |seed| {
                let mut rng = FlexRng::seed_from_u64(seed);
                random::<f32>(Shape::new([5000]), distribution, &mut rng)
            };
            assert_eq!(draw(11), draw(11));
            assert_ne!(draw(11), draw(12));
        }
    }

    #[test]
    fn other_distributions_keep_their_parameters() {
        let mut rng = FlexRng::seed_from_u64(3);
        let uniform = random::<f32>(
            Shape::new([20_000]),
            Distribution::Uniform(-2.0, 3.0),
            &mut rng,
        );
        let values = uniform.as_slice::<f32>().unwrap();
        assert!(values.iter().all(|&v| (-2.0..3.0).contains(&v)));
        assert!((mean(&uniform) - 0.5).abs() < 0.05);

        let normal = random::<f32>(
            Shape::new([20_000]),
            Distribution::Normal(1.0, 0.5),
            &mut rng,
        );
        let m = mean(&normal);
        let values = normal.as_slice::<f32>().unwrap();
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - m).powi(2))
            .sum::<f64>()
            / 20_000.0;
        assert!(
            (m - 1.0).abs() < 0.02 && (var.sqrt() - 0.5).abs() < 0.02,
            "{m} {var}"
        );
    }

    #[test]
    #[should_panic(expected = "Bernoulli probability must be in [0, 1], got 1.5")]
    fn a_probability_above_one_is_refused() {
        let mut rng = FlexRng::seed_from_u64(0);
        random::<f32>(Shape::new([4]), Distribution::Bernoulli(1.5), &mut rng);
    }
}
