//! Classification transfer of a backbone from any weights source on an
//! ImageFolder dataset (`DATA.ROOT/{train,val}/<class>/<image>`): the
//! reference's linear probe (`scripts/clf_linear.py`, ImageNet protocol,
//! frozen) and fine-tuning (iNaturalist protocol, end to end).

use std::path::Path;

use virtex_train::config::Config;
use virtex_train::device::BackendTask;
use virtex_train::source::WeightsSource;
use virtex_vision::{AutodiffVisionBackend, ResNetArch};

use crate::classification::{ClassificationResult, ImageFolder, train_classifier};
use crate::error::EvalError;

/// Which protocol a transfer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Frozen backbone, linear head (ImageNet).
    Linear,
    /// End to end (iNaturalist).
    Finetune,
}

impl Protocol {
    /// The protocol's config in this repository's `data/configs/downstream/`.
    pub fn default_config(self) -> &'static str {
        match self {
            Protocol::Linear => "data/configs/downstream/imagenet_clf.yaml",
            Protocol::Finetune => "data/configs/downstream/inaturalist_clf.yaml",
        }
    }

    /// Loads a downstream config with the protocol's `MODEL.VISUAL.FROZEN`,
    /// whatever the file says, then `overrides`.
    pub fn config(self, path: &Path, overrides: &[String]) -> Result<Config, EvalError> {
        let mut all = vec![format!("MODEL.VISUAL.FROZEN={}", self == Protocol::Linear)];
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
}

impl BackendTask for TransferTask {
    type Output = Result<ClassificationResult, EvalError>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let root = &self.config.data.root;
        let train = ImageFolder::load(&root.join("train"))?;
        let val = ImageFolder::load_matching(&root.join("val"), &train)?;
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
