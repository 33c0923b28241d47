//! Where a model's or a backbone's weights come from: a virtex-rs checkpoint,
//! an official VirTex `.pth`, a torchvision `.pth`, or fresh weights. The kind
//! is decided once, when the source is made: a `.pth`'s layout from its
//! tensor names ([`PthLayout::detect`], which reads no tensor), so each
//! file's tensors are read once, when they are loaded.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::backend::Backend;
use virtex_text::PretrainingModel;
use virtex_text::pytorch::{CheckpointParts, load_virtex_checkpoint};
use virtex_vision::pytorch::{ExportNaming, TorchvisionWeights, export, read_pth};
use virtex_vision::{ResNet, ResNetArch, ResNetConfig, VisionError, list_tensors};

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

/// How a `.pth` file is laid out (the `--layout` of the command line, which
/// [`PthLayout::detect`] finds when it is left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PthLayout {
    /// A VirTex checkpoint (`["model"]`, backbone under `visual.cnn.`).
    Virtex,
    /// A bare torchvision state dict.
    Torchvision,
}

impl PthLayout {
    /// The layout `path`'s tensor names show, read from the file without
    /// its tensors: a VirTex checkpoint has tensors under `model` named
    /// `visual.cnn.…` or `textual.…` (`model.visual.cnn.conv1.weight`); a
    /// torchvision state dict has only `conv1.…`, `bn1.…`, `layer1.…` to
    /// `layer4.…` and `fc.…`. A file that is neither is a
    /// [`SourceError::UnknownLayout`].
    pub fn detect(path: &Path) -> Result<Self, SourceError> {
        let mut keys = read_pth(path, None)?.keys();
        Self::of_keys(&keys).ok_or_else(|| {
            keys.sort();
            SourceError::UnknownLayout {
                path: path.to_path_buf(),
                keys,
            }
        })
    }

    /// The layout of a file whose tensors are `keys` (nested dictionaries'
    /// names joined with `.`), if either.
    fn of_keys(keys: &[String]) -> Option<Self> {
        let virtex = |key: &str| {
            key.strip_prefix("model.")
                .is_some_and(|key| key.starts_with("visual.cnn.") || key.starts_with("textual."))
        };
        let torchvision = |key: &str| {
            ["conv1.", "bn1.", "fc."].iter().any(|p| key.starts_with(p))
                || key
                    .strip_prefix("layer")
                    .and_then(|rest| rest.strip_prefix(['1', '2', '3', '4']))
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        if keys.iter().any(|key| virtex(key)) {
            Some(Self::Virtex)
        } else if !keys.is_empty() && keys.iter().all(|key| torchvision(key)) {
            Some(Self::Torchvision)
        } else {
            None
        }
    }

    /// What a file of this layout is, in words.
    fn describe(self) -> &'static str {
        match self {
            Self::Virtex => "a VirTex checkpoint",
            Self::Torchvision => "a torchvision ResNet state dict",
        }
    }
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
    /// A `.pth` whose tensor names are neither layout's.
    #[error(
        "{path}: neither a VirTex checkpoint (model.visual.cnn.…, model.textual.…) nor a \
         torchvision ResNet state dict (conv1.…, bn1.…, layer1-4.…, fc.…); {}",
        list_tensors(keys)
    )]
    UnknownLayout {
        /// The file.
        path: PathBuf,
        /// The names of its tensors, sorted.
        keys: Vec<String>,
    },
    /// A `--layout` that the file's tensor names contradict.
    #[error(
        "{path}: --layout {given}, but the file is {}: leave --layout out (it is detected) \
         or pass --layout {found}",
        found.describe()
    )]
    WrongLayout {
        /// The file.
        path: PathBuf,
        /// The layout asked for.
        given: PthLayout,
        /// The layout its names show.
        found: PthLayout,
    },
}

impl WeightsSource {
    /// The source a command-line value names: `random`, a `.safetensors`
    /// virtex-rs checkpoint, or (any other file) a `.pth` laid out as its
    /// tensor names show ([`PthLayout::detect`]). A `layout` given reads a
    /// file of neither layout as that one, and is refused for a file whose
    /// names show the other ([`SourceError::WrongLayout`]).
    pub fn from_arg(value: &Path, layout: Option<PthLayout>) -> Result<Self, SourceError> {
        if value.as_os_str() == "random" {
            return Ok(Self::Random);
        }
        if value.extension().is_some_and(|e| e == "safetensors") {
            return Ok(Self::Native(value.to_path_buf()));
        }
        let layout = match (layout, PthLayout::detect(value)) {
            (None, detected) => detected?,
            (Some(given), Ok(found)) if found != given => {
                return Err(SourceError::WrongLayout {
                    path: value.to_path_buf(),
                    given,
                    found,
                });
            }
            (Some(given), Ok(_) | Err(SourceError::UnknownLayout { .. })) => given,
            (Some(_), Err(err)) => return Err(err),
        };
        Ok(match layout {
            PthLayout::Virtex => Self::Virtex(value.to_path_buf()),
            PthLayout::Torchvision => Self::Torchvision(value.to_path_buf()),
        })
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
        let model = self.backbone::<burn_flex::Flex>(arch, &Default::default())?;
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
    fn random_and_safetensors_are_told_from_the_value_alone() {
        let arg = |s: &str, layout| WeightsSource::from_arg(Path::new(s), layout).unwrap();
        assert_eq!(arg("random", None), WeightsSource::Random);
        assert_eq!(
            arg(
                "runs/a/checkpoint_2.safetensors",
                Some(PthLayout::Torchvision)
            ),
            WeightsSource::Native("runs/a/checkpoint_2.safetensors".into())
        );
        assert_eq!("torchvision".parse(), Ok(PthLayout::Torchvision));
        assert!("caffe".parse::<PthLayout>().unwrap_err().contains("caffe"));
    }

    #[test]
    fn layouts_are_told_by_their_tensor_names() {
        let keys = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let of = |names: &[&str]| PthLayout::of_keys(&keys(names));
        assert_eq!(
            of(&["model.visual.cnn.conv1.weight", "optimizer.state.0.exp_avg"]),
            Some(PthLayout::Virtex)
        );
        assert_eq!(
            of(&["model.textual.embedding.words.weight"]),
            Some(PthLayout::Virtex)
        );
        assert_eq!(
            of(&[
                "conv1.weight",
                "bn1.bias",
                "layer4.2.conv3.weight",
                "fc.bias"
            ]),
            Some(PthLayout::Torchvision)
        );
        assert_eq!(of(&["conv1.weight", "layer5.0.conv1.weight"]), None);
        assert_eq!(of(&["model.stem.conv1.weight"]), None);
        assert_eq!(of(&["visual.cnn.conv1.weight"]), None, "not under model");
        assert_eq!(of(&[]), None);
    }

    #[test]
    fn a_torchvision_file_is_no_captioning_model() {
        let source = WeightsSource::Torchvision("r50.pth".into());
        let err = source
            .model::<burn_flex::Flex>(&Config::default(), &Default::default())
            .unwrap_err();
        assert!(err.to_string().contains("r50.pth"), "{err}");
    }
}
