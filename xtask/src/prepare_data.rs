//! `cargo xtask prepare-data`: [`virtex_data::emoji`] from the npm package,
//! fetched with `npm pack` unless given.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use virtex_data::emoji::{EMOJI_PACKAGE, prepare_emoji};

use crate::flags::{PrepareData, PrepareDataset};

impl PrepareData {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.dataset {
            PrepareDataset::Emoji { from, output } => {
                let from = match from {
                    Some(path) => path,
                    None => npm_pack(EMOJI_PACKAGE)?,
                };
                println!("{}", prepare_emoji(&from, &output)?);
                Ok(())
            }
        }
    }
}

/// Fetches `package` with `npm pack` into a temporary directory; returns the tarball.
fn npm_pack(package: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("virtex-rs-npm-pack");
    std::fs::create_dir_all(&dir)?;
    println!("fetching {package} with `npm pack` …");
    let out = std::process::Command::new("npm")
        .args(["pack", package, "--silent"])
        .current_dir(&dir)
        .output()
        .context("running `npm pack` (is npm installed? or pass --from <tgz>)")?;
    ensure!(
        out.status.success(),
        "`npm pack {package}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = String::from_utf8(out.stdout)?.trim().to_string();
    Ok(dir.join(name))
}
