//! `cargo xtask caption`: [`virtex_eval::captioning`] over a folder or a COCO split.

use std::path::{Path, PathBuf};

use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS, ImageError};
use virtex_eval::captioning::{CaptionTask, ImageSet};
use virtex_train::source::WeightsSource;

use crate::flags::{BadImages, Caption, Captioner};
use crate::{load_config, write_json};

impl BadImages {
    /// Says on stderr which files were left out and why, and lists them in
    /// `<output>.skipped.json` (`[{"file", "reason"}]`); returns that path.
    pub(crate) fn report(
        &self,
        skipped: &[ImageError],
        output: &Path,
    ) -> anyhow::Result<Option<PathBuf>> {
        if skipped.is_empty() {
            return Ok(None);
        }
        for bad in skipped {
            eprintln!("skipped {bad}");
        }
        let listing: Vec<_> = skipped
            .iter()
            .map(|bad| serde_json::json!({"file": bad.path, "reason": bad.message}))
            .collect();
        let path = output.with_extension("skipped.json");
        write_json(&path, &listing)?;
        Ok(Some(path))
    }
}

impl Captioner {
    /// The captioning of `images` by `checkpoint` these flags describe.
    pub(crate) fn task(
        &self,
        checkpoint: &Path,
        images: ImageSet,
        attention_dir: Option<PathBuf>,
        bad_images: Option<&BadImages>,
    ) -> anyhow::Result<CaptionTask> {
        Ok(CaptionTask {
            source: WeightsSource::from_arg(checkpoint, None)?,
            config: load_config(&self.config, &[])?,
            tokenizer: self.tokenizer.clone(),
            decoder: self.decoder,
            beam_prefix: self.beam_prefix,
            prior_penalty: self.prior_penalty,
            backward_weight: self.backward_weight,
            images,
            batch: self.batch,
            attention_dir,
            on_bad_image: bad_images.map_or(BadImagePolicy::Error, |b| b.on_bad_image),
            max_image_pixels: bad_images.map_or(DEFAULT_MAX_PIXELS, |b| b.max_image_pixels),
        })
    }
}

impl Caption {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let images = ImageSet::from_path(&self.images, self.image_dir.as_deref())?;
        let task = self.captioner.task(
            &self.checkpoint,
            images,
            self.attention_dir,
            Some(&self.bad_images),
        )?;
        let captions = self.device.dispatch(task)??;
        write_json(&self.output, &captions.results)?;
        println!(
            "wrote {} captions to {}",
            captions.results.len(),
            self.output.display()
        );
        if let Some(listing) = self.bad_images.report(&captions.skipped, &self.output)? {
            println!(
                "skipped {} unreadable images (listed in {})",
                captions.skipped.len(),
                listing.display()
            );
        }
        Ok(())
    }
}
