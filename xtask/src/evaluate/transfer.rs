//! `cargo xtask evaluate linear|finetune`: classification transfer on an
//! ImageFolder dataset (`DATA.ROOT/{train,val}/<class>/<image>`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use virtex_eval::classification::{ClassificationResult, ImageFolder, train_classifier};
use virtex_train::config::Config;
use virtex_train::device::BackendTask;

use crate::flags::{BackboneSource, Transfer};
use crate::project_root;

/// Which protocol a `Transfer` command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Frozen backbone, linear head (ImageNet).
    Linear,
    /// End to end (iNaturalist).
    Finetune,
}

impl Protocol {
    fn default_config(self) -> &'static str {
        match self {
            Protocol::Linear => "data/configs/downstream/imagenet_clf.yaml",
            Protocol::Finetune => "data/configs/downstream/inaturalist_clf.yaml",
        }
    }

    /// The `MODEL.VISUAL.FROZEN` this protocol means, whatever the config says.
    fn frozen(self) -> String {
        format!("MODEL.VISUAL.FROZEN={}", self == Protocol::Linear)
    }
}

/// A config path as given, else relative to the repository root.
fn resolve(path: &Path) -> PathBuf {
    if path.exists() {
        path.to_path_buf()
    } else {
        project_root().join(path)
    }
}

/// Loads a downstream config with the protocol's `FROZEN` forced.
pub(crate) fn downstream_config(
    path: &Path,
    protocol: Protocol,
    overrides: &[String],
) -> anyhow::Result<Config> {
    let mut all = vec![protocol.frozen()];
    all.extend_from_slice(overrides);
    Ok(Config::load(Some(&resolve(path)), &all)?)
}

/// Trains and tests one classifier.
pub(crate) struct TransferTask<'a> {
    pub(crate) backbone: &'a BackboneSource,
    pub(crate) config: &'a Config,
}

impl BackendTask for TransferTask<'_> {
    type Output = anyhow::Result<ClassificationResult>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let root = resolve(&self.config.data.root);
        let train = ImageFolder::load(&root.join("train"))?;
        let val = ImageFolder::load_matching(&root.join("val"), &train)?;
        B::seed(&device, self.config.random_seed);
        let backbone = self.backbone.load::<B>(&device)?;
        Ok(train_classifier(
            backbone,
            self.config,
            &train,
            &val,
            &device,
        )?)
    }
}

impl Transfer {
    pub(crate) fn run(self, protocol: Protocol) -> anyhow::Result<()> {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| protocol.default_config().into());
        let config = downstream_config(&path, protocol, &self.overrides)?;
        let result = self.device.dispatch(TransferTask {
            backbone: &self.backbone,
            config: &config,
        })??;
        println!(
            "{:?} on {}: top-1 {:.2}%, top-5 {:.2}% after {} iterations (training loss {:.3} → {:.3})",
            result.mode,
            config.data.root.display(),
            100.0 * result.top1,
            100.0 * result.top5,
            result.iterations,
            result.loss_start_end.0,
            result.loss_start_end.1
        );
        if let Some(output) = &self.output {
            crate::write_atomically(output, &serde_json::to_vec_pretty(&result)?)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        Ok(())
    }
}
