//! BatchNorm for `[batch, channels, H, W]` activations: torchvision's
//! settings, the backend's training op, and an inference forward with half
//! the passes of burn's.
//!
//! Training runs [`VisionBackend::batch_norm_train`], one op each way
//! (burn's `BatchNorm::forward` composes it from a dozen tensor ops), and
//! updates the running statistics as PyTorch does: momentum 0.1, the
//! variance unbiased (÷ n − 1). With running statistics, burn's forward
//! subtracts the mean, divides by the deviation, multiplies by γ and adds β:
//! four passes over the activations. Folding the four per-channel factors
//! first leaves one multiply and one add (both in place on an unshared
//! input), which is what frozen feature extraction and captioning run.

use burn::module::Initializer;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::backend::VisionBackend;
use crate::backend::composed::{primitive, tensor};

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

/// `bn` applied to `x`: with batch statistics, updating the running ones,
/// when the backend tracks gradients; with the running statistics
/// otherwise, as `x·s + (β − μ·s)` with `s = γ / √(σ² + ε)`.
///
/// # Shapes
/// - `x`: `[batch, channels, H, W]` → `[batch, channels, H, W]`
pub(crate) fn batch_norm_2d<B: VisionBackend>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    if B::ad_enabled(&x.device()) {
        return batch_norm_train(bn, x);
    }
    let channels = x.dims()[1];
    let per_channel = |t: Tensor<B, 1>| t.reshape([1, channels, 1, 1]);
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    x * per_channel(scale) + per_channel(shift)
}

/// Training mode: the backend's op, then the running statistics' update
/// (`r ← (1 − m)·r + m·s`, with the unbiased variance as PyTorch's).
fn batch_norm_train<B: VisionBackend>(bn: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, _, height, width] = x.dims();
    let values = (batch * height * width) as f64;
    let forward = B::batch_norm_train(
        primitive(x),
        primitive(bn.gamma.val()),
        primitive(bn.beta.val()),
        bn.epsilon,
    );
    let statistic = |t| tensor::<B, 1>(t).detach();
    let unbiased = if values > 1.0 {
        values / (values - 1.0)
    } else {
        1.0
    };
    let momentum = bn.momentum;
    let device = bn.gamma.device();
    let running = |value: Tensor<B, 1>, batch: Tensor<B, 1>| {
        value
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.mul_scalar(momentum))
            .detach()
    };
    bn.running_mean.update(running(
        bn.running_mean.value_sync(),
        statistic(forward.mean),
    ));
    bn.running_var.update(running(
        bn.running_var.value_sync(),
        statistic(forward.var).mul_scalar(unbiased),
    ));
    tensor(forward.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use burn_flex::Flex;

    /// A BatchNorm with non-trivial γ, β and running statistics.
    fn bn<B: VisionBackend>(channels: usize, device: &B::Device) -> BatchNorm<B> {
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

    /// Under `Autodiff`, the training forward is one graph node whose
    /// backward hands the input, γ and β the gradients burn's composed
    /// `BatchNorm` gets.
    #[test]
    fn training_gradients_match_burns_batch_norm() {
        use burn::backend::Autodiff;
        type A = Autodiff<Flex>;
        let device = Default::default();
        let mut bn = bn::<A>(3, &device);
        bn.gamma = bn.gamma.map(|gamma| gamma.require_grad());
        bn.beta = bn.beta.map(|beta| beta.require_grad());
        let x = Tensor::<A, 4>::random([2, 3, 4, 5], Distribution::Normal(0.5, 3.0), &device)
            .require_grad();
        let weights = Tensor::<A, 4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        let ours = batch_norm_2d(&bn, x.clone());
        let theirs = bn.forward(x.clone());
        let tolerance = Tolerance::absolute(1e-4);
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.clone().into_data(), tolerance);
        let ours = (ours * weights.clone()).sum().backward();
        let theirs = (theirs * weights).sum().backward();
        for (name, ours, theirs) in [
            ("x", x.grad(&ours), x.grad(&theirs)),
            (
                "gamma",
                bn.gamma.val().grad(&ours).map(|g| g.reshape([1, 3, 1, 1])),
                bn.gamma
                    .val()
                    .grad(&theirs)
                    .map(|g| g.reshape([1, 3, 1, 1])),
            ),
            (
                "beta",
                bn.beta.val().grad(&ours).map(|g| g.reshape([1, 3, 1, 1])),
                bn.beta.val().grad(&theirs).map(|g| g.reshape([1, 3, 1, 1])),
            ),
        ] {
            let (ours, theirs) = (ours.expect(name), theirs.expect(name));
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), tolerance);
        }
    }

    /// A training forward updates the running statistics as PyTorch's
    /// `BatchNorm2d` does: `r ← 0.9·r + 0.1·s`, the variance unbiased.
    #[test]
    fn training_forward_updates_running_statistics_as_pytorch() {
        use burn::backend::Autodiff;
        let device = Default::default();
        let bn = bn::<Autodiff<Flex>>(2, &device);
        let (mean_before, var_before) = (
            bn.running_mean
                .value_sync()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
            bn.running_var
                .value_sync()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
        let x = Tensor::<Autodiff<Flex>, 4>::random(
            [3, 2, 2, 3],
            Distribution::Normal(1.0, 2.0),
            &device,
        );
        let values = x.clone().into_data().to_vec::<f32>().unwrap();
        batch_norm_2d(&bn, x);
        let mean_after = bn
            .running_mean
            .value_sync()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let var_after = bn
            .running_var
            .value_sync()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for c in 0..2 {
            let channel: Vec<f64> = (0..3)
                .flat_map(|n| (0..6).map(move |i| (n * 2 + c) * 6 + i))
                .map(|i| f64::from(values[i]))
                .collect();
            let mean = channel.iter().sum::<f64>() / 18.0;
            let unbiased = channel.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 17.0;
            let expected_mean = 0.9 * f64::from(mean_before[c]) + 0.1 * mean;
            let expected_var = 0.9 * f64::from(var_before[c]) + 0.1 * unbiased;
            assert!(
                (f64::from(mean_after[c]) - expected_mean).abs() < 1e-5,
                "mean {c}"
            );
            assert!(
                (f64::from(var_after[c]) - expected_var).abs() < 1e-5,
                "var {c}"
            );
        }
    }
}
