//! `cargo xtask evaluate` (`emoji`): the miniature VirTex experiment. Linear
//! probes on the bundled emoji data, over its 99 subcategories and its 10
//! categories, for pretrained backbones and a randomly initialised one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use virtex_train::checkpoint::{list_checkpoints, read_meta};
use virtex_train::device::DeviceSpec;
use virtex_vision::ResNetArch;

use super::transfer::{Protocol, TransferTask, downstream_config};
use crate::flags::{BackboneSource, EmojiProbe, WeightsLayout};
use crate::project_root;

/// Label granularities, as folder names under `runs/emoji_folders/`.
const LEVELS: [&str; 2] = ["subcategory", "category"];

/// A class name usable as a directory name.
fn folder_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `output/{subcategory,category}/{train,val}/<class>/<image>` from the
/// emoji dataset's `instances_*.json` (copies; every class directory exists
/// in both splits). Built in a temporary directory and renamed into place.
pub(crate) fn build_emoji_folders(emoji: &Path, output: &Path) -> anyhow::Result<()> {
    let staging = output.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    for (split, dir) in [("train", "train"), ("val", "val")] {
        let path = emoji.join(format!("annotations/instances_{split}2017.json"));
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let field = |name: &str| {
            json[name]
                .as_array()
                .with_context(|| format!("{}: no \"{name}\" list", path.display()))
        };
        let mut classes: BTreeMap<u64, [String; 2]> = BTreeMap::new();
        for category in field("categories")? {
            let id = category["id"].as_u64().context("category id")?;
            let names = [
                folder_name(category["name"].as_str().context("category name")?),
                folder_name(
                    category["supercategory"]
                        .as_str()
                        .context("supercategory")?,
                ),
            ];
            for (level, name) in LEVELS.iter().zip(&names) {
                std::fs::create_dir_all(staging.join(level).join(dir).join(name))?;
            }
            classes.insert(id, names);
        }
        let files: BTreeMap<u64, &str> = field("images")?
            .iter()
            .filter_map(|im| Some((im["id"].as_u64()?, im["file_name"].as_str()?)))
            .collect();
        for annotation in field("annotations")? {
            let image = annotation["image_id"].as_u64().context("image_id")?;
            let category = annotation["category_id"].as_u64().context("category_id")?;
            let file = files.get(&image).with_context(|| {
                format!("{}: annotation of unknown image {image}", path.display())
            })?;
            let names = classes
                .get(&category)
                .with_context(|| format!("{}: unknown category {category}", path.display()))?;
            let source = emoji.join(format!("{split}2017")).join(file);
            for (level, name) in LEVELS.iter().zip(names) {
                std::fs::copy(&source, staging.join(level).join(dir).join(name).join(file))
                    .with_context(|| format!("copying {}", source.display()))?;
            }
        }
    }
    if output.exists() {
        std::fs::remove_dir_all(output)?;
    }
    std::fs::rename(&staging, output)?;
    Ok(())
}

/// The newest checkpoint of a run directory, or the file itself.
fn checkpoint_of(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    match list_checkpoints(path).pop() {
        Some((_, newest)) => Ok(newest),
        None => bail!(
            "no checkpoint in {}: run `cargo xtask pretrain` first (or pass --checkpoint)",
            path.display()
        ),
    }
}

impl EmojiProbe {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = project_root();
        let folders = root.join("runs/emoji_folders");
        if !folders.join(LEVELS[1]).join("val").exists() {
            build_emoji_folders(&root.join("data/emoji"), &folders)?;
        }
        let given = if self.checkpoints.is_empty() {
            vec![root.join("runs/emoji_bicaptioning")]
        } else {
            self.checkpoints.clone()
        };
        let mut rows = Vec::new();
        let mut arch = ResNetArch::Resnet18;
        for path in &given {
            let checkpoint = checkpoint_of(path)?;
            let meta = read_meta(&checkpoint)?;
            arch = meta.config.model.visual.name;
            let name = format!(
                "{} ({}, iteration {})",
                meta.config.model.name, meta.config.model.visual.name, meta.iteration
            );
            rows.push((
                name,
                BackboneSource {
                    checkpoint,
                    layout: WeightsLayout::Virtex,
                    arch,
                },
            ));
        }
        rows.push((
            format!("random init ({arch})"),
            BackboneSource {
                checkpoint: "random".into(),
                layout: WeightsLayout::Virtex,
                arch,
            },
        ));

        let config_path = Path::new("data/configs/downstream/emoji_linear.yaml");
        let mut table = Vec::new();
        for (name, backbone) in &rows {
            let mut cells = json!({ "backbone": name });
            for level in LEVELS {
                let mut overrides = vec![format!("DATA.ROOT={}", folders.join(level).display())];
                overrides.extend(self.overrides.iter().cloned());
                let config = downstream_config(config_path, Protocol::Linear, &overrides)?;
                let result = DeviceSpec::Cpu.dispatch(TransferTask {
                    backbone,
                    config: &config,
                })??;
                println!(
                    "{name}, {level}: top-1 {:.1}%, top-5 {:.1}%",
                    100.0 * result.top1,
                    100.0 * result.top5
                );
                cells[level] = serde_json::to_value(&result)?;
            }
            table.push(cells);
        }
        println!(
            "\n| backbone | subcategory top-1 | subcategory top-5 | category top-1 | category top-5 |"
        );
        println!("|---|---|---|---|---|");
        for row in &table {
            let pct = |level: &str, key: &str| 100.0 * row[level][key].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                row["backbone"].as_str().unwrap_or_default(),
                pct("subcategory", "top1"),
                pct("subcategory", "top5"),
                pct("category", "top1"),
                pct("category", "top5"),
            );
        }
        if let Some(output) = &self.output {
            crate::write_atomically(output, &serde_json::to_vec_pretty(&table)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_folders_hold_every_image_once_per_level() {
        let root = project_root();
        let output =
            std::env::temp_dir().join(format!("virtex-emoji-folders-{}", std::process::id()));
        build_emoji_folders(&root.join("data/emoji"), &output).unwrap();
        let count = |dir: PathBuf| -> (usize, usize) {
            let classes: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            let images = classes
                .iter()
                .map(|c| std::fs::read_dir(c).unwrap().count())
                .sum();
            (classes.len(), images)
        };
        assert_eq!(count(output.join("subcategory/train")), (99, 3415));
        assert_eq!(count(output.join("category/train")), (10, 3415));
        assert_eq!(count(output.join("category/val")), (10, 371));
        std::fs::remove_dir_all(&output).unwrap();
    }
}
