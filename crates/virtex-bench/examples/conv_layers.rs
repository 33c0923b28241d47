//! Per-layer convolution timings on the CPU backend: forward, input gradient
//! and weight gradient, each beside burn-backend's default formulation of the
//! two gradients (a transposed convolution, and a convolution with batch and
//! channels swapped) that `crates/vendor/burn-flex` replaces.
//!
//! ```sh
//! cargo run --release -p virtex-bench --example conv_layers            # ResNet-50 layers, batch 8, 224²
//! cargo run --release -p virtex-bench --example conv_layers -- emoji   # ResNet-18 layers, batch 32, 64²
//! cargo run --release -p virtex-bench --example conv_layers -- all     # every ResNet-50 convolution, summed
//! cargo run --release -p virtex-bench --example conv_layers -- emoji-all  # every ResNet-18 convolution, b32, 64²
//! python3 tools/bench/conv_layers.py [emoji|all|emoji-all]      # the same in PyTorch
//! ```
//!
//! Best of three after one warm-up; GFLOP/s counts the forward's FLOPs for
//! all three. `all` (`emoji-all`) times each distinct convolution of a
//! ResNet-50 (the emoji row's ResNet-18) training step once (burn's defaults left out) and ends with the step's sums: each
//! shape times the number of layers that have it, and no input gradient for
//! the stem, whose input (the image) needs none.

use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::{
    ConvOptions, ConvTransposeOptions, FloatTensor, FloatTensorOps, ModuleOps,
};
use burn::tensor::{Distribution, Tensor, TensorPrimitive};
use burn_flex::Flex;

type B = Flex;

/// One layer: name, batch, input channels, input side, output channels,
/// kernel, stride, padding.
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const RESNET50: [Layer; 6] = [
    ("stem 7x7", 8, 3, 224, 64, 7, 2, 3),
    ("l1 1x1", 8, 64, 56, 256, 1, 1, 0),
    ("l1 3x3", 8, 64, 56, 64, 3, 1, 1),
    ("l2 3x3", 8, 128, 28, 128, 3, 1, 1),
    ("l3 3x3", 8, 256, 14, 256, 3, 1, 1),
    ("l4 1x1", 8, 2048, 7, 512, 1, 1, 0),
];

/// Every distinct convolution of ResNet-50 (torchvision v1.5: the stride on
/// the 3×3), batch 8 at 224², and how many layers have it (53 in all).
const RESNET50_ALL: [(Layer, usize); 23] = [
    (("stem 7x7", 8, 3, 224, 64, 7, 2, 3), 1),
    (("l1 1x1 64>64", 8, 64, 56, 64, 1, 1, 0), 1),
    (("l1 1x1 256>64", 8, 256, 56, 64, 1, 1, 0), 2),
    (("l1 3x3", 8, 64, 56, 64, 3, 1, 1), 3),
    (("l1 1x1 64>256", 8, 64, 56, 256, 1, 1, 0), 4),
    (("l2 1x1 256>128", 8, 256, 56, 128, 1, 1, 0), 1),
    (("l2 3x3 s2", 8, 128, 56, 128, 3, 2, 1), 1),
    (("l2 3x3", 8, 128, 28, 128, 3, 1, 1), 3),
    (("l2 1x1 128>512", 8, 128, 28, 512, 1, 1, 0), 4),
    (("l2 1x1 512>128", 8, 512, 28, 128, 1, 1, 0), 3),
    (("l2 down s2", 8, 256, 56, 512, 1, 2, 0), 1),
    (("l3 1x1 512>256", 8, 512, 28, 256, 1, 1, 0), 1),
    (("l3 3x3 s2", 8, 256, 28, 256, 3, 2, 1), 1),
    (("l3 3x3", 8, 256, 14, 256, 3, 1, 1), 5),
    (("l3 1x1 256>1024", 8, 256, 14, 1024, 1, 1, 0), 6),
    (("l3 1x1 1024>256", 8, 1024, 14, 256, 1, 1, 0), 5),
    (("l3 down s2", 8, 512, 28, 1024, 1, 2, 0), 1),
    (("l4 1x1 1024>512", 8, 1024, 14, 512, 1, 1, 0), 1),
    (("l4 3x3 s2", 8, 512, 14, 512, 3, 2, 1), 1),
    (("l4 3x3", 8, 512, 7, 512, 3, 1, 1), 2),
    (("l4 1x1 512>2048", 8, 512, 7, 2048, 1, 1, 0), 3),
    (("l4 1x1 2048>512", 8, 2048, 7, 512, 1, 1, 0), 2),
    (("l4 down s2", 8, 1024, 14, 2048, 1, 2, 0), 1),
];

/// Every distinct convolution of ResNet-18, batch 32 at 64² (`bench train`'s
/// emoji row), and how many layers have it (20 in all).
const RESNET18_EMOJI_ALL: [(Layer, usize); 11] = [
    (("stem 7x7", 32, 3, 64, 64, 7, 2, 3), 1),
    (("l1 3x3", 32, 64, 16, 64, 3, 1, 1), 4),
    (("l2 3x3 s2", 32, 64, 16, 128, 3, 2, 1), 1),
    (("l2 3x3", 32, 128, 8, 128, 3, 1, 1), 3),
    (("l2 down s2", 32, 64, 16, 128, 1, 2, 0), 1),
    (("l3 3x3 s2", 32, 128, 8, 256, 3, 2, 1), 1),
    (("l3 3x3", 32, 256, 4, 256, 3, 1, 1), 3),
    (("l3 down s2", 32, 128, 8, 256, 1, 2, 0), 1),
    (("l4 3x3 s2", 32, 256, 4, 512, 3, 2, 1), 1),
    (("l4 3x3", 32, 512, 2, 512, 3, 1, 1), 3),
    (("l4 down s2", 32, 256, 4, 512, 1, 2, 0), 1),
];

const RESNET18_EMOJI: [Layer; 5] = [
    ("stem 7x7", 32, 3, 64, 64, 7, 2, 3),
    ("l1 3x3", 32, 64, 16, 64, 3, 1, 1),
    ("l2 3x3", 32, 128, 8, 128, 3, 1, 1),
    ("l3 3x3", 32, 256, 4, 256, 3, 1, 1),
    ("l4 3x3", 32, 512, 2, 512, 3, 1, 1),
];

fn best_of_three(mut run: impl FnMut() -> FloatTensor<B>) -> f64 {
    let wait =
        |t: FloatTensor<B>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(t)).into_data();
    wait(run());
    (0..3)
        .map(|_| {
            let start = Instant::now();
            wait(run());
            start.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let device = Default::default();
    let mode = std::env::args().nth(1);
    let (layers, whole_network): (Vec<(Layer, usize)>, bool) = match mode.as_deref() {
        Some("emoji") => (RESNET18_EMOJI.iter().map(|&l| (l, 1)).collect(), false),
        Some("all") => (RESNET50_ALL.to_vec(), true),
        Some("emoji-all") => (RESNET18_EMOJI_ALL.to_vec(), true),
        _ => (RESNET50.iter().map(|&l| (l, 1)).collect(), false),
    };
    if whole_network {
        println!(
            "| layer | count | forward ms | input grad ms | weight grad ms | forward GFLOP/s |"
        );
        println!("|---|---|---|---|---|---|");
    } else {
        println!(
            "| layer | forward ms | input grad ms | weight grad ms | input grad, burn default ms | weight grad, burn default ms | forward GFLOP/s |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    let mut sums = [0.0; 3];
    for (i, &((name, n, c_in, side, c_out, k, s, p), count)) in layers.iter().enumerate() {
        let x = Tensor::<B, 4>::random(
            [n, c_in, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let w =
            Tensor::<B, 4>::random([c_out, c_in, k, k], Distribution::Normal(0.0, 0.1), &device);
        let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        let out = conv2d(x.clone(), w.clone(), None, options.clone()).dims();
        let g = Tensor::<B, 4>::random(out, Distribution::Normal(0.0, 1.0), &device);
        let (x, w, g) = (
            x.into_primitive().tensor(),
            w.into_primitive().tensor(),
            g.into_primitive().tensor(),
        );

        let forward = best_of_three(|| B::conv2d(x.clone(), w.clone(), None, options.clone()));
        let input_grad = best_of_three(|| {
            B::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone())
        });
        let weight_grad = best_of_three(|| {
            B::conv2d_weight_backward(x.clone(), w.clone(), g.clone(), options.clone())
        });
        let flops = 2.0 * (n * c_out * out[2] * out[3] * c_in * k * k) as f64;
        if whole_network {
            let stem = i == 0;
            sums[0] += forward * count as f64;
            sums[1] += if stem { 0.0 } else { input_grad * count as f64 };
            sums[2] += weight_grad * count as f64;
            println!(
                "| {name} | {count} | {:.1} | {:.1} | {:.1} | {:.1} |",
                forward * 1e3,
                input_grad * 1e3,
                weight_grad * 1e3,
                flops / forward / 1e9
            );
            continue;
        }
        // burn-backend 0.21's defaults, as `conv::conv2d_x_backward` and
        // `conv2d_weight_grad_no_groups` write them.
        let padding_out = side - ((out[2] - 1) * s + k - 2 * p);
        let transposed = ConvTransposeOptions::new([s, s], [p, p], [padding_out; 2], [1, 1], 1);
        let input_grad_default =
            best_of_three(|| B::conv_transpose2d(g.clone(), w.clone(), None, transposed.clone()));
        let swapped = ConvOptions::new([1, 1], [p, p], [s, s], 1);
        let weight_grad_default = best_of_three(|| {
            let grad = B::conv2d(
                B::float_swap_dims(x.clone(), 0, 1),
                B::float_swap_dims(g.clone(), 0, 1),
                None,
                swapped.clone(),
            );
            B::float_swap_dims(grad, 0, 1)
        });
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            forward * 1e3,
            input_grad * 1e3,
            weight_grad * 1e3,
            input_grad_default * 1e3,
            weight_grad_default * 1e3,
            flops / forward / 1e9
        );
    }
    if whole_network {
        println!(
            "| **step sum** | {} | {:.0} | {:.0} | {:.0} | total {:.0} ms |",
            layers.iter().map(|&(_, count)| count).sum::<usize>(),
            sums[0] * 1e3,
            sums[1] * 1e3,
            sums[2] * 1e3,
            sums.iter().sum::<f64>() * 1e3
        );
    }
}
