//! # virtex-train
//!
//! VirTex pretraining: the five pretraining tasks, the reference's optimiser
//! (SGD/AdamW, two learning rates, Lookahead, gradient clipping), warm-up +
//! decay schedules, atomic checkpoints and the training loop. burn's CUDA
//! backend sits behind the `cuda` feature; the CPU backend is burn's `Flex`.
//!
//! - [`config`]: the reference's config tree; its YAML files load as they are.
//! - [`optim`]: SGD/AdamW with the reference's parameter groups, clipping,
//!   Lookahead; [`optim::schedule`] the warm-up + decay multipliers.
//! - [`source`]: weights from a virtex-rs checkpoint, an official VirTex or
//!   torchvision `.pth`, or fresh ones, for a backbone or a whole model;
//!   [`init_from`] starts a different model from what fits of them
//!   (`--init-from`).
//! - [`trainer`]: [`trainer::Pretraining`], the loop, run on a backend chosen
//!   by [`device`]. Each iteration takes a [`step`] (its loader batch made
//!   tensors by [`model_input`], on the thread [`worker`] picks);
//!   [`readings`] keeps each step's loss on the device until it is logged;
//!   [`checkpoint`], [`metrics`], [`progress`] (plain lines or, feature
//!   `dashboard`, burn-train's terminal dashboard) and [`contact_sheet`]
//!   serve it; a private `data` module builds its datasets and loaders;
//!   [`error`]'s [`TrainError`] says why a run could not start or stopped.
//! - [`distributed`]: one process per rank, launched with torchrun's
//!   variables or by [`distributed::Launch`] (one per device); the ranks meet
//!   over TCP and average every step's gradients (over NCCL on GPUs).
//!
//! ```
//! use virtex_train::config::Config;
//! use virtex_train::device::DeviceSpec;
//! use virtex_train::optim::schedule::LrSchedule;
//!
//! // The reference's defaults, with overrides as `--set` gives them.
//! let config = Config::load(None, &["OPTIM.NUM_ITERATIONS=1000".into(), "OPTIM.WARMUP_STEPS=100".into()])?;
//! assert_eq!(config.optim.cnn_lr, 0.2);
//! let schedule = LrSchedule::new(&config.optim);
//! assert_eq!(schedule.multiplier(0), 0.0);
//! assert_eq!(schedule.multiplier(50), 0.5);
//!
//! let device: DeviceSpec = "cuda:1".parse().unwrap();
//! assert_eq!(device, DeviceSpec::Cuda(1));
//! # Ok::<(), virtex_train::config::ConfigError>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod contact_sheet;
mod data;
pub mod device;
pub mod distributed;
pub mod error;
pub mod init_from;
pub mod metrics;
pub mod model_input;
pub mod optim;
pub mod progress;
pub mod readings;
pub mod source;
pub mod step;
pub mod trainer;
pub mod worker;

pub use error::TrainError;
