//! Trains the tiny test config for a few iterations and extracts the pooled
//! features of a folder of images with the checkpoint it wrote, through the
//! crates' public API alone, as a project that depends on virtex-rs would.
//!
//! `virtex-consumer <config> <iterations> <images> <output dir>` writes the
//! run (checkpoints, `metrics.jsonl`) to `<output dir>/run` and the features
//! to `<output dir>/features.npy`; `check.sh` compares both with what
//! `xtask pretrain` and `xtask evaluate features` write from the same
//! arguments.

use std::path::PathBuf;

use anyhow::{Context, bail};
use virtex_eval::features::{Extraction, FeatureTask, image_list};
use virtex_train::config::Config;
use virtex_train::device::DeviceSpec;
use virtex_train::source::WeightsSource;
use virtex_train::trainer::Pretraining;
use virtex_vision::ResNetArch;

/// The side the features are extracted at, and images per forward pass:
/// `check.sh` passes the same to `xtask evaluate features`.
const FEATURE_SIZE: u32 = 64;
const FEATURE_BATCH: usize = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, iterations, images, output] = args.as_slice() else {
        bail!("usage: virtex-consumer <config> <iterations> <images> <output dir>");
    };
    let output = PathBuf::from(output);
    let config = Config::load(
        Some(config.as_ref()),
        &[format!("OPTIM.NUM_ITERATIONS={iterations}")],
    )?;
    let device = DeviceSpec::Cpu;
    let summary = device
        .dispatch(Pretraining {
            config,
            output: output.join("run"),
            resume: false,
            init_from: None,
            world: None,
            precision: device.precision(false)?,
        })?
        .context("pretraining stopped")?;
    let checkpoint = summary.checkpoint.context("the run wrote no checkpoint")?;
    println!("losses: {:?}", summary.losses);

    let extracted = device.dispatch(FeatureTask {
        source: WeightsSource::from_arg(&checkpoint, None)?,
        // A virtex-rs checkpoint holds its config; the architecture is only
        // read from `.pth` files.
        arch: ResNetArch::Resnet50,
        images: image_list(images.as_ref())?,
        extraction: Extraction {
            batch: FEATURE_BATCH,
            ..Extraction::new(FEATURE_SIZE)
        },
    })??;
    let features = output.join("features.npy");
    extracted.features.save_npy(&features)?;
    println!(
        "{} × {} features of {} to {}",
        extracted.features.rows,
        extracted.features.dim,
        checkpoint.display(),
        features.display()
    );
    Ok(())
}
