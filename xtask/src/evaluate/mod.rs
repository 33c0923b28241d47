//! `cargo xtask evaluate`: downstream evaluation of a pretrained backbone
//! (`scripts/clf_voc07.py`, `clf_linear.py`, `eval_captioning.py`).
//! Backbones come from a virtex-rs checkpoint, an official VirTex `.pth`
//! or a torchvision `.pth`.

mod captioning;
mod detectron2;
mod emoji;
mod features;
mod transfer;
mod voc07;

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::{AutodiffBackend, Backend};
use virtex_eval::features::{Features, extract};
use virtex_train::checkpoint::{load_model, read_meta};
use virtex_train::device::BackendTask;
use virtex_vision::{ResNet, ResNetConfig};

use crate::caption::image_files;
use crate::flags::{BackboneSource, Evaluate, Evaluation};

impl Evaluate {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.what {
            None => crate::flags::EmojiProbe::default().run(),
            Some(Evaluation::Features(cmd)) => cmd.run(),
            Some(Evaluation::Voc07(cmd)) => cmd.run(),
            Some(Evaluation::Linear(cmd)) => cmd.run(transfer::Protocol::Linear),
            Some(Evaluation::Finetune(cmd)) => cmd.run(transfer::Protocol::Finetune),
            Some(Evaluation::Emoji(cmd)) => cmd.run(),
            Some(Evaluation::Captioning(cmd)) => cmd.run(),
            Some(Evaluation::Detectron2Export(cmd)) => cmd.run(),
        }
    }
}

/// The images of a directory, or the paths listed in a text file (one per
/// line, relative to the file's directory unless absolute).
fn image_list(images: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if images.is_dir() {
        return image_files(images);
    }
    let text = std::fs::read_to_string(images)
        .with_context(|| format!("reading the image list {}", images.display()))?;
    let base = images.parent().unwrap_or(Path::new("."));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| base.join(line))
        .collect())
}

impl BackboneSource {
    /// `--checkpoint random`: a freshly initialised backbone (seed 0).
    pub(crate) fn is_random(&self) -> bool {
        self.checkpoint.as_os_str() == "random"
    }

    /// The backbone on backend `B` (an inference backend to extract
    /// features, an autodiff one to fine-tune).
    pub(crate) fn load<B: Backend>(&self, device: &B::Device) -> anyhow::Result<ResNet<B>> {
        if self.is_random() {
            // Seeded, so every load of `random` is the same network.
            B::seed(device, 0);
            return Ok(ResNetConfig::virtex(self.arch).init::<B>(device));
        }
        if self
            .checkpoint
            .extension()
            .is_some_and(|e| e == "safetensors")
        {
            let config = read_meta(&self.checkpoint)?.config;
            let model = config.model_config().init::<B>(device)?;
            return Ok(load_model(&self.checkpoint, model)?.0.visual);
        }
        let resnet = ResNetConfig::virtex(self.arch).init::<B>(device);
        Ok(self.layout.weights(&self.checkpoint).load(resnet)?)
    }
}

/// Pooled layer4 features of `images` from a frozen backbone.
pub(crate) struct FeatureTask<'a> {
    pub(crate) backbone: &'a BackboneSource,
    pub(crate) images: &'a [PathBuf],
    pub(crate) size: u32,
    pub(crate) batch: usize,
    pub(crate) l2_normalize: bool,
}

impl BackendTask for FeatureTask<'_> {
    type Output = anyhow::Result<Features>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let backbone = self.backbone.load::<B::InnerBackend>(&device)?;
        Ok(extract(
            &backbone,
            self.images,
            self.size,
            self.batch,
            self.l2_normalize,
            &device,
        )?)
    }
}
