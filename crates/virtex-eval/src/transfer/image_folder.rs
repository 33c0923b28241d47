//! ImageFolder datasets: `root/<class>/<image>`, classes sorted by name.

use std::path::{Path, PathBuf};

use virtex_data::images::is_image_file;

use super::ClassificationError;

/// An ImageFolder split: `root/<class>/<image>`, classes sorted by name.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    /// Class names (directory names), sorted.
    pub classes: Vec<String>,
    /// Each image and its class index.
    pub samples: Vec<(PathBuf, usize)>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ClassificationError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ClassificationError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

impl ImageFolder {
    /// Reads `root/<class>/<image>` (JPEG and PNG files).
    pub fn load(root: &Path) -> Result<Self, ClassificationError> {
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let class = classes.len();
            classes.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            for file in sorted_entries(&dir)? {
                if is_image_file(&file) {
                    samples.push((file, class));
                }
            }
        }
        if samples.is_empty() {
            return Err(ClassificationError::Empty(root.to_path_buf()));
        }
        Ok(Self { classes, samples })
    }

    /// Reads a validation split, which must have the training classes.
    pub fn load_matching(root: &Path, train: &ImageFolder) -> Result<Self, ClassificationError> {
        let split = Self::load(root)?;
        if split.classes != train.classes {
            return Err(ClassificationError::ClassMismatch {
                path: root.to_path_buf(),
                found: split.classes,
                expected: train.classes.clone(),
            });
        }
        Ok(split)
    }
}
