//! `cargo xtask`: the project's commands. This file only dispatches; each
//! command lives in its own module.

mod bench;
mod build_vocab;
mod caption;
mod evaluate;
mod export_backbone;
mod flags;
mod prepare_data;
mod pretrain;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use flags::{Command, Xtask};

fn main() -> anyhow::Result<()> {
    Xtask::parse().command.run()
}

impl Command {
    /// Runs the command.
    fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Pretrain(cmd) => cmd.run(),
            Command::Evaluate(cmd) => cmd.run(),
            Command::Caption(cmd) => cmd.run(),
            Command::BuildVocab(cmd) => cmd.run(),
            Command::PrepareData(cmd) => cmd.run(),
            Command::ExportBackbone(cmd) => cmd.run(),
            Command::Bench(cmd) => cmd.run(),
            Command::GpuCheck(cmd) => cmd.run(),
        }
    }
}

/// Writes `bytes` beside `path` and renames, so a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    virtex_vision::atomic::write_bytes(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The repository root, where bundled configs, data and scripts are found:
/// the checkout xtask was built in, or, for a release binary copied to
/// another machine with a checkout (the GPU check), the current directory.
fn project_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace");
    if built_in.join("data/configs").is_dir() {
        built_in.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| built_in.to_path_buf())
    }
}
