//! `cargo xtask export-backbone`: read a torchvision or VirTex checkpoint and
//! write the backbone under torchvision or Detectron2 names (VirTex's
//! `scripts/eval_detectron2.py` conversion step, without Python).

use std::path::Path;

use anyhow::Context;
use burn::backend::Flex;
use virtex_vision::ResNetConfig;
use virtex_vision::pytorch::{ExportNaming, TorchvisionWeights, export};

use crate::flags::{ExportBackbone, Naming, WeightsLayout};

impl WeightsLayout {
    /// The reader of a `.pth` in this layout.
    pub(crate) fn weights(self, path: &Path) -> TorchvisionWeights {
        match self {
            WeightsLayout::Torchvision => TorchvisionWeights::new(path),
            WeightsLayout::Virtex => TorchvisionWeights::virtex_checkpoint(path),
        }
    }
}

impl ExportBackbone {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let device = Default::default();
        let mut model = ResNetConfig::virtex(self.arch).init::<Flex>(&device);
        if let Some(path) = &self.checkpoint {
            model = self
                .layout
                .weights(path)
                .load(model)
                .with_context(|| format!("loading {} weights", self.arch))?;
        }
        let naming = match self.to {
            Naming::Torchvision => ExportNaming::Torchvision,
            Naming::Detectron2 => ExportNaming::Detectron2,
        };
        export(&model, &self.output, naming)?;
        println!(
            "wrote {} ({:?} names) to {}",
            self.arch,
            naming,
            self.output.display()
        );
        Ok(())
    }
}
