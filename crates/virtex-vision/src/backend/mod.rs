//! The one operation a ResNet needs beyond burn's `Backend`: training-mode
//! BatchNorm as a single op each way.
//!
//! burn 0.21 has no BatchNorm op: `burn::nn::BatchNorm` composes it from
//! tensor ops (two permuted copies and four full-size intermediates forward,
//! as many again in the autodiff backward), which on the CPU made BatchNorm
//! cost more than all of ResNet-50's convolutions together. PyTorch runs one
//! kernel each way. [`VisionBackend`] is that op as a backend extension, the
//! way burn extends a backend with a custom kernel: the models are generic
//! over `B: VisionBackend`, every backend the project runs implements it, and
//! `Autodiff<B>` gives the op its own backward ([`autodiff`]).
//!
//! - Flex (the CPU backend, feature `flex`, on by default) runs fused kernels
//!   ([`flex`]): two passes over the activations forward, three backward.
//! - NdArray (feature `ndarray`) and CUDA (feature `cuda`) take the trait's
//!   default, the same formulas as tensor ops ([`composed`]).

pub mod autodiff;
pub mod composed;
#[cfg(feature = "flex")]
pub mod flex;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;

/// What [`VisionBackend::batch_norm_train`] returns.
#[derive(Debug)]
pub struct BatchNormForward<B: Backend> {
    /// The normalised, scaled and shifted activations, `[batch, channels, H, W]`.
    pub output: FloatTensor<B>,
    /// Each channel's batch mean, `[channels]`.
    pub mean: FloatTensor<B>,
    /// Each channel's biased batch variance (÷ n, the one the normalisation
    /// uses), `[channels]`.
    pub var: FloatTensor<B>,
}

/// What [`VisionBackend::batch_norm_train_backward`] returns.
#[derive(Debug)]
pub struct BatchNormGradients<B: Backend> {
    /// The input's gradient, `[batch, channels, H, W]`.
    pub x: FloatTensor<B>,
    /// γ's gradient, `[channels]`.
    pub gamma: FloatTensor<B>,
    /// β's gradient, `[channels]`.
    pub beta: FloatTensor<B>,
}

/// A burn backend with a training-mode BatchNorm op.
///
/// The defaults compose the op from tensor ops; a backend overrides them
/// with kernels of its own.
pub trait VisionBackend: Backend {
    /// BatchNorm with batch statistics: each channel of `x` normalised by
    /// its mean and biased variance over batch and positions, then
    /// `· γ + β`.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, H, W]`; `gamma`, `beta`: `[channels]`
    /// - output `[batch, channels, H, W]`, mean and variance `[channels]`
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormForward<Self> {
        composed::batch_norm_train::<Self>(x, gamma, beta, epsilon)
    }

    /// The gradients of [`VisionBackend::batch_norm_train`] from the
    /// output's gradient `grad`, given the forward's input, γ and batch
    /// statistics.
    ///
    /// # Shapes
    /// - `x`, `grad`: `[batch, channels, H, W]`; `gamma`, `mean`, `var`: `[channels]`
    fn batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> BatchNormGradients<Self> {
        composed::batch_norm_train_backward::<Self>(x, gamma, mean, var, epsilon, grad)
    }
}

/// An autodiff backend whose inner backend is a [`VisionBackend`] too (for
/// validation and evaluation on `B::InnerBackend`): what training needs.
pub trait AutodiffVisionBackend:
    AutodiffBackend<InnerBackend: VisionBackend> + VisionBackend
{
}

impl<B> AutodiffVisionBackend for B
where
    B: AutodiffBackend + VisionBackend,
    B::InnerBackend: VisionBackend,
{
}

#[cfg(feature = "ndarray")]
impl VisionBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl VisionBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl VisionBackend for burn::backend::Wgpu {}
