//! Errors of the vision crate.

use std::path::PathBuf;

/// Everything that can go wrong building a backbone or moving its weights.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// A backbone name that is not a member of the ResNet family.
    #[error(
        "unknown visual backbone '{name}': expected one of resnet18, resnet34, resnet50, \
         resnet101, resnet152, wide_resnet50_2, wide_resnet101_2 (optionally prefixed 'torchvision::')"
    )]
    UnknownArchitecture {
        /// The name given.
        name: String,
    },
    /// A weights file could not be read or parsed.
    #[error("cannot read weights from {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A weights file could not be written.
    #[error("cannot write weights to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Keys the model needs that the file lacks.
    #[error("{path}: missing keys {keys:?}")]
    MissingKeys {
        /// The file.
        path: PathBuf,
        /// The missing keys, in the file's naming.
        keys: Vec<String>,
    },
    /// Keys the file has that the model has no place for.
    #[error("{path}: unexpected keys {keys:?}")]
    UnexpectedKeys {
        /// The file.
        path: PathBuf,
        /// The unused keys, in the file's naming.
        keys: Vec<String>,
    },
    /// A tensor whose shape or type differs from the model's.
    #[error("{path}: {message}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which key and how it differs.
        message: String,
    },
}
