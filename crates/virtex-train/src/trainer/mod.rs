//! The pretraining loop (`scripts/pretrain_virtex.py`): iteration-based, with
//! the reference's schedule, periodic validation loss and checkpoints, exact
//! resume, and a stop on a non-finite loss or a diverging one.
//!
//! This module is the loop; each of its jobs has a module of its own:
//! - `resume`: a fresh run, a resumed one or one from `--init-from`'s
//!   weights, and the checks that keep a resume from continuing another run;
//! - `steps`: an iteration's step, and reading the steps' results back from
//!   the device;
//! - `log`: the records of a run, in `metrics.jsonl` and on the live
//!   progress;
//! - `validation`: the validation loss and captions;
//! - `guard`: the divergence guard, which stops a run whose loss leaves its
//!   range and names the last good checkpoint, which pruning keeps;
//! - `captions`: the validation images a run captions ([`sheet_sample`]),
//!   their captions beside their references, and the run's contact sheet
//!   ([`CONTACT_SHEET`]).
//!
//! Everything random is a function of `RANDOM_SEED` and the iteration: the
//! loader draws each sample from `(seed, epoch, index)`, and before the step
//! of iteration `i` (counted from 0) the backend (dropout) is reseeded with
//! `virtex_data::seed::mix(seed + i + 1, rank)`: `seed + i + 1` itself on
//! rank 0 and in a single process (`mix` leaves stream 0's seed as it is),
//! a seed of its own on every other rank. So a run resumed from a checkpoint
//! repeats the uninterrupted run's losses exactly on the CPU. (burn's CPU
//! backend has one generator per process: two runs in one process at the
//! same time would share it.)

mod captions;
mod guard;
mod log;
mod resume;
mod steps;
mod validation;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use virtex_data::images::ImageError;
use virtex_vision::{AutodiffVisionBackend, Precision};

use crate::checkpoint::{
    CheckpointError, CheckpointMeta, checkpoint_path, list_checkpoints, prune_checkpoints,
    save_checkpoint,
};
use crate::config::Config;
use crate::data::{Batches, Data};
use crate::device::BackendTask;
use crate::distributed::{Replicas, WorldSpec};
use crate::error::TrainError;
use crate::init_from::InitReport;
use crate::readings::StepReadings;
use crate::source::WeightsSource;

pub use captions::{
    CONTACT_SHEET, SHEET_IMAGES, SampleCaption, sheet_entry, sheet_sample, write_run_sheet,
};
use guard::{Diverged, DivergenceGuard};
pub use guard::{GuardState, LossWindow, peak_window_ratio};
use log::RunLog;
use resume::{Start, StartPoint, Started};
use steps::Steps;
use validation::validate;

/// A pretraining run.
#[derive(Clone, Debug)]
pub struct Pretraining {
    /// The configuration.
    pub config: Config,
    /// Where checkpoints, `metrics.jsonl` and plots go.
    pub output: PathBuf,
    /// Continue from the newest checkpoint in `output` (a fresh run when it
    /// holds none).
    pub resume: bool,
    /// Start a fresh run from what fits of these weights (ignored when
    /// resuming from a checkpoint).
    pub init_from: Option<WeightsSource>,
    /// This process's place in a multi-process data-parallel run (`None`:
    /// a single process). Every rank trains on its share of each batch;
    /// rank 0 alone validates, logs and writes checkpoints, into an
    /// `output` every rank must see (as the reference's).
    pub world: Option<WorldSpec>,
    /// What the convolutions and the Transformer's matrix products compute
    /// in; [`crate::device::DeviceSpec::precision`] turns the config's `AMP`
    /// into it for the devices at hand (bf16 on CUDA, f32 on the CPU).
    pub precision: Precision,
}

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainingSummary {
    /// The iteration the run started from (0, or the resumed checkpoint's).
    pub start_iteration: u64,
    /// Iterations completed in all.
    pub iterations: u64,
    /// Training loss of each iteration this run performed.
    pub losses: Vec<f64>,
    /// The last validation loss.
    pub val_loss: Option<f64>,
    /// Captions of the contact sheet's validation images
    /// ([`sheet_sample`]) at the last validation, with their references.
    pub captions: Vec<SampleCaption>,
    /// [`CONTACT_SHEET`] of those captions (captioning tasks).
    pub contact_sheet: Option<PathBuf>,
    /// Images skipped as undecodable (`DATA.ON_BAD_IMAGE: skip`), counted
    /// each time one was drawn.
    pub skipped_images: usize,
    /// Those images, each once, by path, with why they were left out.
    pub skipped_files: Vec<ImageError>,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// What `init_from` loaded and left out.
    pub init: Option<InitReport>,
    /// Wall time of the run.
    pub seconds: f64,
}

impl PretrainingSummary {
    /// A run starting at `at`, nothing done yet.
    fn starting(at: &StartPoint, init: Option<InitReport>) -> Self {
        Self {
            start_iteration: at.iteration,
            iterations: at.iteration,
            losses: Vec::new(),
            val_loss: None,
            captions: Vec::new(),
            contact_sheet: None,
            skipped_images: 0,
            skipped_files: Vec::new(),
            checkpoint: at.checkpoint.clone(),
            init,
            seconds: 0.0,
        }
    }
}

impl BackendTask for Pretraining {
    type Output = Result<PretrainingSummary, TrainError>;

    /// Trains on `device`, data-parallel with the other processes of
    /// [`Pretraining::world`].
    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let mut replicas = Replicas::join(self.world.as_ref())?;
        let result = self.train::<B>(device, &mut replicas);
        if let Err(err) = &result {
            replicas.abort(&format!("rank {}: {err}", replicas.rank()));
        }
        result
    }
}

impl Pretraining {
    fn train<B: AutodiffVisionBackend>(
        self,
        device: B::Device,
        replicas: &mut Replicas,
    ) -> Result<PretrainingSummary, TrainError> {
        let Self {
            config,
            output,
            resume,
            init_from,
            world: _,
            precision,
        } = self;
        config.check("the run's config")?;
        let (rank, leader) = (replicas.rank(), replicas.is_leader());
        let started = Instant::now();
        std::fs::create_dir_all(&output).map_err(|source| TrainError::Output {
            path: output.clone(),
            source,
        })?;
        let start = Start::decide(&output, resume, &list_checkpoints(&output))?;
        let data = Data::new(&config, rank, replicas.world_size())?;
        let Started {
            model,
            mut optimizer,
            init,
            at,
        } = start.prepare::<B>(
            &config,
            init_from.as_ref(),
            &device,
            rank,
            replicas.world_size(),
        )?;
        replicas.agree(
            "the iteration to start from (does every rank see the same --output?)",
            at.iteration,
        )?;
        let mut model = replicas.sync_parameters(model)?.with_precision(precision);

        let total = config.optim.num_iterations;
        let mut log = RunLog::open(leader, &output, at.iteration, total, config.train.log_every)?;
        let mut batches = Batches::starting_at(
            &data.train,
            at.iteration,
            at.data_position,
            config.train.prefetch,
        );
        let mut summary = PretrainingSummary::starting(&at, init);
        let (factor, window) = (
            config.train.divergence_factor,
            config.train.divergence_window,
        );
        let mut guard = match &at.checkpoint {
            None => DivergenceGuard::new(factor, window),
            Some(_) => DivergenceGuard::resumed(factor, window, at.iteration, at.guard, |i| {
                checkpoint_path(&output, i).is_file()
            }),
        };
        let mut checkpoint = at.checkpoint;
        let mut last_captions = Vec::new();
        let mut steps = Steps::<B>::new(&config, &device);
        for iteration in at.iteration..total {
            model = steps.step(model, &mut optimizer, &mut batches, replicas, iteration)?;
            let done = iteration + 1;
            let due = config.train.due(done, total);
            let stop = replicas.any(log.stop_requested())?;
            let checkpoint_now = due.checkpoint || stop;
            // The device's readings come back once per log line, and before
            // anything that acts on them: a validation, a checkpoint (never
            // one of weights past a non-finite loss, nor past a window the
            // divergence guard has seen diverge), the end.
            if due.log || due.validate || checkpoint_now {
                let (read, images_per_s) = steps.read(replicas)?;
                for step in read {
                    finite(&step, || good_checkpoint(&guard, &output, &checkpoint))?;
                    log.step(&step, images_per_s)?;
                    summary.losses.push(step.loss);
                    guard
                        .observe(step.host.iteration, step.loss)
                        .map_err(|diverged| divergence(&config, &output, &step, &diverged))?;
                }
            }
            summary.iterations = done;

            if due.validate && leader {
                let validation = validate(&model.valid(), &data, &config, &device)?;
                log.validation(done, &validation)?;
                summary.val_loss = Some(validation.loss);
                last_captions = validation.captions;
            }
            if checkpoint_now {
                let data_positions = replicas.positions(batches.position())?;
                let path = checkpoint_path(&output, done);
                guard.checkpointed(done);
                if leader {
                    let meta = CheckpointMeta {
                        iteration: done,
                        optimizer_steps: optimizer.steps,
                        config: config.clone(),
                        data_positions,
                        divergence_guard: guard.state(),
                    };
                    let previous = checkpoint.as_deref();
                    save_checkpoint(&path, &model, &optimizer, &meta)
                        .map_err(|err| write_failed(err, previous))?;
                    // The good checkpoint, if older than KEEP_LAST's, stays.
                    let good = guard.good_checkpoint().map(|i| checkpoint_path(&output, i));
                    prune_checkpoints(&output, config.train.keep_last, good.as_deref())?;
                }
                checkpoint = Some(path);
                summary.checkpoint = checkpoint.clone();
            }
            // Once the readings are out and the validation and checkpoint
            // done: those are not training throughput.
            steps.next_window();
            if stop {
                break;
            }
        }
        log.finish(&output)?;
        if !last_captions.is_empty() {
            let (captions, sheet) = captions::contact_sheet(
                data.val.dataset(),
                &output,
                &last_captions,
                summary.iterations,
            )?;
            summary.captions = captions;
            summary.contact_sheet = Some(sheet);
        }
        summary.skipped_images = data.skipped();
        summary.skipped_files = data.skipped_images();
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }
}

/// Stops the run at a step whose loss is NaN or infinite, naming the last
/// good checkpoint.
fn finite(
    step: &StepReadings,
    last_good: impl FnOnce() -> Option<PathBuf>,
) -> Result<(), TrainError> {
    if step.loss.is_finite() {
        return Ok(());
    }
    Err(TrainError::NonFiniteLoss {
        iteration: step.host.iteration,
        loss: step.loss,
        last_checkpoint: last_good(),
    })
}

/// The last good checkpoint in `output`: the divergence guard's, or where
/// it has none (the guard off, no window full yet), `newest`, the newest
/// written.
fn good_checkpoint(
    guard: &DivergenceGuard,
    output: &Path,
    newest: &Option<PathBuf>,
) -> Option<PathBuf> {
    guard
        .good_checkpoint()
        .map(|iteration| checkpoint_path(output, iteration))
        .or_else(|| newest.clone())
}

/// The error of a run of `config` into `output` that `diverged` at `step`.
fn divergence(
    config: &Config,
    output: &Path,
    step: &StepReadings,
    diverged: &Diverged,
) -> TrainError {
    TrainError::Diverged {
        iteration: diverged.window.end,
        loss: step.loss,
        window: diverged.window,
        best: diverged.best,
        factor: config.train.divergence_factor,
        last_good_checkpoint: diverged
            .good_checkpoint
            .map(|iteration| checkpoint_path(output, iteration)),
    }
}

/// A checkpoint that could not be written: its path and the I/O error, and
/// `previous`, the checkpoint before it, which the atomic write leaves
/// intact.
fn write_failed(err: CheckpointError, previous: Option<&Path>) -> TrainError {
    match err {
        CheckpointError::Io { path, source } => TrainError::CheckpointWrite {
            path,
            source,
            previous: previous.map(Path::to_path_buf),
        },
        other => other.into(),
    }
}

/// Where a run writes by default: `runs/<config file stem>`.
pub fn default_output(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "pretrain".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(stem)
}
