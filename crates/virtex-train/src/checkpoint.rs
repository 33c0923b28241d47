//! Training checkpoints: `checkpoint_{iteration}.safetensors` holding the
//! model (parameters and BatchNorm statistics), the optimiser's momentum or
//! Adam moments, Lookahead's slow weights, and in its metadata the iteration
//! and the config. Written atomically (temporary file, then rename), so a
//! kill at any moment leaves the previous checkpoint intact.
//!
//! The reference saves `torch.save({"model", "optimizer", "scheduler", …})`
//! without the Lookahead slow weights; these hold them, so a resumed run
//! continues exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use burn_store::{ApplyResult, ModuleSnapshot, TensorSnapshot};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use virtex_data::shards::StreamPosition;
use virtex_text::PretrainingModel;

use crate::config::Config;
use crate::optim::{ParamState, VirtexOptimizer};
use crate::trainer::GuardState;

/// The metadata key holding [`CheckpointMeta`] as JSON.
const META_KEY: &str = "virtex.checkpoint";
const MODEL: &str = "model.";
const FIRST: &str = "optimizer.first.";
const SECOND: &str = "optimizer.second.";
const SLOW: &str = "lookahead.slow.";

/// A checkpoint that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a virtex-rs checkpoint, or damaged.
    #[error("{path}: not a readable virtex-rs checkpoint: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a checkpoint records besides tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Iterations completed.
    pub iteration: u64,
    /// Optimiser steps taken (equal to `iteration` in a normal run).
    pub optimizer_steps: u64,
    /// The run's configuration.
    pub config: Config,
    /// Where each rank's shard stream stands after `iteration`, by rank
    /// (`DATA.SHARDS` runs; empty for a COCO-format split, whose position
    /// follows from the iteration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_positions: Vec<StreamPosition>,
    /// The divergence guard after `iteration` (`TRAIN.DIVERGENCE_FACTOR`;
    /// none with the guard off), for a resumed run to go on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence_guard: Option<GuardState>,
}

/// The file of the checkpoint after `iteration` in `dir`.
pub fn checkpoint_path(dir: &Path, iteration: u64) -> PathBuf {
    dir.join(format!("checkpoint_{iteration}.safetensors"))
}

/// Checkpoints in `dir` by iteration, oldest first: the files (or links to
/// files) named `checkpoint_{iteration}.safetensors`.
pub fn list_checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            if !path.is_file() {
                return None;
            }
            let name = path.file_name()?.to_str()?;
            let iteration = name
                .strip_prefix("checkpoint_")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((iteration, path))
        })
        .collect();
    found.sort();
    found
}

/// Deletes all but the newest `keep` checkpoints (0 keeps all), and never
/// `protected`, a checkpoint of `dir` (the last good one of a run whose
/// newer ones may be worse, as the trainer's divergence guard says).
pub fn prune_checkpoints(
    dir: &Path,
    keep: usize,
    protected: Option<&Path>,
) -> Result<(), CheckpointError> {
    let found = list_checkpoints(dir);
    if keep == 0 || found.len() <= keep {
        return Ok(());
    }
    let protected = protected.map(|p| p.file_name());
    for (_, path) in &found[..found.len() - keep] {
        if protected.is_some_and(|name| name == path.file_name()) {
            continue;
        }
        std::fs::remove_file(path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn f32_bytes(data: TensorData) -> (Vec<usize>, Vec<u8>) {
    let data = data.convert::<f32>();
    let shape = data.shape.to_vec();
    let bytes = data
        .to_vec::<f32>()
        .expect("converted to f32")
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    (shape, bytes)
}

/// Saves `model` and `optimizer` after `meta.iteration` to `path`, atomically.
pub fn save_checkpoint<B: AutodiffBackend, M: AutodiffModule<B>>(
    path: &Path,
    model: &M,
    optimizer: &VirtexOptimizer<B>,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    // BatchNorm's running statistics are kept per thread until synced;
    // `valid()` syncs them, so the file holds the current values.
    let _synced = model.valid();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for snapshot in model.collect(None, None, true) {
        let data = snapshot.to_data().map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            message: format!("{}: {e:?}", snapshot.full_path()),
        })?;
        let (shape, bytes) = f32_bytes(data);
        tensors.push((format!("{MODEL}{}", snapshot.full_path()), shape, bytes));
    }
    for (id, state) in &optimizer.state {
        let info = &optimizer.table().by_id[id];
        for (prefix, tensor) in [
            (FIRST, &state.first),
            (SECOND, &state.second),
            (SLOW, &state.slow),
        ] {
            if let Some(tensor) = tensor {
                let (shape, bytes) = f32_bytes(tensor.to_data());
                tensors.push((format!("{prefix}{}", info.path), shape, bytes));
            }
        }
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches bytes");
            (name.clone(), view)
        })
        .collect();
    let metadata = HashMap::from([(
        META_KEY.to_string(),
        serde_json::to_string(meta).expect("config serialises"),
    )]);
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    virtex_data::atomic::write_bytes(path, &bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a checkpoint's metadata without its tensors (the safetensors
/// header only: its length, then the JSON).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    use std::io::Read;
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    // A header longer than the file is damage, not a reason to allocate.
    let size = file.metadata().map_err(io)?.len();
    if len > size.saturating_sub(8) {
        return Err(CheckpointError::Format {
            path: path.to_path_buf(),
            message: format!("header of {len} bytes in a file of {size}"),
        });
    }
    let mut bytes = len.to_le_bytes().to_vec();
    file.take(len).read_to_end(&mut bytes).map_err(io)?;
    meta_of(path, &bytes)
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn meta_of(path: &Path, bytes: &[u8]) -> Result<CheckpointMeta, CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_path_buf(),
        message,
    };
    let Some(len) = bytes.get(..8) else {
        return Err(format(format!(
            "a file of {} bytes, too short for a safetensors header",
            bytes.len()
        )));
    };
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    let header = usize::try_from(len)
        .ok()
        .and_then(|len| bytes[8..].get(..len))
        .ok_or_else(|| {
            format(format!(
                "header of {len} bytes in a file of {}",
                bytes.len()
            ))
        })?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format(e.to_string()))?;
    let json = header["__metadata__"][META_KEY]
        .as_str()
        .ok_or_else(|| format(format!("no '{META_KEY}' metadata")))?;
    serde_json::from_str(json).map_err(|e| format(e.to_string()))
}

/// A checkpoint read once, for its model: the metadata names the config
/// that builds the model, then the `model.*` tensors fill it.
pub struct ModelCheckpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Iteration and config.
    pub meta: CheckpointMeta,
}

impl ModelCheckpoint {
    /// Reads the file.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = read(path)?;
        let meta = meta_of(path, &bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            meta,
        })
    }

    /// The model of the checkpoint's config with its weights, on any backend
    /// (an inference one for captioning), and the metadata.
    pub fn model<B: burn::tensor::backend::Backend>(
        self,
        device: &B::Device,
    ) -> Result<(PretrainingModel<B>, CheckpointMeta), CheckpointError> {
        let model = self
            .meta
            .config
            .model_config()
            .init::<B>(device)
            .map_err(|e| CheckpointError::Format {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let model = self.load_into(model)?;
        Ok((model, self.meta))
    }

    /// Loads the `model.*` tensors into `model` (built from the same config).
    pub fn load_into<B: burn::tensor::backend::Backend, M: ModuleSnapshot<B>>(
        &self,
        mut model: M,
    ) -> Result<M, CheckpointError> {
        let file = deserialize(&self.path, &self.bytes)?;
        apply_model(&self.path, &file, &mut model)?;
        Ok(model)
    }

    /// Applies what fits of the `model.*` tensors to `model`, a model of any
    /// config, and reports the rest (missing, unused and wrongly shaped
    /// tensors keep their values) instead of failing on it.
    pub fn apply_partially<B: burn::tensor::backend::Backend, M: ModuleSnapshot<B>>(
        &self,
        model: &mut M,
    ) -> Result<ApplyResult, CheckpointError> {
        let file = deserialize(&self.path, &self.bytes)?;
        Ok(apply_snapshots(&file, model))
    }
}

/// The tensors of a checkpoint's `bytes`, their header and offsets checked.
fn deserialize<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, CheckpointError> {
    SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer => format!(
                "{} bytes, not the size its header gives (cut short, or damaged)",
                bytes.len()
            ),
            e => e.to_string(),
        },
    })
}

fn as_data(view: &TensorView<'_>) -> TensorData {
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    TensorData::new(values, view.shape().to_vec())
}

/// Applies the `model.*` tensors of `file` to `model`; every parameter and
/// buffer must be present with its shape.
fn apply_model<B: burn::tensor::backend::Backend, M: ModuleSnapshot<B>>(
    path: &Path,
    file: &SafeTensors<'_>,
    model: &mut M,
) -> Result<(), CheckpointError> {
    let result = apply_snapshots(file, model);
    virtex_vision::check_applied(&result, path, false, |p| format!("{MODEL}{p}")).map_err(|e| {
        CheckpointError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Applies each `model.*` tensor of `file` that `model` has with its shape.
fn apply_snapshots<B: burn::tensor::backend::Backend, M: ModuleSnapshot<B>>(
    file: &SafeTensors<'_>,
    model: &mut M,
) -> ApplyResult {
    let snapshots = file
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            let model_path = name.strip_prefix(MODEL)?;
            let mut snapshot = TensorSnapshot::from_data(
                as_data(&view),
                model_path.split('.').map(str::to_string).collect(),
                Vec::new(),
                ParamId::new(),
            );
            snapshot.container_stack = None;
            snapshot.tensor_id = None;
            Some(snapshot)
        })
        .collect();
    model.apply(snapshots, None, None, true)
}

/// Loads a checkpoint into `model` (built from the same config) and
/// `optimizer` (made for that model); returns the model and the metadata.
pub fn load_checkpoint<B: AutodiffBackend, M: AutodiffModule<B>>(
    path: &Path,
    mut model: M,
    optimizer: &mut VirtexOptimizer<B>,
    device: &B::Device,
) -> Result<(M, CheckpointMeta), CheckpointError> {
    let bytes = read(path)?;
    let meta = meta_of(path, &bytes)?;
    let format = |message: String| CheckpointError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = deserialize(path, &bytes)?;
    let ids: HashMap<String, ParamId> = optimizer
        .table()
        .ids_by_path()
        .into_iter()
        .map(|(p, id)| (p.to_string(), id))
        .collect();
    let mut state: HashMap<ParamId, ParamState<B::InnerBackend>> = HashMap::new();
    for (name, view) in file.tensors() {
        if name.starts_with(MODEL) {
            continue;
        }
        let (prefix, param) = [FIRST, SECOND, SLOW]
            .into_iter()
            .find_map(|prefix| name.strip_prefix(prefix).map(|rest| (prefix, rest)))
            .ok_or_else(|| format(format!("unexpected tensor '{name}'")))?;
        let id = *ids
            .get(param)
            .ok_or_else(|| format(format!("'{name}' names no parameter of this model")))?;
        let tensor = Tensor::<B::InnerBackend, 1>::from_data(as_data(&view), device);
        let entry = state.entry(id).or_default();
        match prefix {
            FIRST => entry.first = Some(tensor),
            SECOND => entry.second = Some(tensor),
            _ => entry.slow = Some(tensor),
        }
    }
    apply_model(path, &file, &mut model)?;
    optimizer.state = state;
    optimizer.steps = meta.optimizer_steps;
    Ok((model, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("virtex-checkpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Empty files named as checkpoints after `iterations` in `dir`.
    fn touch(dir: &Path, iterations: &[u64]) {
        for &iteration in iterations {
            std::fs::write(checkpoint_path(dir, iteration), b"").unwrap();
        }
    }

    fn iterations(dir: &Path) -> Vec<u64> {
        list_checkpoints(dir).iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_protected_checkpoint() {
        let dir = scratch("prune");
        touch(&dir, &[100, 200, 300, 400]);
        prune_checkpoints(&dir, 0, None).unwrap();
        assert_eq!(iterations(&dir), [100, 200, 300, 400], "0 keeps all");
        prune_checkpoints(&dir, 2, None).unwrap();
        assert_eq!(iterations(&dir), [300, 400]);

        // KEEP_LAST 1 with an older checkpoint protected keeps both.
        let protected = checkpoint_path(&dir, 300);
        prune_checkpoints(&dir, 1, Some(&protected)).unwrap();
        assert_eq!(iterations(&dir), [300, 400]);
        touch(&dir, &[500]);
        prune_checkpoints(&dir, 1, Some(&protected)).unwrap();
        assert_eq!(iterations(&dir), [300, 500]);
        // Protecting the newest keeps the newest only.
        prune_checkpoints(&dir, 1, Some(&checkpoint_path(&dir, 500))).unwrap();
        assert_eq!(iterations(&dir), [500]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_files_are_checkpoints() {
        let dir = scratch("list");
        touch(&dir, &[2, 10]);
        std::fs::create_dir(checkpoint_path(&dir, 20)).unwrap();
        std::fs::write(dir.join("checkpoint_x.safetensors"), b"").unwrap();
        std::fs::write(dir.join("checkpoint_30.tmp-write"), b"").unwrap();
        assert_eq!(iterations(&dir), [2, 10], "by iteration, not by name");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
