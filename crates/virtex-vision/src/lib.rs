//! # virtex-vision
//!
//! VirTex's visual backbones on [burn](https://burn.dev): the torchvision ResNet
//! family (ResNet-18/34/50/101/152, wide ResNet-50-2/101-2), exactly torchvision's
//! architecture and initialisation, generic over any burn backend that
//! implements [`VisionBackend`] (a training BatchNorm op: Flex, NdArray, CUDA
//! and `Autodiff` of each, by feature).
//!
//! - [`ResNet::forward`] returns the layer4 grid `[batch, C, H/32, W/32]`
//!   (`[batch, 2048, 7, 7]` for ResNet-50 at 224²), what VirTex's textual heads read;
//!   [`ResNet::forward_stages`] returns every stage, [`ResNet::forward_pooled`] the
//!   global-average-pooled `[batch, C]` features.
//! - [`FrozenResNet`] runs a backbone with BN statistics frozen and no gradients.
//! - [`backend`]: [`VisionBackend`], training BatchNorm as one backend op
//!   each way: fused kernels on Flex (feature `flex`, default), its own
//!   backward under `Autodiff`, tensor-op formulas on NdArray and CUDA
//!   (features `ndarray`, `cuda`).
//! - [`Precision`] runs the convolutions (and, in virtex-text, the matrix
//!   products) in bf16 with everything else in f32: mixed precision.
//! - With the `pytorch` feature (on by default), [`pytorch`] reads torchvision
//!   and VirTex `.pth` files and writes the backbone back out
//!   under torchvision or Detectron2 names, as files `torch.load` reads.
//!
//! ```
//! use burn_flex::Flex;
//! use burn::tensor::Tensor;
//! use virtex_vision::{ResNetArch, ResNetConfig};
//!
//! let device = Default::default();
//! let resnet = ResNetConfig::virtex("resnet18".parse::<ResNetArch>().unwrap()).init::<Flex>(&device);
//! let images = Tensor::<Flex, 4>::zeros([2, 3, 64, 64], &device);
//! assert_eq!(resnet.forward(images.clone()).dims(), [2, 512, 2, 2]);
//! assert_eq!(resnet.forward_pooled(images).dims(), [2, 512]);
//! ```
//!
//! Features from an official VirTex checkpoint, with this crate alone (images
//! already resized, cropped and ImageNet-normalised). On an inference backend
//! (no `Autodiff`), BatchNorm uses its running statistics and nothing keeps
//! gradients; inside a training graph, wrap the backbone in [`FrozenResNet`].
//!
//! ```no_run
//! use burn_flex::Flex;
//! use burn::tensor::Tensor;
//! use virtex_vision::pytorch::TorchvisionWeights;
//! use virtex_vision::{ResNetArch, ResNetConfig};
//!
//! let device = Default::default();
//! let resnet = ResNetConfig::virtex(ResNetArch::Resnet50).init::<Flex>(&device);
//! let resnet = TorchvisionWeights::virtex_checkpoint("bicaptioning_R_50_L1_H2048.pth").load(resnet)?;
//! let images = Tensor::<Flex, 4>::zeros([8, 3, 224, 224], &device);
//! let pooled = resnet.forward_pooled(images.clone()); // [8, 2048]
//! let grid = resnet.forward(images); // [8, 2048, 7, 7]
//! # Ok::<(), virtex_vision::VisionError>(())
//! ```

pub mod backend;
mod error;
pub mod precision;
#[cfg(feature = "pytorch")]
pub mod pytorch;
pub mod resnet;

pub use backend::{AutodiffVisionBackend, VisionBackend};
pub use error::{LISTED_KEYS, VisionError, check_applied, list_keys, list_tensors};
pub use precision::Precision;
pub use resnet::{
    FrozenResNet, ResNet, ResNetArch, ResNetConfig, ResNetStages, global_average_pool,
};
