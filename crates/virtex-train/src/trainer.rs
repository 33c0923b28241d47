//! The pretraining loop (`scripts/pretrain_virtex.py`): iteration-based, with
//! the reference's schedule, periodic validation loss and checkpoints, exact
//! resume, and a stop on a non-finite loss.
//!
//! Everything random is a function of `RANDOM_SEED` and the iteration: the
//! loader draws each sample from `(seed, epoch, index)`, and the backend
//! (dropout) is reseeded with `seed + iteration` before every step. So a run
//! resumed from a checkpoint repeats the uninterrupted run's losses exactly
//! on the CPU. (burn's CPU backend has one generator per process: two runs in
//! one process at the same time would share it.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::tensor::{ElementConversion, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use virtex_data::coco::CocoCaptions;
use virtex_data::shards::StreamPosition;
use virtex_text::{PretrainingModel, PretrainingTask};
use virtex_vision::{AutodiffVisionBackend, Precision, VisionBackend};

use crate::batch::model_input;
use crate::checkpoint::{
    CheckpointMeta, checkpoint_path, list_checkpoints, load_checkpoint, prune_checkpoints,
    save_checkpoint,
};
use crate::config::Config;
use crate::contact_sheet::{SheetEntry, write_contact_sheet};
use crate::data::{Batches, Data, dataset_error};
use crate::device::{BackendTask, on_worker_thread};
use crate::distributed::{Replicas, WorldSpec};
use crate::error::TrainError;
use crate::init::InitReport;
use crate::metrics::MetricsLog;
use crate::optim::schedule::LrSchedule;
use crate::optim::{StepRates, VirtexOptimizer};
use crate::progress::Progress;
use crate::readings::{HostReadings, PendingReadings, StepReadings};
use crate::source::WeightsSource;
use crate::step::{StepGradients, forward_backward};

/// Validation images whose captions (by `MODEL.DECODER`) are logged, and
/// shown with their references in the run's contact sheet.
const LOGGED_CAPTIONS: usize = 8;

/// The contact sheet a captioning run leaves in its output directory.
pub const CONTACT_SHEET: &str = "captions.html";

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
    /// Captions of the first validation images at the last validation,
    /// with their references.
    pub captions: Vec<SampleCaption>,
    /// [`CONTACT_SHEET`] of those captions (captioning tasks).
    pub contact_sheet: Option<PathBuf>,
    /// Images skipped as undecodable (`DATA.ON_BAD_IMAGE: skip`).
    pub skipped_images: usize,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// What `init_from` loaded and left out.
    pub init: Option<InitReport>,
    /// Wall time of the run.
    pub seconds: f64,
}

/// A validation image's caption beside the dataset's.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleCaption {
    /// COCO image id.
    pub image_id: u64,
    /// The model's caption.
    pub caption: String,
    /// The dataset's captions.
    pub references: Vec<String>,
}

/// `captions` with each image's reference captions.
fn with_references(captions: &[(u64, String)], dataset: &CocoCaptions) -> Vec<SampleCaption> {
    captions
        .iter()
        .map(|(id, caption)| SampleCaption {
            image_id: *id,
            caption: caption.clone(),
            references: dataset
                .image(*id)
                .map(|image| image.captions.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// One validation pass.
struct Validation {
    /// Mean loss.
    loss: f64,
    /// Mean of each component, as `val_<name>`.
    parts: Map<String, Value>,
    /// Captions of the first images (captioning models).
    captions: Vec<(u64, String)>,
}

/// Mean loss (and components) over the validation batches, in eval mode,
/// plus captions of the first images for captioning models.
fn validate<B: VisionBackend>(
    model: &PretrainingModel<B>,
    data: &Data,
    config: &Config,
    device: &B::Device,
) -> Result<Validation, TrainError> {
    let limit = match config.train.validation_batches {
        0 => data.val.batches_per_epoch(),
        n => n.min(data.val.batches_per_epoch()),
    };
    let (mut total, mut parts) = (0.0, Map::new());
    let mut captions = Vec::new();
    for index in 0..limit {
        let batch = data.val.batch(0, index)?;
        let input = model_input::<B>(&batch, device);
        let output = model.forward(&input)?;
        total += output.loss.into_scalar().elem::<f64>();
        for (name, term) in output.components {
            let value = term.into_scalar().elem::<f64>();
            let entry = parts.entry(format!("val_{name}")).or_insert(json!(0.0));
            *entry = json!(entry.as_f64().unwrap_or(0.0) + value);
        }
        let captioning = matches!(
            config.model.name,
            PretrainingTask::Bicaptioning | PretrainingTask::Captioning
        );
        if index == 0
            && captioning
            && let Some(head) = model.transformer_head()
        {
            let count = LOGGED_CAPTIONS.min(batch.len());
            let features = model.visual.forward(input.images.narrow(0, 0, count));
            let decoder = config.caption_decoder(None);
            let decoded = decoder.decode(head, features, &mut StdRng::seed_from_u64(0));
            captions = batch
                .image_ids
                .iter()
                .zip(decoded)
                .map(|(&id, c)| (id, data.tokenizer.decode(&c.tokens)))
                .collect();
        }
    }
    for value in parts.values_mut() {
        *value = json!(value.as_f64().unwrap_or(0.0) / limit as f64);
    }
    Ok(Validation {
        loss: total / limit as f64,
        parts,
        captions,
    })
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
        let (rank, leader) = (replicas.rank(), replicas.is_leader());
        let started = Instant::now();
        std::fs::create_dir_all(&output).map_err(|source| TrainError::Output {
            path: output.clone(),
            source,
        })?;
        let existing = list_checkpoints(&output);
        if let (false, Some((_, newest))) = (resume, existing.last()) {
            return Err(TrainError::OutputHoldsRun {
                output,
                newest: newest.clone(),
            });
        }
        let data = Data::new(&config, rank, replicas.world_size())?;

        B::seed(&device, config.random_seed);
        let mut model = config.model_config().init::<B>(&device)?;
        let resuming = resume && !existing.is_empty();
        let mut init = None;
        if let (false, Some(source)) = (resuming, &init_from) {
            let (loaded, report) = source.init_model(model)?;
            model = loaded;
            init = Some(report);
        }
        let frozen = config.model.visual.frozen;
        if frozen {
            // No gradients, so no optimiser state; the forward pass runs the
            // backbone in inference mode (`step::forward_backward`).
            model.visual = model.visual.no_grad();
        }
        let mut optimizer = VirtexOptimizer::new(&model, &config.optim)?;
        let mut start = 0;
        let mut data_position = StreamPosition::START;
        let mut checkpoint = None;
        // `resume` with nothing written yet (a requeued job's first start,
        // or a new directory) is a fresh run.
        if let (true, Some((_, path))) = (resume, existing.last()) {
            let (loaded, meta) = load_checkpoint(path, model, &mut optimizer, &device)?;
            if meta.config.model != config.model || meta.config.data != config.data {
                return Err(TrainError::ResumeMismatch(path.clone()));
            }
            if config.data.shards.is_some() && meta.data_positions.len() != replicas.world_size() {
                return Err(TrainError::ResumeWorldSize {
                    checkpoint: path.clone(),
                    ranks: meta.data_positions.len(),
                    world: replicas.world_size(),
                });
            }
            model = loaded;
            start = meta.iteration;
            data_position = meta.data_positions.get(rank).copied().unwrap_or_default();
            checkpoint = Some(path.clone());
        }
        replicas.agree(
            "the iteration to start from (does every rank see the same --output?)",
            start,
        )?;
        let mut model = replicas.sync_parameters(model)?.with_precision(precision);

        let schedule = LrSchedule::new(&config.optim);
        let total = config.optim.num_iterations;
        let mut metrics = match leader {
            true => Some(MetricsLog::open(&output.join("metrics.jsonl"), start)?),
            false => None,
        };
        let mut batches =
            Batches::starting_at(&data.train, start, data_position, config.train.prefetch);
        let mut progress =
            leader.then(|| Progress::new("iteration", start, total, config.train.log_every));
        let mut summary = PretrainingSummary {
            start_iteration: start,
            iterations: start,
            losses: Vec::new(),
            val_loss: None,
            captions: Vec::new(),
            contact_sheet: None,
            skipped_images: 0,
            checkpoint: checkpoint.clone(),
            init,
            seconds: 0.0,
        };

        let mut last_captions = Vec::new();
        let mut pending = PendingReadings::<B::InnerBackend>::default();
        let mut window = Window::start();
        for iteration in start..total {
            let step_started = Instant::now();
            let batch = batches.next()?;
            // Time spent waiting for the loader: near 0 while its prefetch
            // keeps up, most of the step in a data-bound run.
            let data_wait_s = step_started.elapsed().as_secs_f64();
            // Each rank its own dropout masks; rank 0 those of a single process.
            let step_seed = config.random_seed.wrapping_add(iteration + 1)
                ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            B::seed(&device, step_seed);
            let step = on_worker_thread(|| forward_backward(&model, &batch, &device, frozen))?;
            let StepGradients {
                loss,
                components,
                grads,
            } = replicas.average(step, &model, &device)?;
            let multiplier = schedule.multiplier(iteration);
            let rates = StepRates {
                cnn_lr: config.optim.cnn_lr * multiplier,
                lr: config.optim.lr * multiplier,
            };
            let (updated, grad_norm) = on_worker_thread(|| optimizer.step(model, grads, rates));
            model = updated;
            let done = iteration + 1;
            let host = HostReadings {
                iteration: done,
                lr: rates.lr,
                cnn_lr: rates.cnn_lr,
                data_wait_s,
            };
            let grad_norm = grad_norm.unwrap_or_else(|| Tensor::zeros([1], &loss.device()));
            pending.push(host, loss, components, grad_norm);
            window.images += batch.len() * replicas.world_size();

            let validate_now = config.train.validate_every > 0
                && (done.is_multiple_of(config.train.validate_every) || done == total);
            let stop = replicas.any(progress.as_ref().is_some_and(Progress::stop_requested))?;
            let checkpoint_now =
                done.is_multiple_of(config.train.checkpoint_every.max(1)) || done == total || stop;
            // The device's readings come back once per log line, and before
            // anything that acts on them: a validation, a checkpoint (never
            // one of weights past a non-finite loss), the end.
            if done.is_multiple_of(config.train.log_every.max(1)) || validate_now || checkpoint_now
            {
                let mut values = pending.read();
                replicas.mean(&mut values)?;
                let steps = pending.take(&values);
                // Images of the global batches, all ranks together, over the
                // window's wall time (a GPU runs ahead of the host within it).
                let images_per_s = window.images as f64 / window.started.elapsed().as_secs_f64();
                for step in steps {
                    if !step.loss.is_finite() {
                        return Err(TrainError::NonFiniteLoss {
                            iteration: step.host.iteration,
                            loss: step.loss,
                            last_checkpoint: checkpoint,
                        });
                    }
                    let record = step_record(&step, images_per_s);
                    if let Some(metrics) = &mut metrics {
                        metrics.write(&Value::Object(record))?;
                    }
                    if let Some(progress) = &mut progress {
                        let mut readings = vec![("loss", step.loss)];
                        readings.extend(step.components.iter().copied());
                        readings.extend([
                            ("lr", step.host.lr),
                            ("cnn_lr", step.host.cnn_lr),
                            ("images/s", images_per_s),
                        ]);
                        progress.step(step.host.iteration, &readings);
                    }
                    summary.losses.push(step.loss);
                }
            }
            summary.iterations = done;

            if validate_now && leader {
                let Validation {
                    loss: val_loss,
                    parts,
                    captions,
                } = validate(&model.valid(), &data, &config, &device)?;
                let mut record = parts;
                record.insert("iteration".into(), json!(done));
                record.insert("val_loss".into(), json!(val_loss));
                record.insert(
                    "captions".into(),
                    json!(
                        captions
                            .iter()
                            .map(|(id, c)| json!({"image_id": id, "caption": c}))
                            .collect::<Vec<_>>()
                    ),
                );
                if let Some(metrics) = &mut metrics {
                    metrics.write(&Value::Object(record))?;
                }
                if let Some(progress) = &mut progress {
                    progress.validation(
                        done,
                        &[("loss", val_loss)],
                        &captions
                            .iter()
                            .map(|(id, c)| format!("image {id}: {c}"))
                            .collect::<Vec<_>>(),
                    );
                }
                summary.val_loss = Some(val_loss);
                last_captions = captions;
            }
            if checkpoint_now {
                let data_positions = replicas.positions(batches.position())?;
                let path = checkpoint_path(&output, done);
                if leader {
                    let meta = CheckpointMeta {
                        iteration: done,
                        optimizer_steps: optimizer.steps,
                        config: config.clone(),
                        data_positions,
                    };
                    save_checkpoint(&path, &model, &optimizer, &meta)?;
                    prune_checkpoints(&output, config.train.keep_last)?;
                }
                checkpoint = Some(path);
                summary.checkpoint = checkpoint.clone();
            }
            // A new window starts once this one's readings are out and its
            // validation and checkpoint are done: those are not training
            // throughput (as they were not part of a step's time before).
            if pending.is_empty() {
                window = Window::start();
            }
            if stop {
                break;
            }
        }
        if let Some(progress) = progress {
            progress.finish();
        }
        if let Some(metrics) = &metrics {
            metrics.plot(&output)?;
        }
        if !last_captions.is_empty() {
            // All references, whatever DATA.USE_SINGLE_CAPTION kept for training.
            let val =
                CocoCaptions::load(&config.data.root, "val").map_err(dataset_error(&config))?;
            summary.captions = with_references(&last_captions, &val);
            let path = output.join(CONTACT_SHEET);
            let entries: Vec<SheetEntry> = summary
                .captions
                .iter()
                .filter_map(|sample| {
                    let image = val.image(sample.image_id)?;
                    Some(SheetEntry {
                        image: image.path.clone(),
                        caption: sample.caption.clone(),
                        references: sample.references.clone(),
                    })
                })
                .collect();
            let title = format!(
                "{}: validation captions after {} iterations",
                output.display(),
                summary.iterations
            );
            write_contact_sheet(&path, &title, &entries).map_err(|source| {
                TrainError::ContactSheet {
                    path: path.clone(),
                    source,
                }
            })?;
            summary.contact_sheet = Some(path);
        }
        summary.skipped_images = data.skipped();
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }
}

/// The steps since the last log line: when they started, how many images.
struct Window {
    started: Instant,
    images: usize,
}

impl Window {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            images: 0,
        }
    }
}

/// A step's line in `metrics.jsonl`.
fn step_record(step: &StepReadings, images_per_s: f64) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("iteration".into(), json!(step.host.iteration));
    record.insert("loss".into(), json!(step.loss));
    for &(name, value) in &step.components {
        record.insert(name.into(), json!(value));
    }
    record.insert("lr".into(), json!(step.host.lr));
    record.insert("cnn_lr".into(), json!(step.host.cnn_lr));
    record.insert("grad_norm".into(), json!(step.grad_norm));
    record.insert("images_per_s".into(), json!(images_per_s));
    record.insert("data_wait_s".into(), json!(step.host.data_wait_s));
    record
}

/// Where a run writes by default: `runs/<config file stem>`.
pub fn default_output(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "pretrain".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(stem)
}
