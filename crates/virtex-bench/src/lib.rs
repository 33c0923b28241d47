//! # virtex-bench
//!
//! The measurements recorded in docs/benchmarks.md: each workload of
//! virtex-rs beside the same workload in PyTorch (`tools/bench/*.py`), run on
//! the same machine in the same run, so ratios survive a noisy, shared CPU;
//! and what the bundled pretraining gives, seed by seed ([`first_run`]).
//!
//! - [`train`]: the pretraining step (forward + backward + optimiser) of a
//!   config, each row in a child process for an honest peak RSS;
//!   [`gpu_check`] is its GPU variant with the reference's base config.
//! - [`extract`]: frozen-backbone feature extraction.
//! - [`caption`]: caption latency (backbone + incremental decoding) against
//!   the reference's beam search.
//! - [`data`]: the captioning data pipeline against PIL + torchvision, on the
//!   bundled emoji or on COCO-sized [`photos`].
//! - [`backbone`]: a ResNet classification step on each burn CPU backend.
//! - [`first_run`]: the bundled pretraining seed by seed, each run's wall
//!   time, peak RSS, caption scores, linear probe and divergence headroom
//!   (not a comparison with PyTorch).
//! - [`pytorch`]: the driver of the PyTorch twins; [`report`] what a row is
//!   and the child process it runs in.
//!
//! The option structs are `clap` arguments, so a command line embeds them as
//! they are (`cargo xtask bench …`). Each benchmark runs against a checkout of
//! virtex-rs, whose root its caller passes: the PyTorch twins are its
//! `tools/bench/*.py`, and the configs and the bundled data its `data/`. A
//! program calls them directly:
//!
//! ```no_run
//! use std::path::Path;
//!
//! use virtex_bench::extract::ExtractBench;
//! use virtex_vision::ResNetArch;
//!
//! ExtractBench {
//!     arch: ResNetArch::Resnet18,
//!     batch: 8,
//!     size: 64,
//!     steps: 2,
//!     device: virtex_train::device::DeviceSpec::Cpu,
//! }
//! .run(Path::new("path/to/virtex-rs"))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::path::Path;

use clap::{Parser, Subcommand};

pub mod backbone;
pub mod caption;
pub mod data;
pub mod extract;
pub mod first_run;
pub mod gpu_check;
pub mod photos;
pub mod pytorch;
pub mod report;
pub mod train;

/// `bench`: which benchmark.
#[derive(Debug, clap::Args)]
pub struct Bench {
    /// Which benchmark [default: train, extract, caption and data in turn,
    /// each with its defaults].
    #[command(subcommand)]
    pub what: Option<BenchKind>,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchKind {
    /// Seconds per ResNet training step (SGD, cross-entropy over a 1000-way fc)
    /// and per eval forward, on each CPU backend (or the given device).
    Backbone(backbone::BackboneBench),
    /// Images/s of the captioning data pipeline (decode + augment + tokenize)
    /// on the bundled emoji dataset.
    Data(data::DataBench),
    /// Caption latency per image: backbone forward + incremental decoding.
    Caption(caption::CaptionBench),
    /// Pretraining steps per second (forward + backward + optimiser) of the
    /// reference's R-50 + L1_H1024 bicaptioning and of the bundled config,
    /// beside PyTorch (`tools/bench/train_step.py`) on the same machine.
    Train(train::TrainBench),
    /// One row of `bench train`, in a process of its own (prints JSON).
    #[command(hide = true)]
    TrainRow(train::TrainRowBench),
    /// Frozen-backbone feature extraction images/s, beside PyTorch.
    Extract(extract::ExtractBench),
    /// The bundled pretraining once per seed: wall time, peak RSS,
    /// validation loss, CIDEr-D, BLEU-4, distinct and top captions,
    /// subcategory named, linear probe and the divergence guard's headroom
    /// per seed, with min/mean/max (docs/benchmarks.md).
    FirstRun(first_run::FirstRunBench),
    /// One seed of `bench first-run`, in a process of its own (prints JSON).
    #[command(hide = true)]
    FirstRunSeed(first_run::FirstRunSeedBench),
}

/// What `bench` runs without a subcommand.
const ALL_COMPARISONS: [&str; 4] = ["train", "extract", "caption", "data"];

/// Parses one benchmark's name and flags, as after `bench`.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct BenchLine {
    #[command(subcommand)]
    kind: BenchKind,
}

impl Bench {
    /// Runs the chosen benchmark, or every comparison with PyTorch in turn,
    /// in the checkout at `root`.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let Some(what) = self.what else {
            for name in ALL_COMPARISONS {
                println!("\n## bench {name}\n");
                BenchLine::try_parse_from(["bench", name])?.kind.run(root)?;
            }
            return Ok(());
        };
        what.run(root)
    }
}

impl BenchKind {
    /// Runs this benchmark in the checkout at `root`.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        match self {
            BenchKind::Backbone(bench) => bench.run(),
            BenchKind::Data(bench) => bench.run(root),
            BenchKind::Caption(bench) => bench.run(root),
            BenchKind::Train(bench) => bench.run(root),
            BenchKind::TrainRow(bench) => bench.run(root),
            BenchKind::Extract(bench) => bench.run(root),
            BenchKind::FirstRun(bench) => bench.run(root),
            BenchKind::FirstRunSeed(bench) => bench.run(root),
        }
    }
}

/// Worker threads the machine offers.
fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn every_default_comparison_is_a_bench_command() {
        for name in super::ALL_COMPARISONS {
            let parsed = super::BenchLine::try_parse_from(["bench", name]);
            assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
        }
    }
}
