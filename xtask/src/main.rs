//! `cargo xtask`: the project's command line. It parses flags ([`flags`]) and
//! calls the crates; each command's file only fills in a library task and
//! prints what it returns.

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
use virtex_train::config::Config;

fn main() -> anyhow::Result<()> {
    // Training loops show burn-train's dashboard when stdout is a terminal.
    virtex_train::progress::enable_dashboard();
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
            Command::Bench(cmd) => cmd.run(&project_root()),
            Command::GpuCheck(cmd) => cmd.run(&project_root()),
        }
    }
}

/// Writes `value` as pretty JSON, atomically.
fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    write_file(path, &serde_json::to_vec_pretty(value)?)
}

/// Writes `bytes` beside `path` and renames, so a crash never leaves half a file.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    virtex_data::atomic::write_bytes(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The repository root, where the bundled configs and data (`data/`) and
/// the benchmarks' PyTorch twins (`tools/bench/`) are: the checkout xtask
/// was built in, or, for a release binary copied to another machine beside
/// a checkout (the GPU check), the current directory.
fn project_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf();
    if built_in.join("data/configs").is_dir() {
        built_in
    } else {
        std::env::current_dir().unwrap_or(built_in)
    }
}

/// A path given on the command line, made absolute: relative to where the
/// command was run when it exists there, else to the repository root, where
/// the defaults (`data/configs/…`) live. Absolute, so the paths a config
/// names (relative to it) read the same from any folder.
fn project_file(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(dir) if dir.join(path).exists() => dir.join(path),
        _ => project_root().join(path),
    }
}

/// Loads the config at `path` (see [`project_file`]) with `overrides`.
fn load_config(path: &Path, overrides: &[String]) -> anyhow::Result<Config> {
    Ok(Config::load(Some(&project_file(path)), overrides)?)
}
