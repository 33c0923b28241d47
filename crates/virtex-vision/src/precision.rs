//! Mixed precision, as PyTorch's autocast does it for the reference's
//! `AMP: true`: convolutions and matrix products compute in a 16-bit float
//! type, everything else (BatchNorm and its statistics, LayerNorm, softmax,
//! the loss, the optimiser and its master weights) stays in f32.
//!
//! A [`Precision::Bf16`] operation casts its input and a bf16 copy of its
//! weights down, computes, and casts the result back up, so every tensor
//! between two such operations is f32 and no operation ever sees two float
//! types at once. The casts are differentiable: the gradients reach the f32
//! weights in f32. bf16 has f32's exponent range, so unlike fp16 it needs no
//! loss scaling (PyTorch's `GradScaler`).

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::PaddedConvOptions;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The float type convolutions and matrix products compute in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32 (the reference with `AMP: false`).
    #[default]
    F32,
    /// Convolutions and matrix products in bf16, the rest in f32.
    Bf16,
}

impl Precision {
    /// The dtype the products compute in, if not the tensors' own.
    fn compute_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }

    /// `conv.forward(x)`, computed in this precision.
    ///
    /// # Shapes
    /// - `x`: `[batch, in, H, W]` → `[batch, out, H', W']`, f32 in and out
    pub fn conv2d<B: Backend>(self, conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let Some(dtype) = self.compute_dtype() else {
            return conv.forward(x);
        };
        let [_, _, height, width] = x.dims();
        let ((top, bottom), (left, right)) = padding_pairs(conv, height, width);
        let options = PaddedConvOptions::asymmetric(
            conv.stride,
            [top, left],
            [bottom, right],
            conv.dilation,
            conv.groups,
        );
        conv2d(
            x.cast(dtype),
            conv.weight.val().cast(dtype),
            conv.bias.as_ref().map(|bias| bias.val().cast(dtype)),
            options,
        )
        .cast(FloatDType::F32)
    }

    /// `linear_layer.forward(x)`, computed in this precision.
    ///
    /// # Shapes
    /// - `x`: `[…, d_in]` → `[…, d_out]`, f32 in and out
    pub fn linear<B: Backend, const D: usize>(
        self,
        linear_layer: &Linear<B>,
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        self.linear_weights(
            x,
            linear_layer.weight.val(),
            linear_layer.bias.as_ref().map(|bias| bias.val()),
        )
    }

    /// `x · weight + bias` (burn's `linear`, weight `[d_in, d_out]`),
    /// computed in this precision.
    ///
    /// # Shapes
    /// - `x`: `[…, d_in]` → `[…, d_out]`, f32 in and out
    pub fn linear_weights<B: Backend, const D: usize>(
        self,
        x: Tensor<B, D>,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Tensor<B, D> {
        if D == 1 {
            // burn's `linear` computes a vector as a single row: guard it as one.
            return self
                .linear_weights(x.unsqueeze::<2>(), weight, bias)
                .squeeze_dim(0);
        }
        without_vector_kernels(x, weight, bias, |x, weight, bias| {
            match self.compute_dtype() {
                None => linear(x, weight, bias),
                Some(dtype) => linear(
                    x.cast(dtype),
                    weight.cast(dtype),
                    bias.map(|bias| bias.cast(dtype)),
                )
                .cast(FloatDType::F32),
            }
        })
    }

    /// `lhs.matmul(rhs)`, computed in this precision.
    ///
    /// # Shapes
    /// - `lhs`: `[…, n, k]`, `rhs`: `[…, k, m]` → `[…, n, m]`, f32 in and out
    pub fn matmul<B: Backend, const D: usize>(
        self,
        lhs: Tensor<B, D>,
        rhs: Tensor<B, D>,
    ) -> Tensor<B, D> {
        without_vector_kernels(lhs, rhs, None, |lhs, rhs, _| match self.compute_dtype() {
            None => lhs.matmul(rhs),
            Some(dtype) => lhs
                .cast(dtype)
                .matmul(rhs.cast(dtype))
                .cast(FloatDType::F32),
        })
    }
}

/// `product(lhs, rhs, bias)`, a matrix product `lhs` `[…, rows, k]` ·
/// `rhs` `[…, k, columns]` (+ `bias` `[columns]`); on a CubeCL backend
/// (CUDA, wgpu) a single row or a single column is padded with zeros to two
/// first and the result cut back.
///
/// CubeCL's autotune sends a product with one row (`[…, 1, k]`, the
/// decoding step's shape) or one column (attention over one grid cell or
/// one past token) to cubek-matmul 0.2's vector-matrix kernels, and under
/// burn's fusion those give wrong results, e.g. for one row when the matrix
/// is stored transposed as the tied output layer's `wordsᵀ` is
/// (tracel-ai/cubek#262, fixed after the release burn 0.21 pins), and for
/// one column (tracel-ai/burn#5122); docs/stack.md, "Vector products on
/// CubeCL". Two rows and two columns take the general kernels. Other
/// backends keep their own products, so their results do not move. burn
/// offers no typed way to ask a generic backend for its kernels, so the
/// backend is recognised by its name (`cubecl<…>`, inside `fusion<…>` or
/// `autodiff<…>`), read only when a side is a vector.
fn without_vector_kernels<B: Backend, const D: usize, const W: usize>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, W>,
    bias: Option<Tensor<B, 1>>,
    product: impl FnOnce(Tensor<B, D>, Tensor<B, W>, Option<Tensor<B, 1>>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let one_row = lhs.dims()[D - 2] == 1;
    let one_column = rhs.dims()[W - 1] == 1;
    if !(one_row || one_column) || !B::name(&lhs.device()).contains("cubecl<") {
        return product(lhs, rhs, bias);
    }
    let out = product(
        padded_to_two(lhs, D - 2, one_row),
        padded_to_two(rhs, W - 1, one_column),
        bias.map(|bias| padded_to_two(bias, 0, one_column)),
    );
    let out = if one_row {
        out.narrow(D - 2, 0, 1)
    } else {
        out
    };
    if one_column {
        out.narrow(D - 1, 0, 1)
    } else {
        out
    }
}

/// `tensor` with a slice of zeros appended along `dim` when `pad`.
fn padded_to_two<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
    dim: usize,
    pad: bool,
) -> Tensor<B, D> {
    if pad {
        Tensor::cat(vec![tensor.clone(), tensor.zeros_like()], dim)
    } else {
        tensor
    }
}

/// `conv`'s padding as `((top, bottom), (left, right))` for an input of
/// `height × width`, as `Conv2d::forward` computes it (burn-nn 0.21 keeps
/// that helper private).
fn padding_pairs<B: Backend>(
    conv: &Conv2d<B>,
    height: usize,
    width: usize,
) -> ((usize, usize), (usize, usize)) {
    // One side of `Same`: the padding that keeps `ceil(size / stride)` outputs.
    let same = |kernel: usize, stride: usize, size: usize| {
        let out = size.div_ceil(stride);
        let total = match out {
            0 => 0,
            out => ((out - 1) * stride + kernel).saturating_sub(size),
        };
        (total / 2, total - total / 2)
    };
    match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (
            same(conv.kernel_size[0], conv.stride[0], height),
            same(conv.kernel_size[1], conv.stride[1], width),
        ),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::nn::LinearConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{DType, Distribution, Tolerance};
    use burn_flex::Flex;

    type B = Autodiff<Flex>;

    /// Largest difference relative to the largest magnitude.
    fn relative_error<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
        let scale: f32 = b.clone().abs().max().into_scalar();
        let diff: f32 = (a - b).abs().max().into_scalar();
        diff / scale
    }

    #[test]
    fn bf16_convolution_and_its_gradients_follow_f32_and_stay_f32_outside() {
        let device = Default::default();
        let conv = Conv2dConfig::new([3, 8], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init::<B>(&device);
        let x = Tensor::<B, 4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let run = |precision: Precision| {
            let y = precision.conv2d(&conv, x.clone());
            assert_eq!(y.dtype(), DType::F32);
            let grads = y.clone().powi_scalar(2).sum().backward();
            let weight_grad = conv.weight.grad(&grads).unwrap();
            assert_eq!(
                weight_grad.dtype(),
                DType::F32,
                "the master weights' gradient"
            );
            (y.inner(), weight_grad, x.grad(&grads).unwrap())
        };
        let (y32, w32, x32) = run(Precision::F32);
        let (y16, w16, x16) = run(Precision::Bf16);
        assert_eq!(y16.dims(), [2, 8, 5, 5]);
        // bf16 keeps 8 bits of mantissa: ~0.4% per value, more through sums.
        for (name, error) in [
            ("output", relative_error(y16, y32.clone())),
            ("weight gradient", relative_error(w16, w32)),
            ("input gradient", relative_error(x16, x32)),
        ] {
            assert!(error < 0.03, "{name}: {error}");
            assert!(error > 0.0, "{name}: computed in bf16, so not bit-equal");
        }
        // F32 is the module's own forward; Bf16 pads as it does, `Same` included.
        y32.into_data().assert_approx_eq::<f32>(
            &conv.forward(x.clone()).inner().into_data(),
            Tolerance::absolute(0.0),
        );
        for padding in [PaddingConfig2d::Same, PaddingConfig2d::Valid] {
            let mut conv = conv.clone();
            conv.padding = padding;
            assert_eq!(
                Precision::Bf16.conv2d(&conv, x.clone()).dims(),
                conv.forward(x.clone()).dims(),
            );
        }
    }

    #[test]
    fn bf16_linear_and_matmul_follow_f32() {
        let device = Default::default();
        let layer = LinearConfig::new(16, 4).init::<B>(&device);
        let x = Tensor::<B, 3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let [a, b] = [Precision::F32, Precision::Bf16].map(|p| p.linear(&layer, x.clone()).inner());
        assert_eq!(b.dtype(), DType::F32);
        assert!(relative_error(b, a) < 0.03);
        let m = Tensor::<B, 3>::random([2, 16, 7], Distribution::Normal(0.0, 1.0), &device);
        let [a, b] =
            [Precision::F32, Precision::Bf16].map(|p| p.matmul(x.clone(), m.clone()).inner());
        assert_eq!(b.dims(), [2, 5, 7]);
        assert!(relative_error(b, a) < 0.03);
    }
}
