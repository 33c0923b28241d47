//! COCO Captions in its own layout, and any dataset in its JSON format:
//! `ROOT/{split}2017/*.jpg` with `ROOT/annotations/captions_{split}2017.json`
//! (`virtex/data/datasets/coco_captions.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A dataset that cannot be indexed.
#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    /// The annotation file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The annotation file is not COCO captions JSON.
    #[error("{path}: malformed COCO captions JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and what (line and column included).
        source: serde_json::Error,
    },
    /// An annotation refers to an image the file does not list.
    #[error("{path}: annotation {annotation_id} refers to unknown image_id {image_id}")]
    UnknownImage {
        /// The annotation file.
        path: PathBuf,
        /// The annotation's id.
        annotation_id: u64,
        /// The image id it names.
        image_id: u64,
    },
    /// An annotation whose caption is empty or only whitespace.
    #[error("{path}: annotation {annotation_id} (image {image_id}) has an empty caption")]
    EmptyCaption {
        /// The annotation file.
        path: PathBuf,
        /// The annotation's id.
        annotation_id: u64,
        /// Its image.
        image_id: u64,
    },
    /// An instance annotation names a category the file does not list.
    #[error("{path}: annotation {annotation_id} has unknown category_id {category_id}")]
    UnknownCategory {
        /// The instances file.
        path: PathBuf,
        /// The annotation's id.
        annotation_id: u64,
        /// The category id it names.
        category_id: u64,
    },
    /// A listed image whose file does not exist.
    #[error("{annotations}: image {image_id} is listed, but {path} does not exist")]
    MissingImage {
        /// The annotation file.
        annotations: PathBuf,
        /// The image id.
        image_id: u64,
        /// The expected image file.
        path: PathBuf,
    },
}

/// A COCO captions JSON file (`captions_{split}2017.json`), as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptionsFile {
    /// The images.
    pub images: Vec<ImageEntry>,
    /// One entry per caption.
    pub annotations: Vec<CaptionAnnotation>,
}

/// An entry of a COCO file's `images` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Image id.
    pub id: u64,
    /// File name in the split's image directory.
    pub file_name: String,
}

/// An entry of a COCO captions file's `annotations` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionAnnotation {
    /// Annotation id.
    pub id: u64,
    /// The image captioned.
    pub image_id: u64,
    /// The caption.
    pub caption: String,
}

/// Reads a JSON file of type `T` (a COCO file or a results list).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CocoError> {
    let bytes = std::fs::read(path).map_err(|source| CocoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| CocoError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_captions_file(path: &Path) -> Result<CaptionsFile, CocoError> {
    read_json(path)
}

/// Every caption of a COCO captions JSON file, in file order (for building a
/// vocabulary; no image is looked at). Empty captions are errors.
pub fn read_captions(path: &Path) -> Result<Vec<String>, CocoError> {
    read_captions_file(path)?
        .annotations
        .into_iter()
        .map(|a| {
            if a.caption.trim().is_empty() {
                Err(CocoError::EmptyCaption {
                    path: path.to_path_buf(),
                    annotation_id: a.id,
                    image_id: a.image_id,
                })
            } else {
                Ok(a.caption)
            }
        })
        .collect()
}

/// The reference captions of a COCO captions JSON file, by image id (for
/// scoring; no image file is looked at).
pub fn read_references(path: &Path) -> Result<BTreeMap<u64, Vec<String>>, CocoError> {
    let mut by_image: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for annotation in read_captions_file(path)?.annotations {
        by_image
            .entry(annotation.image_id)
            .or_default()
            .push(annotation.caption);
    }
    Ok(by_image)
}

/// The image directory of a split in the COCO layout:
/// `ROOT/annotations/captions_val2017.json` → `ROOT/val2017`; `None` when the
/// file is not named `captions_<split>.json`.
pub fn split_image_dir(annotations: &Path) -> Option<PathBuf> {
    let split = annotations
        .file_stem()?
        .to_str()?
        .strip_prefix("captions_")?;
    let root = annotations
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    Some(root.join(split))
}

/// How a caption result names its image: by COCO id, or by file name for a
/// folder of images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    /// `{"image_id": 42}`.
    Id {
        /// COCO image id.
        image_id: u64,
    },
    /// `{"file_name": "dog.jpg"}`.
    File {
        /// The file's name in its folder.
        file_name: String,
    },
}

/// One generated caption, as COCO results files hold them
/// (`[{"image_id": 42, "caption": "a dog"}]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptionResult {
    /// The image.
    #[serde(flatten)]
    pub image: ImageRef,
    /// The caption.
    pub caption: String,
}

/// Reads a COCO results file of captions.
pub fn read_results(path: &Path) -> Result<Vec<CaptionResult>, CocoError> {
    read_json(path)
}

/// One image and all its captions (the dataset's unit: an epoch visits each
/// image once and picks one caption).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionedImage {
    /// COCO image id.
    pub id: u64,
    /// The image file.
    pub path: PathBuf,
    /// Its captions, as written in the file.
    pub captions: Vec<String>,
}

/// The images of one split that have at least one caption, by image id.
#[derive(Clone, Debug)]
pub struct CocoCaptions {
    /// Images in ascending id order.
    pub images: Vec<CaptionedImage>,
}

impl CocoCaptions {
    /// The image with COCO id `id`.
    pub fn image(&self, id: u64) -> Option<&CaptionedImage> {
        self.images
            .binary_search_by_key(&id, |image| image.id)
            .ok()
            .map(|i| &self.images[i])
    }

    /// Indexes `root` for `split` (`train`, `val` or `test`, as in `train2017`).
    pub fn load(root: &Path, split: &str) -> Result<Self, CocoError> {
        let annotations = root
            .join("annotations")
            .join(format!("captions_{split}2017.json"));
        Self::from_files(&annotations, &root.join(format!("{split}2017")))
    }

    /// Indexes a COCO captions JSON file whose images live in `image_dir`.
    ///
    /// Images without captions are dropped, as the reference's dataset only
    /// visits captioned images; an annotation naming an unknown image, an empty
    /// caption and a listed image whose file is missing are errors.
    pub fn from_files(annotations: &Path, image_dir: &Path) -> Result<Self, CocoError> {
        let file = read_captions_file(annotations)?;
        let mut by_id: BTreeMap<u64, CaptionedImage> = file
            .images
            .into_iter()
            .map(|image| {
                let entry = CaptionedImage {
                    id: image.id,
                    path: image_dir.join(&image.file_name),
                    captions: Vec::new(),
                };
                (image.id, entry)
            })
            .collect();
        for annotation in file.annotations {
            let image =
                by_id
                    .get_mut(&annotation.image_id)
                    .ok_or_else(|| CocoError::UnknownImage {
                        path: annotations.to_path_buf(),
                        annotation_id: annotation.id,
                        image_id: annotation.image_id,
                    })?;
            if annotation.caption.trim().is_empty() {
                return Err(CocoError::EmptyCaption {
                    path: annotations.to_path_buf(),
                    annotation_id: annotation.id,
                    image_id: annotation.image_id,
                });
            }
            image.captions.push(annotation.caption);
        }
        let images: Vec<CaptionedImage> = by_id
            .into_values()
            .filter(|image| !image.captions.is_empty())
            .collect();
        if let Some(missing) = images.iter().find(|image| !image.path.is_file()) {
            return Err(CocoError::MissingImage {
                annotations: annotations.to_path_buf(),
                image_id: missing.id,
                path: missing.path.clone(),
            });
        }
        Ok(Self { images })
    }
}
