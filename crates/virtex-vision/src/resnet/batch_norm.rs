//! BatchNorm for `[batch, channels, H, W]` activations: torchvision's settings,
//! and an inference forward with half the passes of burn's.
//!
//! With running statistics, burn's `BatchNorm::forward` subtracts the mean,
//! divides by the deviation, multiplies by γ and adds β: four passes over the
//! activations. Folding the four per-channel factors first leaves one
//! multiply and one add (both in place on an unshared input), which is what
//! frozen feature extraction and captioning run. Training keeps burn's
//! forward: a version with fewer passes (batch axis reduced first,
//! normalisation by per-channel factors) measured the same as burn's on the
//! training step (docs/benchmarks.md).

use burn::module::Initializer;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// BatchNorm with torchvision's settings (eps 1e-5, momentum 0.1), γ = 1 (or 0), β = 0.
pub(crate) fn batch_norm<B: Backend>(
    channels: usize,
    zero_gamma: bool,
    device: &B::Device,
) -> BatchNorm<B> {
    let mut bn = BatchNormConfig::new(channels)
        .with_epsilon(1e-5)
        .with_momentum(0.1)
        .init(device);
    if zero_gamma {
        bn.gamma = Initializer::Zeros.init([channels], device);
    }
    bn
}

/// `bn` applied to `x`: burn's `BatchNorm::forward` (batch statistics and
/// an update of the running ones) when the backend tracks gradients; with
/// the running statistics otherwise, as `x·s + (β − μ·s)` with
/// `s = γ / √(σ² + ε)`.
///
/// # Shapes
/// - `x`: `[batch, channels, H, W]` → `[batch, channels, H, W]`
pub(crate) fn batch_norm_2d<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if B::ad_enabled(&x.device()) {
        return bn.forward(x);
    }
    let channels = x.dims()[1];
    let per_channel = |t: Tensor<B, 1>| t.reshape([1, channels, 1, 1]);
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    x * per_channel(scale) + per_channel(shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    /// A BatchNorm with non-trivial γ, β and running statistics.
    fn bn<B: Backend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
        let mut bn = batch_norm::<B>(channels, false, device);
        let ramp = |scale: f32, offset: f32| {
            let values: Vec<f32> = (0..channels).map(|c| offset + scale * c as f32).collect();
            Tensor::<B, 1>::from_floats(values.as_slice(), device)
        };
        bn.gamma = bn.gamma.map(|_| ramp(0.25, 0.5));
        bn.beta = bn.beta.map(|_| ramp(-0.1, 0.3));
        bn.running_mean.update(ramp(0.05, -0.2));
        bn.running_var.update(ramp(0.3, 0.7));
        bn
    }

    #[test]
    fn inference_forward_matches_burns_batch_norm() {
        let device = Default::default();
        let bn = bn::<Flex>(3, &device);
        let x = Tensor::<Flex, 4>::random([2, 3, 4, 4], Distribution::Normal(0.5, 3.0), &device);
        batch_norm_2d(&bn, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&bn.forward(x).into_data(), Tolerance::absolute(1e-5));
    }
}
