//! The torchvision ResNet family, as VirTex's visual backbone.
//!
//! Paper: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016);
//! architecture and initialisation follow `torchvision/models/resnet.py` (v1.5:
//! the stride sits on the 3×3 convolution), built the way
//! `virtex/modules/visual_backbones.py::TorchvisionVisualBackbone` builds it.

mod arch;
mod batch_norm;
mod block;

pub use arch::{BlockKind, ResNetArch};
pub use block::{BasicBlock, Bottleneck, Downsample, ResidualBlock};

use batch_norm::{batch_norm, batch_norm_2d};
use block::{BlockSpec, conv};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::max_pool2d;
use serde::{Deserialize, Serialize};

use crate::backend::{AutodiffVisionBackend, VisionBackend};
use crate::precision::Precision;

/// How to build a [`ResNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Which member of the family.
    pub arch: ResNetArch,
    /// Zero-initialise the last BN γ of every residual branch (torchvision's
    /// `zero_init_residual`; VirTex pretraining turns it on).
    #[serde(default)]
    pub zero_init_residual: bool,
    /// Keep torchvision's `fc` classifier with this many classes. VirTex replaces
    /// `fc` with `Identity`, so the default is none.
    #[serde(default)]
    pub num_classes: Option<usize>,
}

impl ResNetConfig {
    /// A backbone without classifier and with torchvision's default initialisation.
    pub fn new(arch: ResNetArch) -> Self {
        Self {
            arch,
            zero_init_residual: false,
            num_classes: None,
        }
    }

    /// VirTex's pretraining backbone: `zero_init_residual=True`, no `fc`.
    pub fn virtex(arch: ResNetArch) -> Self {
        Self::new(arch).with_zero_init_residual(true)
    }

    /// Sets `zero_init_residual`.
    pub fn with_zero_init_residual(mut self, zero: bool) -> Self {
        self.zero_init_residual = zero;
        self
    }

    /// Keeps a `fc` classifier over `classes` outputs.
    pub fn with_num_classes(mut self, classes: Option<usize>) -> Self {
        self.num_classes = classes;
        self
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal fan-out
    /// convolutions, BN γ = 1 and β = 0, PyTorch's default `Linear`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let arch = self.arch;
        let mut in_channels = 64;
        let mut layer = |index: usize| {
            let planes = 64 << index;
            let stride = if index == 0 { 1 } else { 2 };
            (0..arch.layers()[index])
                .map(|b| {
                    let spec = BlockSpec {
                        in_channels,
                        planes,
                        stride: if b == 0 { stride } else { 1 },
                        width: planes * arch.width_per_group() / 64,
                        zero_init_residual: self.zero_init_residual,
                    };
                    in_channels = planes * arch.block().expansion();
                    match arch.block() {
                        BlockKind::Basic => ResidualBlock::Basic(BasicBlock::new(spec, device)),
                        BlockKind::Bottleneck => {
                            ResidualBlock::Bottleneck(Bottleneck::new(spec, device))
                        }
                    }
                })
                .collect::<Vec<_>>()
        };
        let (layer1, layer2, layer3, layer4) = (layer(0), layer(1), layer(2), layer(3));
        ResNet {
            conv1: conv([3, 64], 7, 2, device),
            bn1: batch_norm(64, false, device),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: self
                .num_classes
                .map(|classes| LinearConfig::new(arch.out_channels(), classes).init(device)),
            precision: Precision::F32,
        }
    }
}

/// A torchvision ResNet. Field names are torchvision's attribute names, so
/// weight paths read `layer1.0.conv1.weight` as in a torchvision state dict.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// Stem convolution, 7×7 stride 2, `[64, 3, 7, 7]`.
    pub conv1: Conv2d<B>,
    /// Stem BN.
    pub bn1: BatchNorm<B>,
    /// Stage 1 (`res2`), stride 4 overall.
    pub layer1: Vec<ResidualBlock<B>>,
    /// Stage 2 (`res3`), stride 8.
    pub layer2: Vec<ResidualBlock<B>>,
    /// Stage 3 (`res4`), stride 16.
    pub layer3: Vec<ResidualBlock<B>>,
    /// Stage 4 (`res5`), stride 32.
    pub layer4: Vec<ResidualBlock<B>>,
    /// Optional classifier over pooled features (absent in VirTex).
    pub fc: Option<Linear<B>>,
    /// What the convolutions compute in ([`Precision::F32`] from `init`;
    /// not part of the weights).
    #[module(skip)]
    pub precision: Precision,
}

/// The output of every stage, for FPN-style consumers and attention maps.
#[derive(Debug, Clone)]
pub struct ResNetStages<B: Backend> {
    /// `[batch, C1, H/4, W/4]` (C1 = 64 or 256).
    pub layer1: Tensor<B, 4>,
    /// `[batch, C2, H/8, W/8]`.
    pub layer2: Tensor<B, 4>,
    /// `[batch, C3, H/16, W/16]`.
    pub layer3: Tensor<B, 4>,
    /// `[batch, C4, H/32, W/32]` (2048×7×7 for ResNet-50 at 224²).
    pub layer4: Tensor<B, 4>,
}

impl<B: Backend> ResNet<B> {
    /// The four stages in order.
    pub fn stages(&self) -> [&[ResidualBlock<B>]; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// Learnable parameters, as torchvision counts them
    /// (`sum(p.numel() for p in model.parameters())`). burn's `num_params` also
    /// counts the BN running statistics, which PyTorch keeps as buffers.
    pub fn num_learnable_params(&self) -> usize {
        let mut count = LearnableCount::default();
        self.visit(&mut count);
        count.total
    }

    /// Channels of the layer4 grid (512 or 2048).
    pub fn out_channels(&self) -> usize {
        let last = self.layer4.last().expect("layer4 has blocks");
        match last {
            ResidualBlock::Basic(b) => b.conv2.weight.dims()[0],
            ResidualBlock::Bottleneck(b) => b.conv3.weight.dims()[0],
        }
    }
}

impl<B: VisionBackend> ResNet<B> {
    /// conv1 → bn1 → relu → 3×3 max-pool, stride 2.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` → `[batch, 64, H/4, W/4]`
    fn stem(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = relu(batch_norm_2d(
            &self.bn1,
            self.precision.conv2d(&self.conv1, images),
        ));
        max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], false)
    }

    fn run_stage(&self, blocks: &[ResidualBlock<B>], x: Tensor<B, 4>) -> Tensor<B, 4> {
        blocks
            .iter()
            .fold(x, |x, block| block.forward(x, self.precision))
    }

    /// The layer4 grid, as VirTex's visual backbone returns it.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` (ImageNet-normalised RGB)
    /// - output: `[batch, C, H/32, W/32]`, e.g. `[batch, 2048, 7, 7]` for ResNet-50 at 224²
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.stem(images);
        self.stages()
            .into_iter()
            .fold(x, |x, blocks| self.run_stage(blocks, x))
    }

    /// Every stage's output.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]`; outputs as in [`ResNetStages`].
    pub fn forward_stages(&self, images: Tensor<B, 4>) -> ResNetStages<B> {
        let layer1 = self.run_stage(&self.layer1, self.stem(images));
        let layer2 = self.run_stage(&self.layer2, layer1.clone());
        let layer3 = self.run_stage(&self.layer3, layer2.clone());
        let layer4 = self.run_stage(&self.layer4, layer3.clone());
        ResNetStages {
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    /// Global-average-pooled layer4 features (torchvision's `avgpool` + flatten).
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` → `[batch, C]` (`[batch, 2048]` for ResNet-50)
    pub fn forward_pooled(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        global_average_pool(self.forward(images))
    }

    /// torchvision's full forward: pooled features through `fc`, or `None` when
    /// the network was built without a classifier.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` → `[batch, num_classes]`
    pub fn forward_logits(&self, images: Tensor<B, 4>) -> Option<Tensor<B, 2>> {
        let fc = self.fc.as_ref()?;
        // In f32 (as before), through `Precision` for its single-row guard.
        Some(Precision::F32.linear(fc, self.forward_pooled(images)))
    }
}

/// Counts float tensors outside BN running statistics.
#[derive(Default)]
struct LearnableCount {
    path: Vec<String>,
    total: usize,
}

impl<B: Backend> ModuleVisitor<B> for LearnableCount {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let buffer = matches!(
            self.path.last().map(String::as_str),
            Some("running_mean" | "running_var")
        );
        if !buffer {
            self.total += param.shape().num_elements();
        }
    }
}

/// Mean over the spatial dimensions.
///
/// # Shapes
/// - `grid`: `[batch, C, H, W]` → `[batch, C]`
pub fn global_average_pool<B: Backend>(grid: Tensor<B, 4>) -> Tensor<B, 2> {
    let [batch, channels, h, w] = grid.dims();
    // [batch, C, H*W] → mean over the last axis → [batch, C]
    grid.reshape([batch, channels, h * w])
        .mean_dim(2)
        .reshape([batch, channels])
}

/// A backbone held out of training: BN uses its running statistics and no
/// gradient reaches the weights (VirTex's `FROZEN`; the linear-probe protocol).
///
/// It runs on the autodiff backend's inner backend, so no graph is recorded.
#[derive(Clone, Debug)]
pub struct FrozenResNet<B: AutodiffBackend> {
    /// The backbone on the non-differentiable inner backend.
    pub inner: ResNet<B::InnerBackend>,
}

impl<B: AutodiffVisionBackend> FrozenResNet<B> {
    /// Freezes a trainable backbone.
    pub fn new(resnet: ResNet<B>) -> Self {
        Self {
            inner: resnet.valid(),
        }
    }

    /// The layer4 grid as a constant of the autodiff graph.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` → `[batch, C, H/32, W/32]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        Tensor::from_inner(self.inner.forward(images.inner()))
    }

    /// Pooled features as a constant of the autodiff graph.
    ///
    /// # Shapes
    /// - `images`: `[batch, 3, H, W]` → `[batch, C]`
    pub fn forward_pooled(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        Tensor::from_inner(self.inner.forward_pooled(images.inner()))
    }
}
