//! Linear layers with their leading dimensions folded into the rows.
//!
//! burn-backend 0.21's default `linear` broadcasts the weight to the input's
//! rank and runs one small matmul per leading index, and its
//! `linear_weight_backward` materialises one `[d_input, d_output]` product per
//! leading index before summing them: for a `[batch, tokens, d]` input that is
//! `batch` times the weight gradient's memory and `batch` GEMMs with
//! `k = tokens`. burn-backend 0.22 folds the leading dimensions into the rows
//! instead (`flatten_leading` in its `modules/linear.rs`); this module is that
//! fix for Flex, where a reshape of a contiguous tensor is free.

use alloc::vec::Vec;
use burn_backend::{TensorMetadata, ops::FloatTensorOps, tensor::FloatTensor};
use burn_std::Shape;

use crate::Flex;

/// `[..., d]` → `[rows, d]`.
fn flatten_leading(tensor: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let shape = tensor.shape();
    let ndims = shape.num_dims();
    if ndims == 2 {
        return tensor;
    }
    let d_last = shape[ndims - 1];
    let rows = shape.num_elements() / d_last;
    Flex::float_reshape(tensor, Shape::new([rows, d_last]))
}

/// `y = x @ weight (+ bias)` for `x: [..., d_input]`, `weight: [d_input,
/// d_output]`, `bias: [d_output]`, as one `[rows, d_input] @ [d_input,
/// d_output]` matmul.
pub(crate) fn linear(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    bias: Option<FloatTensor<Flex>>,
) -> FloatTensor<Flex> {
    let shape = x.shape();
    let ndims = shape.num_dims();
    let d_output = weight.shape()[1];
    let mut output = Flex::float_matmul(flatten_leading(x), weight);
    if let Some(bias) = bias {
        output = Flex::float_add(output, Flex::float_reshape(bias, Shape::new([1, d_output])));
    }
    if ndims == 2 {
        return output;
    }
    let dims: Vec<usize> = (0..ndims - 1).map(|i| shape[i]).chain([d_output]).collect();
    Flex::float_reshape(output, Shape::from(dims))
}

/// `dx = output_grad @ weight^T`.
pub(crate) fn linear_x_backward(
    weight: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
) -> FloatTensor<Flex> {
    linear(output_grad, Flex::float_swap_dims(weight, 0, 1), None)
}

/// `dW = x^T @ output_grad` over the flattened rows: the flattening is the
/// sum over the leading dimensions.
pub(crate) fn linear_weight_backward(
    x: FloatTensor<Flex>,
    output_grad: FloatTensor<Flex>,
) -> FloatTensor<Flex> {
    let x = Flex::float_swap_dims(flatten_leading(x), 0, 1);
    Flex::float_matmul(x, flatten_leading(output_grad))
}

/// `db = output_grad` summed over every dimension but the last, in one
/// reduction.
pub(crate) fn linear_bias_backward(output_grad: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let shape = output_grad.shape();
    let d_output = shape[shape.num_dims() - 1];
    let grad = Flex::float_sum_dim(flatten_leading(output_grad), 0);
    Flex::float_reshape(grad, Shape::new([d_output]))
}
