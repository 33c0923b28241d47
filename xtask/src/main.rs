//! `cargo xtask`: the project's commands. This file only dispatches; each
//! command lives in its own module.

mod bench;
mod build_vocab;
mod export_backbone;
mod flags;
mod prepare_data;

use std::path::Path;

use anyhow::{Context, bail};
use clap::Parser;
use flags::{Command, Xtask};

fn main() -> anyhow::Result<()> {
    match Xtask::parse().command {
        Command::Pretrain(_) => bail!("`cargo xtask pretrain` is not built yet (issue #5)"),
        Command::Evaluate(_) => bail!("`cargo xtask evaluate` is not built yet (issue #6)"),
        Command::BuildVocab(cmd) => cmd.run(),
        Command::PrepareData(cmd) => cmd.run(),
        Command::ExportBackbone(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
    }
}

/// Writes `bytes` beside `path` and renames, so a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}
