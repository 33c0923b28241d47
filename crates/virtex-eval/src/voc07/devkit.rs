//! The VOC2007 devkit's layout: `JPEGImages/<name>.jpg` and
//! `ImageSets/Main/<class>_{trainval,test}.txt` with labels 1 (present),
//! −1 (absent), 0 (difficult).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A VOC label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocLabel {
    /// 1: the class is in the image.
    Present,
    /// −1: it is not.
    Absent,
    /// 0: present but difficult (ignored in test AP).
    Difficult,
}

/// One split of a VOC devkit.
#[derive(Clone, Debug)]
pub struct Voc07Split {
    /// Class names, sorted (from the `ImageSets/Main/<class>_<split>.txt` names).
    pub classes: Vec<String>,
    /// Image files, sorted by name.
    pub images: Vec<PathBuf>,
    /// `labels[image][class]`.
    pub labels: Vec<Vec<VocLabel>>,
}

/// A devkit that does not read.
#[derive(Debug, thiserror::Error)]
pub enum VocError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `<class>_<split>.txt` files.
    #[error("no ImageSets/Main/*_{split}.txt files under {root}")]
    NoClasses {
        /// The devkit root.
        root: PathBuf,
        /// The split.
        split: String,
    },
    /// A line that is not `<image> <1|-1|0>`.
    #[error("{path}:{line}: expected '<image name> <1|-1|0>', got {text:?}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// An image listed for one class is missing from another's list.
    #[error("{path}: image {image} is listed for other classes but not for {class}")]
    Unlisted {
        /// The file lacking it.
        path: PathBuf,
        /// The class.
        class: String,
        /// The image.
        image: String,
    },
    /// The two splits list different classes.
    #[error("{root}: trainval classes {trainval:?} differ from test classes {test:?}")]
    ClassMismatch {
        /// The devkit root.
        root: PathBuf,
        /// Trainval's classes.
        trainval: Vec<String>,
        /// Test's classes.
        test: Vec<String>,
    },
}

impl Voc07Split {
    /// Reads `split` (`trainval` or `test`) of the devkit at `root`.
    pub fn load(root: &Path, split: &str) -> Result<Self, VocError> {
        let main = root.join("ImageSets/Main");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VocError::Io { path, source }
        };
        let suffix = format!("_{split}.txt");
        let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&main)
            .map_err(io(&main))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                let class = name.strip_suffix(&suffix)?.to_string();
                (!class.contains('_')).then_some((class, p))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(VocError::NoClasses {
                root: root.to_path_buf(),
                split: split.to_string(),
            });
        }
        let mut per_image: BTreeMap<String, Vec<Option<VocLabel>>> = BTreeMap::new();
        for (c, (_, path)) in files.iter().enumerate() {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let bad = || VocError::BadLine {
                    path: path.clone(),
                    line: number + 1,
                    text: line.to_string(),
                };
                let mut parts = line.split_whitespace();
                let (Some(image), Some(label), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                let label = match label {
                    "1" => VocLabel::Present,
                    "-1" => VocLabel::Absent,
                    "0" => VocLabel::Difficult,
                    _ => return Err(bad()),
                };
                per_image
                    .entry(image.to_string())
                    .or_insert_with(|| vec![None; files.len()])[c] = Some(label);
            }
        }
        let mut images = Vec::with_capacity(per_image.len());
        let mut labels = Vec::with_capacity(per_image.len());
        for (image, row) in per_image {
            let row = row
                .into_iter()
                .enumerate()
                .map(|(c, label)| {
                    label.ok_or_else(|| VocError::Unlisted {
                        path: files[c].1.clone(),
                        class: files[c].0.clone(),
                        image: image.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            images.push(root.join("JPEGImages").join(format!("{image}.jpg")));
            labels.push(row);
        }
        Ok(Self {
            classes: files.into_iter().map(|(c, _)| c).collect(),
            images,
            labels,
        })
    }

    /// Labels of class `c`, one per image.
    pub fn class_labels(&self, c: usize) -> Vec<VocLabel> {
        self.labels.iter().map(|row| row[c]).collect()
    }
}
