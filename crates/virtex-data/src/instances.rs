//! Image-level category labels from a COCO instances file
//! (`ROOT/annotations/instances_{split}2017.json`), the targets of the
//! multilabel-classification pretraining task
//! (`virtex/data/datasets/multilabel.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coco::{CocoError, ImageEntry, read_json};

/// A COCO instances JSON file (`instances_{split}2017.json`): the parts
/// image-level labels need (boxes and masks are not read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstancesFile {
    /// The images.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    /// The categories.
    pub categories: Vec<CategoryEntry>,
    /// One entry per instance.
    pub annotations: Vec<InstanceEntry>,
}

/// An entry of a COCO instances file's `categories` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryEntry {
    /// Category id.
    pub id: u64,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// The coarser category it belongs to.
    #[serde(default)]
    pub supercategory: String,
}

/// An entry of a COCO instances file's `annotations` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEntry {
    /// Annotation id.
    pub id: u64,
    /// The image.
    pub image_id: u64,
    /// The instance's category.
    pub category_id: u64,
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
        let file: InstancesFile = read_json(path)?;
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
