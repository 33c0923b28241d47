//! [`VisionBackend`](super::VisionBackend)'s defaults: training BatchNorm
//! from tensor ops, for backends without a kernel of their own.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{BatchNormForward, BatchNormGradients};

/// A float primitive as a tensor.
pub(crate) fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A float tensor's primitive.
pub(crate) fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// Sums over batch and positions: `[batch, channels, H, W]` → `[channels]`.
fn channel_sums<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 1> {
    let channels = x.dims()[1];
    x.sum_dim(0).sum_dim(2).sum_dim(3).reshape([channels])
}

/// `[channels]` → `[1, channels, 1, 1]`, to broadcast over activations.
fn per_channel<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 4> {
    let channels = t.dims()[0];
    t.reshape([1, channels, 1, 1])
}

/// The values a channel is normalised over: batch × H × W.
fn count(dims: [usize; 4]) -> f64 {
    (dims[0] * dims[2] * dims[3]) as f64
}

/// See [`VisionBackend::batch_norm_train`](super::VisionBackend::batch_norm_train).
pub fn batch_norm_train<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> BatchNormForward<B> {
    let x = tensor::<B, 4>(x);
    let n = count(x.dims());
    let mean = channel_sums(x.clone()).div_scalar(n);
    let centered = x - per_channel(mean.clone());
    let var = channel_sums(centered.clone().square()).div_scalar(n);
    let scale = tensor::<B, 1>(gamma) / var.clone().add_scalar(epsilon).sqrt();
    let output = centered * per_channel(scale) + per_channel(tensor(beta));
    BatchNormForward {
        output: primitive(output),
        mean: primitive(mean),
        var: primitive(var),
    }
}

/// See [`VisionBackend::batch_norm_train_backward`](super::VisionBackend::batch_norm_train_backward):
/// with `x̂ = (x − μ)/σ` and `n` values per channel,
/// `∂β = Σ g`, `∂γ = Σ g·x̂`, `∂x = γ/σ · (g − ∂β/n − x̂·∂γ/n)`.
pub fn batch_norm_train_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    epsilon: f64,
    grad: FloatTensor<B>,
) -> BatchNormGradients<B> {
    let (x, grad) = (tensor::<B, 4>(x), tensor::<B, 4>(grad));
    let n = count(x.dims());
    let inv_std = tensor::<B, 1>(var).add_scalar(epsilon).sqrt().recip();
    let normalized = (x - per_channel(tensor(mean))) * per_channel(inv_std.clone());
    let grad_beta = channel_sums(grad.clone());
    let grad_gamma = channel_sums(grad.clone() * normalized.clone());
    let grad_x = (grad
        - per_channel(grad_beta.clone().div_scalar(n))
        - normalized * per_channel(grad_gamma.clone().div_scalar(n)))
        * per_channel(tensor::<B, 1>(gamma) * inv_std);
    BatchNormGradients {
        x: primitive(grad_x),
        gamma: primitive(grad_gamma),
        beta: primitive(grad_beta),
    }
}
