//! `cargo xtask pretrain`: loads the config, picks the backend, runs
//! [`virtex_train::trainer::Pretraining`] and reports what it learned; a
//! captioning run's validation split is then captioned and scored by
//! [`RunCaptioning`], which rewrites the run's contact sheet with the figures.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use virtex_eval::run_captions::RunCaptioning;
use virtex_train::checkpoint::list_checkpoints;
use virtex_train::config::Config;
use virtex_train::device::DeviceSpec;
use virtex_train::distributed::{Launch, WorldSpec, parse_master_port};
use virtex_train::source::WeightsSource;
use virtex_train::trainer::{Pretraining, PretrainingSummary, default_output};
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
        if world.is_none() && self.device.0.len() > 1 {
            return self.launch();
        }
        let device = match &world {
            Some(spec) => self.device.for_local_rank(spec.local_rank)?,
            None => self.device.0[0],
        };
        let leader = world.as_ref().is_none_or(|spec| spec.rank == 0);
        if let Some(spec) = &mut world {
            spec.set_device(device)?;
            println!(
                "rank {} of {} (local rank {}) on {device}, meeting at {}; gradients averaged over {}",
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
        if !leader {
            // Rank 0 reports the run; the others only fail loudly.
            self.train(config, output, world, device)?;
            return Ok(());
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
        match (config.amp, device.precision(config.amp)?) {
            (false, _) => {}
            (true, Precision::Bf16) => {
                println!("AMP: convolutions and matrix products in bf16, the rest in f32")
            }
            (true, Precision::F32) => println!("AMP: not on {device} (f32 throughout)"),
        }
        let summary = self.train(config, output.clone(), world, device)?;
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
        match (&summary.checkpoint, &summary.contact_sheet) {
            // A captioning run that validated: the split it validated on,
            // captioned whole and scored; its contact sheet gets the
            // figures and the marks.
            (Some(checkpoint), Some(_)) => {
                let report = device.dispatch(RunCaptioning {
                    checkpoint: checkpoint.clone(),
                    split: "val".into(),
                })??;
                println!(
                    "{} split captioned by checkpoint {}: {}",
                    report.split, report.iteration, report.figures
                );
                println!("captions: {}", report.captions.display());
                println!(
                    "contact sheet (images, captions marked, references, figures): {}",
                    report.sheet.display()
                );
            }
            (None, Some(sheet)) => println!(
                "contact sheet (images, captions, references): {}",
                sheet.display()
            ),
            (_, None) => {}
        }
        if summary.skipped_images > 0 {
            println!(
                "skipped {} undecodable images ({} draws), DATA.ON_BAD_IMAGE skip:",
                summary.skipped_files.len(),
                summary.skipped_images
            );
            for bad in &summary.skipped_files {
                println!("  {bad}");
            }
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

impl Pretrain {
    /// Runs the pretraining of this process (a single process or a rank).
    fn train(
        &self,
        config: Config,
        output: PathBuf,
        world: Option<WorldSpec>,
        device: DeviceSpec,
    ) -> anyhow::Result<PretrainingSummary> {
        let precision = device.precision(config.amp)?;
        device
            .dispatch(Pretraining {
                config,
                output,
                resume: self.resume,
                init_from: self
                    .init_from
                    .as_deref()
                    .map(|path| WeightsSource::from_arg(path, self.layout))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--init-from: {e}"))?,
                world,
                precision,
            })?
            .context("pretraining stopped")
    }

    /// Starts this machine's ranks, one process of this same command per
    /// `--device`, and waits for them.
    fn launch(&self) -> anyhow::Result<()> {
        let world = &self.world;
        let nproc = self.device.0.len();
        let master_port = world
            .master_port
            .as_deref()
            .map(parse_master_port)
            .transpose()?;
        let mut launch = Launch::new(
            nproc,
            world.nnodes,
            world.node_rank,
            world.master_addr.clone(),
            master_port,
        )?;
        launch.share_cores(self.device.0[0]);
        let ranks = launch.ranks();
        println!(
            "starting ranks {}..{} of {} on {} (one process per device), meeting at {}:{}",
            ranks.start,
            ranks.end,
            launch.world_size(),
            self.device,
            launch.master_addr,
            launch.master_port
        );
        let program = std::env::current_exe().context("finding this program to start the ranks")?;
        launch.run(|_| {
            let mut command = std::process::Command::new(&program);
            command.args(std::env::args_os().skip(1));
            command
        })?;
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
