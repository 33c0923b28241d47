//! `cargo xtask caption`: [`virtex_eval::captioner`] over a folder or a COCO split.

use virtex_eval::captioner::{CaptionTask, ImageSet};
use virtex_train::source::{PthLayout, WeightsSource};

use crate::flags::Caption;
use crate::{load_config, write_json};

impl Caption {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let task = CaptionTask {
            source: WeightsSource::from_arg(&self.checkpoint, PthLayout::Virtex),
            config: load_config(&self.config, &[])?,
            tokenizer: self.tokenizer,
            decoder: self.decoder,
            beam_prefix: self.beam_prefix,
            images: ImageSet::from_path(&self.images, self.image_dir.as_deref())?,
            batch: self.batch,
            attention_dir: self.attention_dir,
        };
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
