//! Where a model's or a backbone's weights come from: a virtex-rs checkpoint,
//! an official VirTex `.pth`, a torchvision `.pth`, or fresh weights. The kind
//! is decided once, when the source is made, and each file is read once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::backend::Backend;
use virtex_text::PretrainingModel;
use virtex_text::pytorch::{CheckpointParts, load_virtex_checkpoint};
use virtex_vision::pytorch::{ExportNaming, TorchvisionWeights, export};
use virtex_vision::{ResNet, ResNetArch, ResNetConfig, VisionError};

use crate::checkpoint::{CheckpointError, ModelCheckpoint};
use crate::config::Config;

/// The seed of [`WeightsSource::Random`]: every load is the same network.
const RANDOM_SEED: u64 = 0;

/// Where weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    /// Freshly initialised weights (seeded, so every load is the same network).
    Random,
    /// A virtex-rs checkpoint (`checkpoint_N.safetensors`), which holds its config.
    Native(PathBuf),
    /// An official VirTex checkpoint: `{"model": state_dict}`, keys
    /// `visual.cnn.…`, `textual.…`; its architecture comes from a config.
    Virtex(PathBuf),
    /// A bare torchvision ResNet state dict: a backbone only.
    Torchvision(PathBuf),
}

/// How a `.pth` file is laid out (the `--layout` of the command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PthLayout {
    /// A VirTex checkpoint (`["model"]`, backbone under `visual.cnn.`).
    #[default]
    Virtex,
    /// A bare torchvision state dict.
    Torchvision,
}

impl FromStr for PthLayout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtex" => Ok(Self::Virtex),
            "torchvision" => Ok(Self::Torchvision),
            other => Err(format!(
                "unknown .pth layout '{other}': expected virtex or torchvision"
            )),
        }
    }
}

impl fmt::Display for PthLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Virtex => "virtex",
            Self::Torchvision => "torchvision",
        })
    }
}

/// Weights that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A virtex-rs checkpoint that cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// An official VirTex checkpoint that does not fit the model.
    #[error(transparent)]
    Official(#[from] virtex_text::pytorch::CheckpointError),
    /// A torchvision file that does not fit the backbone.
    #[error(transparent)]
    Backbone(#[from] VisionError),
    /// The config describes no model.
    #[error(transparent)]
    Model(#[from] virtex_text::models::ModelConfigError),
    /// A torchvision file holds no textual head.
    #[error("{0}: a torchvision state dict holds a backbone only, not a captioning model")]
    BackboneOnly(PathBuf),
}

impl WeightsSource {
    /// The source a command-line value names: `random`, a `.safetensors`
    /// virtex-rs checkpoint, or a `.pth` laid out as `layout`.
    pub fn from_arg(value: &Path, layout: PthLayout) -> Self {
        if value.as_os_str() == "random" {
            Self::Random
        } else if value.extension().is_some_and(|e| e == "safetensors") {
            Self::Native(value.to_path_buf())
        } else {
            match layout {
                PthLayout::Virtex => Self::Virtex(value.to_path_buf()),
                PthLayout::Torchvision => Self::Torchvision(value.to_path_buf()),
            }
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Random => None,
            Self::Native(p) | Self::Virtex(p) | Self::Torchvision(p) => Some(p),
        }
    }

    /// The backbone on backend `B` (an inference backend to extract features,
    /// an autodiff one to fine-tune). `arch` is used for sources without a
    /// config (`Random` and `.pth` files); a virtex-rs checkpoint's own
    /// config names its backbone.
    pub fn backbone<B: Backend>(
        &self,
        arch: ResNetArch,
        device: &B::Device,
    ) -> Result<ResNet<B>, SourceError> {
        let fresh = || ResNetConfig::virtex(arch).init::<B>(device);
        Ok(match self {
            Self::Random => {
                B::seed(device, RANDOM_SEED);
                fresh()
            }
            Self::Native(path) => ModelCheckpoint::open(path)?.model::<B>(device)?.0.visual,
            Self::Virtex(path) => TorchvisionWeights::virtex_checkpoint(path).load(fresh())?,
            Self::Torchvision(path) => TorchvisionWeights::new(path).load(fresh())?,
        })
    }

    /// The whole pretraining model and the config it was built from: a
    /// virtex-rs checkpoint's own, otherwise `config`.
    pub fn model<B: Backend>(
        &self,
        config: &Config,
        device: &B::Device,
    ) -> Result<(PretrainingModel<B>, Config), SourceError> {
        match self {
            Self::Native(path) => {
                let (model, meta) = ModelCheckpoint::open(path)?.model::<B>(device)?;
                Ok((model, meta.config))
            }
            Self::Random => {
                B::seed(device, RANDOM_SEED);
                Ok((config.model_config().init::<B>(device)?, config.clone()))
            }
            Self::Virtex(path) => {
                let model = config.model_config().init::<B>(device)?;
                let model = load_virtex_checkpoint(model, path, CheckpointParts::Full)?;
                Ok((model, config.clone()))
            }
            Self::Torchvision(path) => Err(SourceError::BackboneOnly(path.clone())),
        }
    }

    /// Writes the backbone as a `.pth` that `torch.load` reads, under
    /// torchvision's or Detectron2's names (`scripts/eval_detectron2.py`'s
    /// conversion).
    pub fn export_backbone(
        &self,
        arch: ResNetArch,
        output: &Path,
        naming: ExportNaming,
    ) -> Result<(), SourceError> {
        let model = self.backbone::<burn::backend::Flex>(arch, &Default::default())?;
        Ok(export(&model, output, naming)?)
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("random"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_is_told_from_the_value_and_the_layout() {
        let arg = |s: &str, layout| WeightsSource::from_arg(Path::new(s), layout);
        assert_eq!(arg("random", PthLayout::Virtex), WeightsSource::Random);
        assert_eq!(
            arg("runs/a/checkpoint_2.safetensors", PthLayout::Torchvision),
            WeightsSource::Native("runs/a/checkpoint_2.safetensors".into())
        );
        assert_eq!(
            arg("r50.pth", PthLayout::Torchvision),
            WeightsSource::Torchvision("r50.pth".into())
        );
        assert_eq!(
            arg("bicaptioning.pth", PthLayout::Virtex),
            WeightsSource::Virtex("bicaptioning.pth".into())
        );
        assert_eq!("torchvision".parse(), Ok(PthLayout::Torchvision));
        assert!("caffe".parse::<PthLayout>().unwrap_err().contains("caffe"));
    }

    #[test]
    fn a_torchvision_file_is_no_captioning_model() {
        let source = WeightsSource::Torchvision("r50.pth".into());
        let err = source
            .model::<burn::backend::Flex>(&Config::default(), &Default::default())
            .unwrap_err();
        assert!(err.to_string().contains("r50.pth"), "{err}");
    }
}
