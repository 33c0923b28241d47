//! `cargo xtask evaluate`: downstream evaluation of a pretrained backbone.
//! Today `features`: pooled layer4 features of a frozen backbone as `.npy`,
//! from a virtex-rs checkpoint, an official VirTex `.pth` or a torchvision `.pth`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::backend::{AutodiffBackend, Backend};
use virtex_eval::features::extract;
use virtex_train::checkpoint::{load_model, read_meta};
use virtex_train::device::BackendTask;
use virtex_vision::{ResNet, ResNetConfig};

use crate::caption::image_files;
use crate::flags::{Evaluate, Evaluation, ExtractFeatures};

impl Evaluate {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.what {
            Evaluation::Features(cmd) => cmd.run(),
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

/// The backbone of any supported checkpoint, on an inference backend.
fn backbone<B: Backend>(cmd: &ExtractFeatures, device: &B::Device) -> anyhow::Result<ResNet<B>> {
    if cmd
        .checkpoint
        .extension()
        .is_some_and(|e| e == "safetensors")
    {
        let config = read_meta(&cmd.checkpoint)?.config;
        let model = config.model_config().init::<B>(device)?;
        return Ok(load_model(&cmd.checkpoint, model)?.0.visual);
    }
    let resnet = ResNetConfig::virtex(cmd.arch).init::<B>(device);
    Ok(cmd.layout.weights(&cmd.checkpoint).load(resnet)?)
}

/// Extracts the features of `images` (listed once, so the `.npy` rows and
/// the `.txt` listing cannot disagree).
pub(crate) struct FeatureTask<'a> {
    pub(crate) cmd: &'a ExtractFeatures,
    pub(crate) images: &'a [PathBuf],
}

impl BackendTask for FeatureTask<'_> {
    type Output = anyhow::Result<virtex_eval::features::Features>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let cmd = self.cmd;
        let backbone = backbone::<B::InnerBackend>(cmd, &device)?;
        Ok(extract(
            &backbone,
            self.images,
            cmd.size,
            cmd.batch,
            cmd.l2_normalize,
            &device,
        )?)
    }
}

impl ExtractFeatures {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let images = image_list(&self.images)?;
        anyhow::ensure!(!images.is_empty(), "no images in {}", self.images.display());
        let features = self.device.dispatch(FeatureTask {
            cmd: &self,
            images: &images,
        })??;
        features
            .save_npy(&self.output)
            .with_context(|| format!("writing {}", self.output.display()))?;
        let listing = self.output.with_extension("txt");
        let paths: String = images
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        crate::write_atomically(&listing, paths.as_bytes())?;
        println!(
            "wrote {} × {} features to {} (images listed in {})",
            features.rows,
            features.dim,
            self.output.display(),
            listing.display()
        );
        Ok(())
    }
}
