//! Image-level category labels from a COCO instances file
//! (`ROOT/annotations/instances_{split}2017.json`), the targets of the
//! multilabel-classification pretraining task
//! (`virtex/data/datasets/multilabel.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::coco::CocoError;

#[derive(Deserialize)]
struct InstancesFile {
    categories: Vec<CategoryEntry>,
    annotations: Vec<InstanceEntry>,
}

#[derive(Deserialize)]
struct CategoryEntry {
    id: u64,
}

#[derive(Deserialize)]
struct InstanceEntry {
    id: u64,
    image_id: u64,
    category_id: u64,
}

/// The unique categories present in each image, remapped as the reference
/// does: the file's category ids in ascending order become `1..=K`, and 0
/// stays free for padding (COCO's 80 categories give 81 outputs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CocoInstances {
    /// Image id → its categories (remapped, ascending, no repeats). Images
    /// without instances are absent, so the task drops them.
    pub labels: BTreeMap<u64, Vec<u32>>,
    /// Number of categories `K`; the classifier has `K + 1` outputs.
    pub num_categories: usize,
}

impl CocoInstances {
    /// Reads `root/annotations/instances_{split}2017.json`.
    pub fn load(root: &Path, split: &str) -> Result<Self, CocoError> {
        Self::from_file(
            &root
                .join("annotations")
                .join(format!("instances_{split}2017.json")),
        )
    }

    /// Reads a COCO instances JSON file; an annotation naming a category the
    /// file does not list is an error naming both.
    pub fn from_file(path: &Path) -> Result<Self, CocoError> {
        let bytes = std::fs::read(path).map_err(|source| CocoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: InstancesFile =
            serde_json::from_slice(&bytes).map_err(|source| CocoError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let ids: BTreeSet<u64> = file.categories.iter().map(|c| c.id).collect();
        let remap: BTreeMap<u64, u32> = ids.iter().zip(1..).map(|(&id, to)| (id, to)).collect();
        let mut labels: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for annotation in file.annotations {
            let category =
                *remap
                    .get(&annotation.category_id)
                    .ok_or_else(|| CocoError::UnknownCategory {
                        path: PathBuf::from(path),
                        annotation_id: annotation.id,
                        category_id: annotation.category_id,
                    })?;
            labels
                .entry(annotation.image_id)
                .or_default()
                .insert(category);
        }
        Ok(Self {
            labels: labels
                .into_iter()
                .map(|(image, set)| (image, set.into_iter().collect()))
                .collect(),
            num_categories: ids.len(),
        })
    }
}
