//! `cargo xtask export-backbone`: [`WeightsSource::export_backbone`] under
//! either naming, from any weights `evaluate` reads or fresh ones.

use virtex_train::source::WeightsSource;

use crate::flags::ExportBackbone;

impl ExportBackbone {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let source = match &self.checkpoint {
            Some(path) => WeightsSource::from_arg(path, self.layout)?,
            None => WeightsSource::Random,
        };
        source.export_backbone(self.arch, &self.output, self.to)?;
        println!(
            "wrote {} ({:?} names) to {}",
            self.arch,
            self.to,
            self.output.display()
        );
        Ok(())
    }
}
