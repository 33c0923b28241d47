//! Residual blocks: torchvision's `BasicBlock` and `Bottleneck` (v1.5, stride on the 3×3).

use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};

use crate::precision::Precision;
use burn::nn::{BatchNorm, PaddingConfig2d};

use super::batch_norm::{batch_norm, batch_norm_2d};
use crate::backend::VisionBackend;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

/// torchvision's `nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn kaiming_normal_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: core::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// A bias-free `k×k` convolution with torchvision's padding (`k / 2`) and initialisation.
pub(crate) fn conv<B: Backend>(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(kaiming_normal_fan_out())
        .init(device)
}

/// The projection shortcut: torchvision's `downsample = Sequential(conv1x1, BatchNorm2d)`.
///
/// Stored as `downsample.conv` / `downsample.bn`; the PyTorch importers map them to
/// `downsample.0` / `downsample.1`.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1×1 strided convolution, `[out, in, 1, 1]`.
    pub conv: Conv2d<B>,
    /// BatchNorm over `out` channels.
    pub bn: BatchNorm<B>,
}

impl<B: Backend> Downsample<B> {
    /// The projection a block needs when its stride or width changes the shape
    /// (torchvision's `_make_layer` condition), else `None`.
    fn for_block(spec: &BlockSpec, out_channels: usize, device: &B::Device) -> Option<Self> {
        (spec.stride != 1 || spec.in_channels != out_channels).then(|| Self {
            conv: conv([spec.in_channels, out_channels], 1, spec.stride, device),
            bn: batch_norm(out_channels, false, device),
        })
    }
}

impl<B: VisionBackend> Downsample<B> {
    /// The residual branch's partner: `x` itself, or its projection.
    fn shortcut(downsample: Option<&Self>, x: &Tensor<B, 4>, precision: Precision) -> Tensor<B, 4> {
        match downsample {
            Some(d) => batch_norm_2d(&d.bn, precision.conv2d(&d.conv, x.clone())),
            None => x.clone(),
        }
    }
}

/// Shapes shared by both block kinds: where a block sits in its stage.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockSpec {
    /// Channels entering the block.
    pub in_channels: usize,
    /// torchvision's `planes`.
    pub planes: usize,
    /// Stride of the block (2 for the first block of layer2…4).
    pub stride: usize,
    /// Inner width of a bottleneck (`planes * width_per_group / 64`).
    pub width: usize,
    /// Initialise the last BN's γ to zero (torchvision's `zero_init_residual`).
    pub zero_init_residual: bool,
}

/// torchvision's `BasicBlock`: 3×3 → 3×3, expansion 1.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    /// 3×3 convolution carrying the stride.
    pub conv1: Conv2d<B>,
    /// BN after `conv1`.
    pub bn1: BatchNorm<B>,
    /// 3×3 convolution.
    pub conv2: Conv2d<B>,
    /// BN after `conv2` (zero-initialised under `zero_init_residual`).
    pub bn2: BatchNorm<B>,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> BasicBlock<B> {
    pub(crate) fn new(spec: BlockSpec, device: &B::Device) -> Self {
        let out = spec.planes;
        Self {
            conv1: conv([spec.in_channels, out], 3, spec.stride, device),
            bn1: batch_norm(out, false, device),
            conv2: conv([out, out], 3, 1, device),
            bn2: batch_norm(out, spec.zero_init_residual, device),
            downsample: Downsample::for_block(&spec, out, device),
        }
    }
}

impl<B: VisionBackend> BasicBlock<B> {
    /// Convolutions in `precision`, the rest in f32.
    ///
    /// # Shapes
    /// - `x`: `[batch, in, H, W]` → `[batch, planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>, precision: Precision) -> Tensor<B, 4> {
        let identity = Downsample::shortcut(self.downsample.as_ref(), &x, precision);
        let out = relu(batch_norm_2d(&self.bn1, precision.conv2d(&self.conv1, x)));
        let out = batch_norm_2d(&self.bn2, precision.conv2d(&self.conv2, out));
        relu(out + identity)
    }
}

/// torchvision's `Bottleneck` (ResNet v1.5): 1×1 → 3×3 (stride) → 1×1, expansion 4.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// 1×1 reduction to `width`.
    pub conv1: Conv2d<B>,
    /// BN after `conv1`.
    pub bn1: BatchNorm<B>,
    /// 3×3 convolution carrying the stride.
    pub conv2: Conv2d<B>,
    /// BN after `conv2`.
    pub bn2: BatchNorm<B>,
    /// 1×1 expansion to `4 * planes`.
    pub conv3: Conv2d<B>,
    /// BN after `conv3` (zero-initialised under `zero_init_residual`).
    pub bn3: BatchNorm<B>,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> Bottleneck<B> {
    pub(crate) fn new(spec: BlockSpec, device: &B::Device) -> Self {
        let out = spec.planes * 4;
        let width = spec.width;
        Self {
            conv1: conv([spec.in_channels, width], 1, 1, device),
            bn1: batch_norm(width, false, device),
            conv2: conv([width, width], 3, spec.stride, device),
            bn2: batch_norm(width, false, device),
            conv3: conv([width, out], 1, 1, device),
            bn3: batch_norm(out, spec.zero_init_residual, device),
            downsample: Downsample::for_block(&spec, out, device),
        }
    }
}

impl<B: VisionBackend> Bottleneck<B> {
    /// Convolutions in `precision`, the rest in f32.
    ///
    /// # Shapes
    /// - `x`: `[batch, in, H, W]` → `[batch, 4 * planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>, precision: Precision) -> Tensor<B, 4> {
        let identity = Downsample::shortcut(self.downsample.as_ref(), &x, precision);
        let out = relu(batch_norm_2d(&self.bn1, precision.conv2d(&self.conv1, x)));
        let out = relu(batch_norm_2d(&self.bn2, precision.conv2d(&self.conv2, out)));
        let out = batch_norm_2d(&self.bn3, precision.conv2d(&self.conv3, out));
        relu(out + identity)
    }
}

/// One residual block of either kind. The variant name never appears in weight
/// paths (`layer1.0.conv1.weight`), matching torchvision.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a stage holds blocks of one kind only; burn's Module derive does not see through Box"
)]
pub enum ResidualBlock<B: Backend> {
    /// ResNet-18/34.
    Basic(BasicBlock<B>),
    /// ResNet-50 and deeper, wide variants.
    Bottleneck(Bottleneck<B>),
}

impl<B: VisionBackend> ResidualBlock<B> {
    /// Convolutions in `precision`, the rest in f32.
    ///
    /// # Shapes
    /// - `x`: `[batch, in, H, W]` → `[batch, out, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>, precision: Precision) -> Tensor<B, 4> {
        match self {
            ResidualBlock::Basic(block) => block.forward(x, precision),
            ResidualBlock::Bottleneck(block) => block.forward(x, precision),
        }
    }
}
