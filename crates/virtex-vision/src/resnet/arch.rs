//! The named members of the torchvision ResNet family and their layouts.
//!
//! Upstream: `torchvision/models/resnet.py` (`resnet18` … `wide_resnet101_2`), as
//! built by VirTex's `TorchvisionVisualBackbone` (`virtex/modules/visual_backbones.py`).

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::VisionError;

/// A member of the torchvision ResNet family.
///
/// Parses from torchvision's function name (`resnet50`) or VirTex's spelling
/// (`torchvision::resnet50`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResNetArch {
    /// ResNet-18: basic blocks, `[2, 2, 2, 2]`, 512 output channels.
    Resnet18,
    /// ResNet-34: basic blocks, `[3, 4, 6, 3]`, 512 output channels.
    Resnet34,
    /// ResNet-50: bottlenecks, `[3, 4, 6, 3]`, 2048 output channels (VirTex's default).
    Resnet50,
    /// ResNet-101: bottlenecks, `[3, 4, 23, 3]`, 2048 output channels.
    Resnet101,
    /// ResNet-152: bottlenecks, `[3, 8, 36, 3]`, 2048 output channels.
    Resnet152,
    /// Wide ResNet-50-2: ResNet-50 with twice the bottleneck width.
    WideResnet50_2,
    /// Wide ResNet-101-2: ResNet-101 with twice the bottleneck width.
    WideResnet101_2,
}

/// The residual block a ResNet is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (expansion 1).
    Basic,
    /// 1×1 → 3×3 (strided, v1.5) → 1×1 convolutions (expansion 4).
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block divided by its `planes` (torchvision's `expansion`).
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

impl ResNetArch {
    /// Every member, in torchvision's order.
    pub const ALL: [ResNetArch; 7] = [
        ResNetArch::Resnet18,
        ResNetArch::Resnet34,
        ResNetArch::Resnet50,
        ResNetArch::Resnet101,
        ResNetArch::Resnet152,
        ResNetArch::WideResnet50_2,
        ResNetArch::WideResnet101_2,
    ];

    /// torchvision's function name, e.g. `resnet50`.
    pub fn name(self) -> &'static str {
        match self {
            ResNetArch::Resnet18 => "resnet18",
            ResNetArch::Resnet34 => "resnet34",
            ResNetArch::Resnet50 => "resnet50",
            ResNetArch::Resnet101 => "resnet101",
            ResNetArch::Resnet152 => "resnet152",
            ResNetArch::WideResnet50_2 => "wide_resnet50_2",
            ResNetArch::WideResnet101_2 => "wide_resnet101_2",
        }
    }

    /// The residual block type.
    pub fn block(self) -> BlockKind {
        match self {
            ResNetArch::Resnet18 | ResNetArch::Resnet34 => BlockKind::Basic,
            _ => BlockKind::Bottleneck,
        }
    }

    /// Number of blocks in `layer1` … `layer4`.
    pub fn layers(self) -> [usize; 4] {
        match self {
            ResNetArch::Resnet18 => [2, 2, 2, 2],
            ResNetArch::Resnet34 | ResNetArch::Resnet50 | ResNetArch::WideResnet50_2 => {
                [3, 4, 6, 3]
            }
            ResNetArch::Resnet101 | ResNetArch::WideResnet101_2 => [3, 4, 23, 3],
            ResNetArch::Resnet152 => [3, 8, 36, 3],
        }
    }

    /// torchvision's `width_per_group`: 64, or 128 for the wide variants.
    pub fn width_per_group(self) -> usize {
        match self {
            ResNetArch::WideResnet50_2 | ResNetArch::WideResnet101_2 => 128,
            _ => 64,
        }
    }

    /// Channels of the `layer4` output (and of the pooled feature): 512 or 2048.
    pub fn out_channels(self) -> usize {
        512 * self.block().expansion()
    }

    /// Output channels of each stage, `layer1` … `layer4`.
    pub fn stage_channels(self) -> [usize; 4] {
        let e = self.block().expansion();
        [64 * e, 128 * e, 256 * e, 512 * e]
    }
}

impl fmt::Display for ResNetArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ResNetArch {
    type Err = VisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.strip_prefix("torchvision::").unwrap_or(s);
        ResNetArch::ALL
            .into_iter()
            .find(|arch| arch.name() == name)
            .ok_or_else(|| VisionError::UnknownArchitecture {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_torchvision_and_virtex_names() {
        assert_eq!(
            "resnet50".parse::<ResNetArch>().unwrap(),
            ResNetArch::Resnet50
        );
        assert_eq!(
            "torchvision::wide_resnet50_2"
                .parse::<ResNetArch>()
                .unwrap(),
            ResNetArch::WideResnet50_2
        );
        for arch in ResNetArch::ALL {
            assert_eq!(arch.name().parse::<ResNetArch>().unwrap(), arch);
        }
        let err = "resnet51".parse::<ResNetArch>().unwrap_err();
        assert!(err.to_string().contains("resnet51"), "{err}");
    }

    #[test]
    fn serde_names_equal_torchvision_names() {
        for arch in ResNetArch::ALL {
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(json, format!("\"{}\"", arch.name()));
        }
    }
}
