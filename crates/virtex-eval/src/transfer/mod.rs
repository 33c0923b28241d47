//! Classification transfer of a backbone from any weights source on an
//! ImageFolder dataset (`DATA.ROOT/{train,val}/<class>/<image>`, or another
//! folder than `val` to test on): the
//! reference's linear probe (`scripts/clf_linear.py`, ImageNet protocol,
//! frozen) and fine-tuning (iNaturalist protocol, end to end), as a
//! [`TransferTask`] in one of the two [`TransferMode`]s.
//!
//! - [`image_folder`]: the ImageFolder layout.
//! - [`classifier`]: the backbone with a linear head and its training loop.

pub mod classifier;
pub mod image_folder;

use std::path::{Path, PathBuf};

use serde::Serialize;
use virtex_data::images::ImageError;
use virtex_train::config::Config;
use virtex_train::device::BackendTask;
use virtex_train::source::WeightsSource;
use virtex_vision::{AutodiffVisionBackend, ResNetArch};

use crate::error::EvalError;
use classifier::{ClassificationResult, train_classifier};
use image_folder::ImageFolder;

/// A dataset or run that cannot proceed.
#[derive(Debug, thiserror::Error)]
pub enum ClassificationError {
    /// A directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No class directories, or no images in them.
    #[error("{0}: no <class>/<image> files (expected an ImageFolder layout)")]
    Empty(PathBuf),
    /// The validation classes are not the training classes.
    #[error("{path}: classes {found:?} differ from the training classes {expected:?}")]
    ClassMismatch {
        /// The validation root.
        path: PathBuf,
        /// Its classes.
        found: Vec<String>,
        /// The training classes.
        expected: Vec<String>,
    },
    /// An image that does not decode.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The optimiser's config does not parse.
    #[error("OPTIM.NO_DECAY: {0}")]
    NoDecay(#[from] regex::Error),
}

/// Whether the backbone trains: which protocol a transfer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// Frozen backbone in eval mode (BN statistics frozen); only the head
    /// trains (ImageNet).
    LinearProbe,
    /// Everything trains, BN in training mode (iNaturalist).
    FineTune,
}

impl TransferMode {
    /// The protocol's config in this repository's `data/configs/downstream/`.
    pub fn default_config(self) -> &'static str {
        match self {
            TransferMode::LinearProbe => "data/configs/downstream/imagenet_clf.yaml",
            TransferMode::FineTune => "data/configs/downstream/inaturalist_clf.yaml",
        }
    }

    /// Loads a downstream config with the protocol's `MODEL.VISUAL.FROZEN`,
    /// whatever the file says, then `overrides`.
    pub fn config(self, path: &Path, overrides: &[String]) -> Result<Config, EvalError> {
        let mut all = vec![format!(
            "MODEL.VISUAL.FROZEN={}",
            self == TransferMode::LinearProbe
        )];
        all.extend_from_slice(overrides);
        Ok(Config::load(Some(path), &all)?)
    }
}

/// Trains and tests one classifier on the backend it is dispatched to.
#[derive(Clone, Debug)]
pub struct TransferTask {
    /// The backbone's weights.
    pub source: WeightsSource,
    /// Its architecture, for sources without a config.
    pub arch: ResNetArch,
    /// The downstream config (`DATA.ROOT`, `OPTIM.*`, `MODEL.VISUAL.FROZEN`).
    pub config: Config,
    /// The folder under `DATA.ROOT` the classifier is tested on (`val` in
    /// the reference's protocols); it trains on `train`.
    pub test_split: String,
}

impl BackendTask for TransferTask {
    type Output = Result<ClassificationResult, EvalError>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let root = &self.config.data.root;
        let train = ImageFolder::load(&root.join("train"))?;
        let val = ImageFolder::load_matching(&root.join(&self.test_split), &train)?;
        B::seed(&device, self.config.random_seed);
        let backbone = self.source.backbone::<B>(self.arch, &device)?;
        Ok(train_classifier(
            backbone,
            &self.config,
            &train,
            &val,
            &device,
        )?)
    }
}
