//! `cargo xtask prepare-data`: [`virtex_data::emoji`] from the npm package,
//! fetched with `npm pack` unless given; [`virtex_data::shards`] from a
//! COCO-format dataset.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use virtex_data::coco::{CocoCaptions, split_image_dir};
use virtex_data::emoji::{EMOJI_PACKAGE, prepare_emoji};
use virtex_data::shards::write_shards;

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
            PrepareDataset::Shards {
                from,
                images,
                output,
                per_shard,
                prefix,
                seed,
            } => {
                let split = split_image_dir(&from);
                let images = images.or_else(|| split.clone()).with_context(|| {
                    format!(
                        "{}: not named captions_<split>.json; pass --images <folder>",
                        from.display()
                    )
                })?;
                let prefix = prefix
                    .or_else(|| Some(split?.file_name()?.to_str()?.to_string()))
                    .unwrap_or_else(|| "shard".into());
                let dataset = CocoCaptions::from_files(&from, &images)?;
                let written = write_shards(&dataset, &output, &prefix, per_shard, seed)?;
                println!(
                    "wrote {} samples in {} shards; train from them with\n  --set DATA.SHARDS={}",
                    written.samples,
                    written.shards.len(),
                    written.pattern
                );
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
