//! Flex (burn's CPU backend) as a [`VisionBackend`]: training BatchNorm as
//! fused f32 kernels, parallel over channels and planes with rayon.
//!
//! Forward: one pass per channel gathers its mean, a second (from cache: one
//! channel of ResNet-50's largest activation at batch 8 is 400 KB) its
//! variance, then one pass per `H×W` plane writes `x·s + t`. Backward: one
//! pass per channel gathers `Σ g` and `Σ g·(x − μ)`, one per plane writes the
//! input's gradient. Other float types take the composed default.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use burn_flex::Flex;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{BatchNormForward, BatchNormGradients, VisionBackend, composed};

/// Values a rayon task should cover at least, so small activations (the
/// 2×2 planes of a 64² ResNet) are not split into microsecond tasks.
const MIN_TASK_VALUES: usize = 1 << 14;

/// Independent partial sums per reduction, so the loop vectorises.
const LANES: usize = 16;

impl VisionBackend for Flex {
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormForward<Self> {
        let Some(planes) = Planes::of(&x) else {
            return composed::batch_norm_train::<Self>(x, gamma, beta, epsilon);
        };
        let x = x.to_contiguous();
        let (gamma, beta) = (f32s(&gamma), f32s(&beta));
        let xs = x.as_slice::<f32>().expect("contiguous f32");
        let stats: Vec<(f32, f32)> = planes.per_channel(|c| {
            let mean = planes.channel(xs, c).map(sum).sum::<f64>() / planes.count();
            let centred = planes
                .channel(xs, c)
                .map(|plane| sum_squared_deviations(plane, mean as f32))
                .sum::<f64>();
            (mean as f32, (centred / planes.count()) as f32)
        });
        let affine: Vec<(f32, f32)> = stats
            .iter()
            .enumerate()
            .map(|(c, &(mean, var))| {
                let scale = gamma[c] / (var + epsilon as f32).sqrt();
                (scale, beta[c] - mean * scale)
            })
            .collect();
        let output = planes.map(xs, None, |c, x_plane, _, out| {
            let (scale, shift) = affine[c];
            for (o, &x) in out.iter_mut().zip(x_plane) {
                *o = x * scale + shift;
            }
        });
        let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        BatchNormForward {
            output: planes.tensor(output),
            mean: vector(mean),
            var: vector(var),
        }
    }

    fn batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> BatchNormGradients<Self> {
        let (Some(planes), Some(_)) = (Planes::of(&x), Planes::of(&grad)) else {
            return composed::batch_norm_train_backward::<Self>(x, gamma, mean, var, epsilon, grad);
        };
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let (xs, gs) = (
            x.as_slice::<f32>().expect("contiguous f32"),
            grad.as_slice::<f32>().expect("contiguous f32"),
        );
        let (gamma, mean, var) = (f32s(&gamma), f32s(&mean), f32s(&var));
        // Σ g and Σ g·(x − μ) per channel.
        let sums: Vec<(f64, f64)> = planes.per_channel(|c| {
            planes
                .channel(xs, c)
                .zip(planes.channel(gs, c))
                .map(|(x_plane, g_plane)| sum_and_dot_deviations(g_plane, x_plane, mean[c]))
                .fold((0.0, 0.0), |(a, b), (s, d)| (a + s, b + d))
        });
        let n = planes.count();
        let mut grad_gamma = Vec::with_capacity(planes.channels);
        let mut grad_beta = Vec::with_capacity(planes.channels);
        // ∂x = k·(g − Σg/n − x̂·Σ(g·x̂)/n) with k = γ/σ and x̂ = (x − μ)/σ,
        // per channel k·g + b·(x − μ) + offset (centred before scaling, so
        // a large mean does not cancel).
        let coefficients: Vec<(f32, f32, f32)> = sums
            .iter()
            .enumerate()
            .map(|(c, &(sum_g, sum_g_dev))| {
                let inv_std = 1.0 / (f64::from(var[c]) + epsilon).sqrt();
                grad_beta.push(sum_g as f32);
                grad_gamma.push((sum_g_dev * inv_std) as f32);
                let k = f64::from(gamma[c]) * inv_std;
                let b = -k * sum_g_dev * inv_std * inv_std / n;
                let offset = -k * sum_g / n;
                (k as f32, b as f32, offset as f32)
            })
            .collect();
        let grad_x = planes.map(xs, Some(gs), |c, x_plane, g_plane, out| {
            let (k, b, offset) = coefficients[c];
            let mean = mean[c];
            for ((o, &x), &g) in out.iter_mut().zip(x_plane).zip(g_plane) {
                *o = k * g + b * (x - mean) + offset;
            }
        });
        BatchNormGradients {
            x: planes.tensor(grad_x),
            gamma: vector(grad_gamma),
            beta: vector(grad_beta),
        }
    }
}

/// An f32 `[batch, channels, H, W]` activation seen as `batch × channels`
/// planes of `H×W` values.
#[derive(Clone, Copy, Debug)]
struct Planes {
    shape: [usize; 4],
    channels: usize,
    plane: usize,
}

impl Planes {
    /// `None` unless `x` is a rank-4 f32 tensor.
    fn of(x: &FlexTensor) -> Option<Self> {
        let shape = x.shape();
        if shape.num_dims() != 4 || x.dtype() != DType::F32 {
            return None;
        }
        let shape = [shape[0], shape[1], shape[2], shape[3]];
        Some(Self {
            shape,
            channels: shape[1],
            plane: shape[2] * shape[3],
        })
    }

    /// Values per channel: batch × H × W.
    fn count(&self) -> f64 {
        (self.shape[0] * self.plane) as f64
    }

    /// Channel `c`'s planes of `values`, one per image.
    fn channel<'a>(&self, values: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.shape[0]).map(move |image| {
            let start = (image * channels + c) * plane;
            &values[start..start + plane]
        })
    }

    /// `per_channel(c)` for every channel, in parallel.
    fn per_channel<T: Send>(&self, per_channel: impl Fn(usize) -> T + Send + Sync) -> Vec<T> {
        let channel_values = self.shape[0] * self.plane;
        (0..self.channels)
            .into_par_iter()
            .with_min_len(MIN_TASK_VALUES.div_ceil(channel_values.max(1)))
            .map(per_channel)
            .collect()
    }

    /// A new activation, each plane written by `write(channel, x plane,
    /// other plane, output plane)` in parallel (`other` is `x` when absent).
    fn map(
        &self,
        xs: &[f32],
        other: Option<&[f32]>,
        write: impl Fn(usize, &[f32], &[f32], &mut [f32]) + Send + Sync,
    ) -> Vec<f32> {
        let other = other.unwrap_or(xs);
        let mut out = vec![0.0f32; xs.len()];
        if self.plane == 0 {
            return out;
        }
        out.par_chunks_mut(self.plane)
            .with_min_len(MIN_TASK_VALUES.div_ceil(self.plane))
            .enumerate()
            .for_each(|(i, out_plane)| {
                let range = i * self.plane..(i + 1) * self.plane;
                write(
                    i % self.channels,
                    &xs[range.clone()],
                    &other[range],
                    out_plane,
                );
            });
        out
    }

    /// `values` as a tensor of this shape.
    fn tensor(&self, values: Vec<f32>) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, Shape::from(self.shape.to_vec())))
    }
}

/// A `[channels]` tensor's values as f32.
fn f32s(t: &FlexTensor) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 values")
}

/// `[len]` tensor of `values`.
fn vector(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    FlexTensor::from_data(TensorData::new(values, [len]))
}

/// Sums `f(x)` over `xs` in [`LANES`] independent partial sums.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    total(lanes, tail)
}

/// The sum of partial sums and the tail's.
fn total(lanes: [f32; LANES], tail: f32) -> f64 {
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(tail)
}

/// `Σ x`.
fn sum(xs: &[f32]) -> f64 {
    lane_sum(xs, |x| x)
}

/// `Σ (x − mean)²`.
fn sum_squared_deviations(xs: &[f32], mean: f32) -> f64 {
    lane_sum(xs, |x| (x - mean) * (x - mean))
}

/// `(Σ g, Σ g·(x − mean))`.
fn sum_and_dot_deviations(gs: &[f32], xs: &[f32], mean: f32) -> (f64, f64) {
    let mut sums = [0.0f32; LANES];
    let mut dots = [0.0f32; LANES];
    let (g_chunks, x_chunks) = (gs.chunks_exact(LANES), xs.chunks_exact(LANES));
    let (mut sum_tail, mut dot_tail) = (0.0f32, 0.0f32);
    for (&g, &x) in g_chunks.remainder().iter().zip(x_chunks.remainder()) {
        sum_tail += g;
        dot_tail += g * (x - mean);
    }
    for (g_chunk, x_chunk) in g_chunks.zip(x_chunks) {
        for i in 0..LANES {
            sums[i] += g_chunk[i];
            dots[i] += g_chunk[i] * (x_chunk[i] - mean);
        }
    }
    (total(sums, sum_tail), total(dots, dot_tail))
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Distribution, Tensor, Tolerance};
    use burn_flex::Flex;

    use super::composed::{primitive, tensor};
    use super::*;

    type A = Autodiff<Flex>;

    /// The fused op against burn's `BatchNorm` (tensor ops under autodiff):
    /// output and the gradients of input, γ and β, on an input with an
    /// offset mean, odd sizes (lane remainders) and a permuted layout.
    #[test]
    fn fused_op_and_its_backward_match_burns_batch_norm() {
        let device = Default::default();
        for [n, c, h, w] in [[3, 5, 4, 7], [2, 3, 1, 1], [4, 2, 6, 6]] {
            let x =
                Tensor::<Flex, 4>::random([n, h, w, c], Distribution::Normal(2.0, 3.0), &device)
                    .permute([0, 3, 1, 2]);
            let ramp = |scale: f32, offset: f32| {
                let values: Vec<f32> = (0..c).map(|i| offset + scale * i as f32).collect();
                Tensor::<Flex, 1>::from_floats(values.as_slice(), &device)
            };
            let (gamma, beta) = (ramp(0.5, 0.25), ramp(-0.3, 0.1));
            let grad =
                Tensor::<Flex, 4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);

            let mut bn = BatchNormConfig::new(c)
                .with_epsilon(1e-5)
                .init::<A>(&device);
            bn.gamma = bn
                .gamma
                .map(|_| Tensor::from_inner(gamma.clone()).require_grad());
            bn.beta = bn
                .beta
                .map(|_| Tensor::from_inner(beta.clone()).require_grad());
            let x_tracked = Tensor::<A, 4>::from_inner(x.clone()).require_grad();
            let expected = bn.forward(x_tracked.clone());
            let grads = (expected.clone() * Tensor::from_inner(grad.clone()))
                .sum()
                .backward();

            let forward = Flex::batch_norm_train(
                primitive(x.clone()),
                primitive(gamma.clone()),
                primitive(beta),
                1e-5,
            );
            let tolerance = Tolerance::absolute(2e-4);
            tensor::<Flex, 4>(forward.output)
                .into_data()
                .assert_approx_eq::<f32>(&expected.inner().into_data(), tolerance);
            let gradients = Flex::batch_norm_train_backward(
                primitive(x),
                primitive(gamma),
                forward.mean,
                forward.var,
                1e-5,
                primitive(grad),
            );
            tensor::<Flex, 4>(gradients.x)
                .into_data()
                .assert_approx_eq::<f32>(&x_tracked.grad(&grads).unwrap().into_data(), tolerance);
            tensor::<Flex, 1>(gradients.gamma)
                .into_data()
                .assert_approx_eq::<f32>(
                    &bn.gamma.val().grad(&grads).unwrap().into_data(),
                    tolerance,
                );
            tensor::<Flex, 1>(gradients.beta)
                .into_data()
                .assert_approx_eq::<f32>(
                    &bn.beta.val().grad(&grads).unwrap().into_data(),
                    tolerance,
                );
        }
    }

    /// The kernels and the composed default (what NdArray and CUDA run)
    /// agree, statistics included.
    #[test]
    fn fused_kernels_match_the_composed_default() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::random([4, 6, 5, 5], Distribution::Normal(-1.0, 2.0), &device);
        let gamma = Tensor::<Flex, 1>::random([6], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<Flex, 1>::random([6], Distribution::Normal(0.0, 0.5), &device);
        let grad = Tensor::<Flex, 4>::random([4, 6, 5, 5], Distribution::Normal(0.0, 1.0), &device);
        let p = |t: &Tensor<Flex, 4>| primitive(t.clone());
        let fused = Flex::batch_norm_train(
            p(&x),
            primitive(gamma.clone()),
            primitive(beta.clone()),
            1e-3,
        );
        let composed = composed::batch_norm_train::<Flex>(
            p(&x),
            primitive(gamma.clone()),
            primitive(beta),
            1e-3,
        );
        let close = |a: FloatTensor<Flex>, b: FloatTensor<Flex>| {
            tensor::<Flex, 1>(a.reshape(Shape::from(vec![a.shape().num_elements()])))
                .into_data()
                .assert_approx_eq::<f32>(
                    &tensor::<Flex, 1>(b.reshape(Shape::from(vec![b.shape().num_elements()])))
                        .into_data(),
                    Tolerance::absolute(1e-4),
                );
        };
        close(fused.output, composed.output);
        close(fused.mean.clone(), composed.mean);
        close(fused.var.clone(), composed.var);
        let fused = Flex::batch_norm_train_backward(
            p(&x),
            primitive(gamma.clone()),
            fused.mean.clone(),
            fused.var.clone(),
            1e-3,
            p(&grad),
        );
        let stats = Flex::batch_norm_train(
            p(&x),
            primitive(gamma.clone()),
            primitive(gamma.clone()),
            1e-3,
        );
        let composed = composed::batch_norm_train_backward::<Flex>(
            p(&x),
            primitive(gamma),
            stats.mean,
            stats.var,
            1e-3,
            p(&grad),
        );
        close(fused.x, composed.x);
        close(fused.gamma, composed.gamma);
        close(fused.beta, composed.beta);
    }
}
