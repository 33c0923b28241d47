//! `cargo xtask evaluate features`: pooled layer4 features as `.npy`, plus a
//! `.txt` listing the images, one per row.

use anyhow::Context;

use super::{FeatureTask, image_list};
use crate::flags::ExtractFeatures;

impl ExtractFeatures {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        // Listed once, so the `.npy` rows and the `.txt` listing cannot disagree.
        let images = image_list(&self.images)?;
        anyhow::ensure!(!images.is_empty(), "no images in {}", self.images.display());
        let features = self.device.dispatch(FeatureTask {
            backbone: &self.backbone,
            images: &images,
            size: self.size,
            batch: self.batch,
            l2_normalize: self.l2_normalize,
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
