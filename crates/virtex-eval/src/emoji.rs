//! The miniature VirTex experiment on the bundled emoji data: linear probes
//! over its 99 subcategories and its 10 categories, for caption-pretrained
//! backbones and a randomly initialised one of the same architecture
//! (docs/results.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use virtex_data::coco::read_json;
use virtex_data::instances::InstancesFile;
use virtex_train::checkpoint::{list_checkpoints, read_meta};
use virtex_train::config::Config;
use virtex_train::device::{BackendTask, CpuBackend};
use virtex_train::source::WeightsSource;
use virtex_vision::ResNetArch;

use crate::error::{EvalError, io};
use crate::transfer::classifier::ClassificationResult;
use crate::transfer::{TransferMode, TransferTask};

/// Label granularities, as folder names under the ImageFolder root.
pub const LEVELS: [&str; 2] = ["subcategory", "category"];

/// The probe's config, relative to the repository root.
pub const EMOJI_PROBE_CONFIG: &str = "data/configs/downstream/emoji_linear.yaml";

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

/// Writes `output/{subcategory,category}/{train,<split>}/<class>/<image>`
/// from the emoji dataset's `instances_{train,<split>}2017.json` (copies;
/// every class directory exists in both; `split`: `val`, or `test`, the
/// split the probes are tested on). Built in a temporary directory and
/// renamed into place.
pub fn build_emoji_folders(emoji: &Path, output: &Path, split: &str) -> Result<(), EvalError> {
    let staging = output.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    for split in ["train", split] {
        let path = emoji.join(format!("annotations/instances_{split}2017.json"));
        let file: InstancesFile = read_json(&path)?;
        let format = |message: String| EvalError::Format {
            path: path.clone(),
            message,
        };
        let mut classes: BTreeMap<u64, [String; 2]> = BTreeMap::new();
        for category in &file.categories {
            let names = [
                folder_name(&category.name),
                folder_name(&category.supercategory),
            ];
            for (level, name) in LEVELS.iter().zip(&names) {
                let dir = staging.join(level).join(split).join(name);
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
            classes.insert(category.id, names);
        }
        let files: BTreeMap<u64, &str> = file
            .images
            .iter()
            .map(|image| (image.id, image.file_name.as_str()))
            .collect();
        for annotation in &file.annotations {
            let image = files.get(&annotation.image_id).ok_or_else(|| {
                format(format!(
                    "annotation of unknown image {}",
                    annotation.image_id
                ))
            })?;
            let names = classes
                .get(&annotation.category_id)
                .ok_or_else(|| format(format!("unknown category {}", annotation.category_id)))?;
            let source = emoji.join(format!("{split}2017")).join(image);
            for (level, name) in LEVELS.iter().zip(names) {
                std::fs::copy(
                    &source,
                    staging.join(level).join(split).join(name).join(image),
                )
                .map_err(io(&source))?;
            }
        }
    }
    if output.exists() {
        std::fs::remove_dir_all(output).map_err(io(output))?;
    }
    std::fs::rename(&staging, output).map_err(io(output))
}

/// The newest checkpoint of a run directory, or the file itself.
pub fn newest_checkpoint(path: &Path) -> Result<PathBuf, EvalError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    match list_checkpoints(path).pop() {
        Some((_, newest)) => Ok(newest),
        None => Err(EvalError::NoCheckpoint(path.to_path_buf())),
    }
}

/// One backbone's probes.
#[derive(Clone, Debug, Serialize)]
pub struct EmojiRow {
    /// Task, architecture and iteration, or `random init (<arch>)`.
    pub backbone: String,
    /// The 99-way probe.
    pub subcategory: ClassificationResult,
    /// The 10-way probe.
    pub category: ClassificationResult,
}

/// The experiment: linear probes of backbones on the bundled emoji data's
/// folders ([`build_emoji_folders`]), trained on `train`, tested on `split`.
#[derive(Clone, Debug)]
pub struct EmojiExperiment {
    /// The bundled dataset (`data/emoji`).
    pub emoji: PathBuf,
    /// Where the ImageFolder views are built once (`runs/emoji_folders`).
    pub folders: PathBuf,
    /// The probe's config (`data/configs/downstream/emoji_linear.yaml`).
    pub config: PathBuf,
    /// Overrides of that config.
    pub overrides: Vec<String>,
    /// The split the probes are tested on: `val`, or `test`.
    pub split: String,
}

impl EmojiExperiment {
    /// Probes every checkpoint (or run directory's newest) of
    /// `checkpoints`, then a random backbone of the last one's
    /// architecture, on the CPU, building the folders first if they lack
    /// the split; `report` hears each result as it comes.
    pub fn run(
        &self,
        checkpoints: &[PathBuf],
        mut report: impl FnMut(&str, &str, &ClassificationResult),
    ) -> Result<Vec<EmojiRow>, EvalError> {
        if !self.folders.join(LEVELS[1]).join(&self.split).exists() {
            build_emoji_folders(&self.emoji, &self.folders, &self.split)?;
        }
        let mut backbones = Vec::new();
        let mut arch = ResNetArch::Resnet18;
        for path in checkpoints {
            let checkpoint = newest_checkpoint(path)?;
            let meta = read_meta(&checkpoint)?;
            arch = meta.config.model.visual.name;
            let name = format!(
                "{} ({arch}, iteration {})",
                meta.config.model.name, meta.iteration
            );
            backbones.push((name, WeightsSource::Native(checkpoint)));
        }
        backbones.push((format!("random init ({arch})"), WeightsSource::Random));

        let mut rows = Vec::new();
        for (name, source) in backbones {
            let mut results = Vec::new();
            for level in LEVELS {
                let result = self.probe(&source, arch, level)?;
                report(&name, level, &result);
                results.push(result);
            }
            let [subcategory, category] =
                <[ClassificationResult; 2]>::try_from(results).expect("one result per level");
            rows.push(EmojiRow {
                backbone: name,
                subcategory,
                category,
            });
        }
        Ok(rows)
    }

    /// The linear probe, on the CPU, of the backbone of `source` (of
    /// `arch`) at `level` ([`LEVELS`]): trained on the `train` folder,
    /// tested on the split's, which must be built.
    pub fn probe(
        &self,
        source: &WeightsSource,
        arch: ResNetArch,
        level: &str,
    ) -> Result<ClassificationResult, EvalError> {
        let mut overrides = vec![format!("DATA.ROOT={}", self.folders.join(level).display())];
        overrides.extend(self.overrides.iter().cloned());
        let config: Config = TransferMode::LinearProbe.config(&self.config, &overrides)?;
        TransferTask {
            source: source.clone(),
            arch,
            config,
            test_split: self.split.clone(),
        }
        .run::<CpuBackend>(Default::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_folders_hold_every_image_once_per_level() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let output =
            std::env::temp_dir().join(format!("virtex-emoji-folders-{}", std::process::id()));
        build_emoji_folders(&root.join("data/emoji"), &output, "val").unwrap();
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
        assert_eq!(count(output.join("category/val")), (10, 170));
        std::fs::remove_dir_all(&output).unwrap();
    }
}
