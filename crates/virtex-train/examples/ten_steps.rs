//! Trains a tiny bicaptioning model for ten iterations on the bundled emoji
//! data, from a config file, on the CPU, and prints the loss of each step.
//!
//! ```sh
//! cargo run -p virtex-train --example ten_steps
//! cargo run -p virtex-train --example ten_steps -- data/configs/emoji_bicaptioning.yaml
//! ```
//!
//! Without an argument the config is `data/configs/tests/emoji_tiny.yaml`
//! (the bundled config shrunk for the tests: ResNet-18 at 32 px, batch 4, a
//! one-layer head); any reference config loads, and its own
//! `OPTIM.NUM_ITERATIONS` is replaced by ten. The run writes `metrics.jsonl`,
//! loss and learning-rate plots, a contact sheet and `checkpoint_10.safetensors`
//! into a new directory under the system's temporary directory, and prints
//! it; virtex-eval's `caption_folder` example captions images with that
//! checkpoint. Ten steps teach the model nothing: the losses only show that
//! the loop runs.

use std::path::PathBuf;

use virtex_train::config::Config;
use virtex_train::device::DeviceSpec;
use virtex_train::trainer::Pretraining;

const TINY_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/configs/tests/emoji_tiny.yaml"
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config_path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(TINY_CONFIG));
    // `--set` overrides of `cargo xtask pretrain`: ten steps, and a log line,
    // a validation (its loss and captions printed) and a checkpoint at the
    // end only. The summary still holds every step's loss.
    let overrides = [
        "OPTIM.NUM_ITERATIONS=10",
        "TRAIN.LOG_EVERY=10",
        "TRAIN.VALIDATE_EVERY=10",
        "TRAIN.CHECKPOINT_EVERY=10",
    ]
    .map(String::from);
    let config = Config::load(Some(&config_path), &overrides)?;

    let output = std::env::temp_dir().join(format!("virtex-ten-steps-{}", std::process::id()));
    let device = DeviceSpec::Cpu;
    let summary = device.dispatch(Pretraining {
        precision: device.precision(config.amp)?,
        config,
        output: output.clone(),
        resume: false,
        init_from: None,
        world: None,
    })??;

    for (step, loss) in summary.losses.iter().enumerate() {
        println!("iteration {:>2}: loss {loss:.4}", step + 1);
    }
    if let Some(val_loss) = summary.val_loss {
        println!("validation loss {val_loss:.4}");
    }
    println!("{:.1} s; output in {}", summary.seconds, output.display());
    if let Some(checkpoint) = &summary.checkpoint {
        println!("checkpoint: {}", checkpoint.display());
    }
    Ok(())
}
