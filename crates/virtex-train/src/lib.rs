//! # virtex-train
//!
//! VirTex pretraining: the five pretraining tasks, the reference's optimiser
//! (SGD/AdamW, two learning rates, Lookahead, gradient clipping), warm-up +
//! decay schedules, atomic checkpoints and the training loop. burn's CUDA
//! backend sits behind the `cuda` feature; the CPU backend is burn's `Flex`.
//!
//! Today it owns the backend choice ([`device`]); the training loop arrives
//! with issue #5.
//!
//! ```
//! use virtex_train::device::DeviceSpec;
//!
//! let device: DeviceSpec = "cuda:1".parse().unwrap();
//! assert_eq!(device, DeviceSpec::Cuda(1));
//! assert_eq!(device.to_string(), "cuda:1");
//! ```

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod trainer;
