//! How a run starts: afresh (from what fits of `--init-from`'s weights, if
//! given) or, with `--resume`, from the newest checkpoint of its output
//! directory; and the checks that keep a resume from continuing another run.
//!
//! The decisions and checks ([`Start::decide`], [`check_resume`]) are pure
//! functions of the flags, the checkpoints found and their metadata, so they
//! are tested without training; [`Start::prepare`] builds the model and the
//! optimiser they describe.

use std::path::{Path, PathBuf};

use burn::module::Module;
use virtex_data::shards::StreamPosition;
use virtex_text::PretrainingModel;
use virtex_vision::AutodiffVisionBackend;

use crate::checkpoint::{CheckpointMeta, load_checkpoint, read_meta};
use crate::config::Config;
use crate::error::TrainError;
use crate::init_from::InitReport;
use crate::optim::VirtexOptimizer;
use crate::source::WeightsSource;
use crate::trainer::GuardState;

/// Where a run starts, from `--resume` and the checkpoints its output holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// A new run.
    Fresh,
    /// Continue from this checkpoint (the newest).
    Resume(PathBuf),
}

/// Where the loop starts.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StartPoint {
    /// Iterations already done.
    pub iteration: u64,
    /// Where this rank's shard stream continues.
    pub data_position: StreamPosition,
    /// The checkpoint resumed from.
    pub checkpoint: Option<PathBuf>,
    /// The divergence guard's state it kept.
    pub guard: Option<GuardState>,
}

/// A run's model and optimiser, ready for its first iteration.
pub(super) struct Started<B: AutodiffVisionBackend> {
    /// The model (fresh, from `--init-from`, or the checkpoint's).
    pub model: PretrainingModel<B>,
    /// The optimiser (with the checkpoint's state when resuming).
    pub optimizer: VirtexOptimizer<B>,
    /// What `--init-from` loaded and left out (a fresh run given one).
    pub init: Option<InitReport>,
    /// Where the loop starts.
    pub at: StartPoint,
}

impl Start {
    /// `--resume` (`resume`) continues from the newest of `existing`, the
    /// checkpoints in `output` (oldest first), and is a fresh run where
    /// there are none yet (a requeued job's first start, a new directory).
    /// Without it, a directory that holds checkpoints is refused rather
    /// than overwritten.
    pub fn decide(
        output: &Path,
        resume: bool,
        existing: &[(u64, PathBuf)],
    ) -> Result<Self, TrainError> {
        match (resume, existing.last()) {
            (_, None) => Ok(Self::Fresh),
            (true, Some((_, newest))) => Ok(Self::Resume(newest.clone())),
            (false, Some((_, newest))) => Err(TrainError::OutputHoldsRun {
                output: output.to_path_buf(),
                newest: newest.clone(),
            }),
        }
    }

    /// The model `config` describes on `device` (from what fits of
    /// `init_from` in a fresh run), its optimiser, and, when resuming, both
    /// loaded from the checkpoint, whose config and data positions
    /// [`check_resume`] must then accept for rank `rank` of `world_size`.
    pub fn prepare<B: AutodiffVisionBackend>(
        &self,
        config: &Config,
        init_from: Option<&WeightsSource>,
        device: &B::Device,
        rank: usize,
        world_size: usize,
    ) -> Result<Started<B>, TrainError> {
        B::seed(device, config.random_seed);
        let mut model = config.model_config().init::<B>(device)?;
        let mut init = None;
        if let (Self::Fresh, Some(source)) = (self, init_from) {
            let (loaded, report) = source.init_model(model)?;
            model = loaded;
            init = Some(report);
        }
        if config.model.visual.frozen {
            // No gradients, so no optimiser state; the forward pass runs the
            // backbone in inference mode (`step::forward_backward`).
            model.visual = model.visual.no_grad();
        }
        let mut optimizer = VirtexOptimizer::new(&model, &config.optim)?;
        let Self::Resume(path) = self else {
            let at = StartPoint {
                iteration: 0,
                data_position: StreamPosition::START,
                checkpoint: None,
                guard: None,
            };
            return Ok(Started {
                model,
                optimizer,
                init,
                at,
            });
        };
        // The metadata first: a checkpoint of another run is named as such,
        // not as a model whose tensors do not fit.
        let meta = read_meta(path).map_err(TrainError::ResumeUnreadable)?;
        check_resume(config, &meta, path, world_size)?;
        let (model, meta) = load_checkpoint(path, model, &mut optimizer, device)
            .map_err(TrainError::ResumeUnreadable)?;
        let at = StartPoint {
            iteration: meta.iteration,
            data_position: meta.data_positions.get(rank).copied().unwrap_or_default(),
            checkpoint: Some(path.clone()),
            guard: meta.divergence_guard,
        };
        Ok(Started {
            model,
            optimizer,
            init,
            at,
        })
    }
}

/// Whether a run of `config` over `world_size` ranks may continue from
/// `checkpoint`, whose metadata is `meta`: the same `MODEL` and `DATA`
/// settings (the optimiser's and `TRAIN`'s may change, say to train
/// longer), and for a shard run one recorded stream position per rank.
pub(super) fn check_resume(
    config: &Config,
    meta: &CheckpointMeta,
    checkpoint: &Path,
    world_size: usize,
) -> Result<(), TrainError> {
    if meta.config.model != config.model || meta.config.data != config.data {
        return Err(TrainError::ResumeMismatch(checkpoint.to_path_buf()));
    }
    if config.data.shards.is_some() && meta.data_positions.len() != world_size {
        return Err(TrainError::ResumeWorldSize {
            checkpoint: checkpoint.to_path_buf(),
            ranks: meta.data_positions.len(),
            world: world_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoints(iterations: &[u64]) -> Vec<(u64, PathBuf)> {
        iterations
            .iter()
            .map(|&i| (i, PathBuf::from(format!("run/checkpoint_{i}.safetensors"))))
            .collect()
    }

    #[test]
    fn a_fresh_run_refuses_an_output_that_holds_a_run() {
        let output = Path::new("run");
        assert_eq!(Start::decide(output, false, &[]).unwrap(), Start::Fresh);
        let err = Start::decide(output, false, &checkpoints(&[2, 4])).unwrap_err();
        let TrainError::OutputHoldsRun {
            output: named,
            newest,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(named, output);
        assert_eq!(newest, Path::new("run/checkpoint_4.safetensors"));
        assert!(err.to_string().contains("pass --resume"), "{err}");
    }

    #[test]
    fn resume_continues_from_the_newest_checkpoint_or_starts_fresh() {
        let output = Path::new("run");
        assert_eq!(Start::decide(output, true, &[]).unwrap(), Start::Fresh);
        assert_eq!(
            Start::decide(output, true, &checkpoints(&[2, 4, 6])).unwrap(),
            Start::Resume("run/checkpoint_6.safetensors".into())
        );
    }

    fn meta(config: Config, ranks: usize) -> CheckpointMeta {
        let at = StreamPosition {
            epoch: 0,
            offset: 8,
        };
        CheckpointMeta {
            iteration: 2,
            optimizer_steps: 2,
            config,
            data_positions: vec![at; ranks],
            divergence_guard: None,
        }
    }

    #[test]
    fn a_resume_needs_the_same_model_and_data() {
        let path = Path::new("run/checkpoint_2.safetensors");
        let config = Config::default();
        assert!(check_resume(&config, &meta(config.clone(), 0), path, 1).is_ok());

        // Training longer, or with another learning rate, is a resume.
        let mut longer = config.clone();
        longer.optim.num_iterations *= 2;
        longer.optim.lr /= 2.0;
        longer.train.checkpoint_every = 7;
        assert!(check_resume(&longer, &meta(config.clone(), 0), path, 1).is_ok());

        let mut other_model = config.clone();
        other_model.model.textual.dropout = 0.5;
        let mut other_data = config.clone();
        other_data.data.max_caption_length += 1;
        for changed in [other_model, other_data] {
            let err = check_resume(&changed, &meta(config.clone(), 0), path, 1).unwrap_err();
            assert!(
                matches!(&err, TrainError::ResumeMismatch(p) if p == path),
                "{err}"
            );
            assert_eq!(
                err.to_string(),
                "--resume: run/checkpoint_2.safetensors was written with different MODEL or \
                 DATA settings"
            );
        }
    }

    #[test]
    fn a_shard_run_resumes_with_as_many_ranks_as_it_recorded() {
        let path = Path::new("run/checkpoint_2.safetensors");
        let mut config = Config::default();
        config.data.shards = Some("shards/train-{000..003}.tar".into());
        assert!(check_resume(&config, &meta(config.clone(), 2), path, 2).is_ok());
        let err = check_resume(&config, &meta(config.clone(), 2), path, 1).unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::ResumeWorldSize {
                    ranks: 2,
                    world: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("records the shard streams of 2 ranks; resume it with WORLD_SIZE=2"),
            "{err}"
        );
        // A COCO-format split's position follows from the iteration: any
        // number of ranks resumes it.
        let coco = Config::default();
        assert!(check_resume(&coco, &meta(coco.clone(), 0), path, 4).is_ok());
    }
}
