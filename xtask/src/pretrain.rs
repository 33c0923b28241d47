//! `cargo xtask pretrain`: loads the config, picks the backend, runs
//! [`virtex_train::trainer::Pretraining`] and reports what it learned.

use std::time::Duration;

use anyhow::Context;
use virtex_train::checkpoint::list_checkpoints;
use virtex_train::config::Config;
use virtex_train::device::DeviceSpec;
use virtex_train::distributed::WorldSpec;
use virtex_train::source::WeightsSource;
use virtex_train::trainer::{Pretraining, default_output};
use virtex_vision::Precision;

use crate::flags::{Pretrain, World};
use crate::{project_file, project_root};

impl Pretrain {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        // Paths given on the command line are relative to where it was run
        // (the default config, when not found there, to the repository root);
        // paths inside configs (DATA.ROOT, …) to the config file naming them.
        let config_path = project_file(&self.config);
        let output = match &self.output {
            Some(output) => output.clone(),
            None => project_root().join(default_output(&config_path)),
        };
        let config = Config::load(Some(&config_path), &self.overrides)?;
        let mut world = self.world.spec()?;
        if let Some(spec) = &mut world {
            // A GPU rank all-reduces its gradients over NCCL on its device.
            if let [DeviceSpec::Cuda(ordinal)] = self.device.0.as_slice() {
                spec.nccl_device = Some(*ordinal);
            }
            println!(
                "rank {} of {} (local rank {}), meeting at {}; gradients averaged over {}",
                spec.rank,
                spec.world_size,
                spec.local_rank,
                spec.master(),
                if spec.nccl_device.is_some() {
                    "NCCL"
                } else {
                    "TCP through rank 0"
                }
            );
        }
        if self.resume && list_checkpoints(&output).is_empty() {
            println!(
                "--resume: no checkpoint in {} yet; starting a fresh run",
                output.display()
            );
        }
        println!(
            "pretraining {} ({} + {}) for {} iterations of {} images on {}; output in {}",
            config.model.name,
            config.model.visual.name,
            config.model.textual.name,
            config.optim.num_iterations,
            config.optim.batch_size,
            self.device,
            output.display()
        );
        let precision = self.device.precision(config.amp);
        match (config.amp, precision) {
            (false, _) => {}
            (true, Precision::Bf16) => {
                println!("AMP: convolutions and matrix products in bf16, the rest in f32")
            }
            (true, Precision::F32) => println!("AMP: not on {} (f32 throughout)", self.device),
        }
        let summary = self
            .device
            .dispatch(Pretraining {
                config,
                output: output.clone(),
                resume: self.resume,
                init_from: self
                    .init_from
                    .as_deref()
                    .map(|path| WeightsSource::from_arg(path, self.layout)),
                world,
                precision,
            })?
            .context("pretraining stopped")?;
        let losses = &summary.losses;
        if losses.is_empty() {
            println!(
                "nothing to do: {} already completed {} iterations",
                output.display(),
                summary.iterations
            );
        } else {
            let window = losses.len().min(10);
            let mean = |part: &[f64]| part.iter().sum::<f64>() / part.len() as f64;
            println!(
                "done: iterations {}..{} in {:.0} s; training loss {:.3} (mean of the first {window}) -> {:.3} (last {window})",
                summary.start_iteration,
                summary.iterations,
                summary.seconds,
                mean(&losses[..window]),
                mean(&losses[losses.len() - window..]),
            );
        }
        if let Some(val) = summary.val_loss {
            println!("validation loss {val:.3}");
        }
        for sample in &summary.captions {
            println!("  val image {}: {}", sample.image_id, sample.caption);
            if !sample.references.is_empty() {
                println!("      references: {}", sample.references.join(" | "));
            }
        }
        if let Some(sheet) = &summary.contact_sheet {
            println!(
                "contact sheet (images, captions, references): {}",
                sheet.display()
            );
        }
        if summary.skipped_images > 0 {
            println!("skipped {} undecodable images", summary.skipped_images);
        }
        if let Some(init) = &summary.init {
            println!(
                "--init-from: loaded {} tensors; {} kept their fresh values{}",
                init.loaded,
                init.left_out.len(),
                init.left_out
                    .iter()
                    .map(|t| format!("\n  {t}"))
                    .collect::<String>()
            );
            if !init.unused.is_empty() {
                println!("  unused from the source: {}", init.unused.join(", "));
            }
        }
        if let Some(checkpoint) = &summary.checkpoint {
            println!("checkpoint: {}", checkpoint.display());
        }
        Ok(())
    }
}

impl World {
    /// The place the flags (or torchrun's variables) describe.
    fn spec(&self) -> anyhow::Result<Option<WorldSpec>> {
        let vars = [
            ("RANK", &self.rank),
            ("WORLD_SIZE", &self.world_size),
            ("LOCAL_RANK", &self.local_rank),
            ("MASTER_ADDR", &self.master_addr),
            ("MASTER_PORT", &self.master_port),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .and_then(|(_, value)| (*value).clone())
        };
        Ok(WorldSpec::from_vars(
            lookup,
            Duration::from_secs(self.dist_timeout),
        )?)
    }
}
