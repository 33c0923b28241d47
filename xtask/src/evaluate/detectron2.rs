//! `cargo xtask evaluate detectron2-export`: the backbone of any supported
//! checkpoint under Detectron2's names (`scripts/eval_detectron2.py`'s
//! conversion), for Detectron2 fine-tuning in Python.

use anyhow::Context;
use burn::backend::Flex;
use virtex_vision::pytorch::{ExportNaming, export};

use crate::flags::Detectron2Export;

impl Detectron2Export {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let model = self.backbone.load::<Flex>(&Default::default())?;
        export(&model, &self.output, ExportNaming::Detectron2)
            .with_context(|| format!("writing {}", self.output.display()))?;
        println!(
            "wrote the backbone of {} under Detectron2 names to {}",
            self.backbone.checkpoint.display(),
            self.output.display()
        );
        Ok(())
    }
}
