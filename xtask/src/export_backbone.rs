//! `cargo xtask export-backbone`: read a torchvision or VirTex checkpoint and
//! write the backbone under torchvision or Detectron2 names (VirTex's
//! `scripts/eval_detectron2.py` conversion step, without Python).

use anyhow::Context;
use burn::backend::Flex;
use virtex_vision::ResNetConfig;
use virtex_vision::pytorch::{ExportNaming, TorchvisionWeights, export};

use crate::flags::{ExportBackbone, Naming, WeightsLayout};

impl ExportBackbone {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let device = Default::default();
        let mut model = ResNetConfig::virtex(self.arch).init::<Flex>(&device);
        if let Some(path) = &self.checkpoint {
            let weights = match self.layout {
                WeightsLayout::Torchvision => TorchvisionWeights::new(path),
                WeightsLayout::Virtex => TorchvisionWeights::virtex_checkpoint(path),
            };
            model = weights
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
