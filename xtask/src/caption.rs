//! `cargo xtask caption`: [`virtex_eval::captioner`] over a folder or a COCO split.

use std::path::{Path, PathBuf};

use virtex_eval::captioner::{CaptionTask, ImageSet};
use virtex_train::source::{PthLayout, WeightsSource};

use crate::flags::{Caption, Captioner};
use crate::{load_config, write_json};

impl Captioner {
    /// The captioning of `images` by `checkpoint` these flags describe.
    pub(crate) fn task(
        &self,
        checkpoint: &Path,
        images: ImageSet,
        attention_dir: Option<PathBuf>,
    ) -> anyhow::Result<CaptionTask> {
        Ok(CaptionTask {
            source: WeightsSource::from_arg(checkpoint, PthLayout::Virtex),
            config: load_config(&self.config, &[])?,
            tokenizer: self.tokenizer.clone(),
            decoder: self.decoder,
            beam_prefix: self.beam_prefix,
            images,
            batch: self.batch,
            attention_dir,
        })
    }
}

impl Caption {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let images = ImageSet::from_path(&self.images, self.image_dir.as_deref())?;
        let task = self
            .captioner
            .task(&self.checkpoint, images, self.attention_dir)?;
        let captions = self.device.dispatch(task)??;
        write_json(&self.output, &captions)?;
        println!(
            "wrote {} captions to {}",
            captions.len(),
            self.output.display()
        );
        Ok(())
    }
}
