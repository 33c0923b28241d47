//! Errors of the vision crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn_store::{ApplyError, ApplyResult};

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
    /// A `.pth` without a dictionary under the top-level key asked for (a
    /// bare state dict read as a VirTex checkpoint).
    #[error(
        "{path}: no state dict under the top-level key '{key}'; {}",
        list_tensors(keys)
    )]
    NoStateDict {
        /// The file.
        path: PathBuf,
        /// The top-level key asked for.
        key: String,
        /// The names of the file's tensors, sorted.
        keys: Vec<String>,
    },
    /// Keys the model needs that the file lacks.
    #[error("{path}: missing keys ({}): {}", keys.len(), list_keys(keys))]
    MissingKeys {
        /// The file.
        path: PathBuf,
        /// The missing keys, in the file's naming.
        keys: Vec<String>,
    },
    /// Keys the file has that the model has no place for.
    #[error("{path}: unexpected keys ({}): {}", keys.len(), list_keys(keys))]
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

/// How many names an error message lists before "and N more".
pub const LISTED_KEYS: usize = 5;

/// `keys` as an error message lists them: the first [`LISTED_KEYS`] quoted,
/// then how many more there are, so a whole state dict never fills a line.
pub fn list_keys<S: AsRef<str>>(keys: &[S]) -> String {
    let listed: Vec<String> = keys
        .iter()
        .take(LISTED_KEYS)
        .map(|key| format!("'{}'", key.as_ref()))
        .collect();
    let listed = listed.join(", ");
    match keys.len().saturating_sub(LISTED_KEYS) {
        0 => listed,
        more => format!("{listed} and {more} more"),
    }
}

/// What a file of tensors `keys` holds, in a few words: `its 320 tensors
/// are 'bn1.bias', … and 315 more`.
pub fn list_tensors<S: AsRef<str>>(keys: &[S]) -> String {
    match keys.len() {
        0 => "it holds no tensors".into(),
        1 => format!("its one tensor is {}", list_keys(keys)),
        n => format!("its {n} tensors are {}", list_keys(keys)),
    }
}

/// Turns what burn-store reports after applying a file's tensors into an error
/// naming the first offending key(s) in the file's naming (`file_key` maps a
/// burn path to it). Missing and unused keys pass when `allow_partial`.
pub fn check_applied(
    result: &ApplyResult,
    path: &Path,
    allow_partial: bool,
    file_key: impl Fn(&str) -> String,
) -> Result<(), VisionError> {
    if let Some(error) = result.errors.first() {
        let message = match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "key '{}' has shape {:?}, the model expects {:?}",
                file_key(path),
                found.as_slice(),
                expected.as_slice()
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => format!(
                "key '{}' has dtype {found:?}, the model expects {expected:?}",
                file_key(path)
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => {
                format!("key '{}': {message}", file_key(path))
            }
        };
        return Err(VisionError::Mismatch {
            path: path.to_path_buf(),
            message,
        });
    }
    if !allow_partial && !result.missing.is_empty() {
        let keys: BTreeSet<String> = result.missing.iter().map(|(p, _)| file_key(p)).collect();
        return Err(VisionError::MissingKeys {
            path: path.to_path_buf(),
            keys: keys.into_iter().collect(),
        });
    }
    if !allow_partial && !result.unused.is_empty() {
        let keys: BTreeSet<String> = result.unused.iter().map(|p| file_key(p)).collect();
        return Err(VisionError::UnexpectedKeys {
            path: path.to_path_buf(),
            keys: keys.into_iter().collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_key_lists_are_cut_to_a_few_names() {
        let keys: Vec<String> = (0..320).map(|i| format!("layer{i}.weight")).collect();
        assert_eq!(
            list_keys(&keys),
            "'layer0.weight', 'layer1.weight', 'layer2.weight', 'layer3.weight', \
             'layer4.weight' and 315 more"
        );
        assert_eq!(list_keys(&["a", "b"]), "'a', 'b'");
        assert_eq!(list_tensors(&["a"]), "its one tensor is 'a'");
        assert_eq!(list_tensors::<&str>(&[]), "it holds no tensors");
        let err = VisionError::UnexpectedKeys {
            path: "r50.pth".into(),
            keys,
        };
        assert_eq!(
            err.to_string(),
            "r50.pth: unexpected keys (320): 'layer0.weight', 'layer1.weight', \
             'layer2.weight', 'layer3.weight', 'layer4.weight' and 315 more"
        );
    }
}
