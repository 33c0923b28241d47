//! The reference's PyTorch layout: official VirTex checkpoints
//! (`torch.save({"model": state_dict, …})`, as the reference's
//! `virtex/utils/checkpointing.py` writes them) into a
//! [`PretrainingModel`], and [`official_name`], the reference's state-dict
//! key of each burn parameter path (which the optimiser's no-decay rule
//! also speaks).
//!
//! Key mapping, official → burn:
//! - `visual.cnn.*` → `visual.*` under virtex-vision's torchvision mapping
//!   (`num_batches_tracked` dropped);
//! - `*.in_proj_weight` `[3H, H]` / `in_proj_bias` `[3H]` → the rows q; k; v
//!   into `query`, `key`, `value`;
//! - `textual.output.weight` must equal `textual.embedding.words.weight`
//!   (tied); `backward_textual.{visual_projection,embedding,output}.*` are the
//!   forward head's tensors again and must equal them;
//! - every other key keeps its name (LayerNorm `weight`/`bias` become
//!   `gamma`/`beta`; burn-store's PyTorch adapter transposes Linear weights).

mod names;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ParamId};
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use burn_store::{ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};
use virtex_vision::pytorch::{read_pth, torchvision_to_burn};
use virtex_vision::{VisionError, check_applied};

pub use names::official_name;
use names::{IN_PROJ_ROWS, textual_path};

#[cfg(doc)]
use crate::models::PretrainingModel;

const WORDS: &str = "textual.embedding.words.weight";

/// A checkpoint that cannot be loaded into the model.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Missing, unexpected or misshapen keys, or an unreadable file.
    #[error(transparent)]
    Keys(#[from] VisionError),
    /// A tensor the reference shares or ties differs from its twin.
    #[error(
        "{path}: '{key}' should be the same tensor as '{twin}' (tied or shared in VirTex) but differs"
    )]
    Untied {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The key it must equal.
        twin: String,
    },
}

/// Which parts of the model a checkpoint must provide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointParts {
    /// Backbone and textual heads: an official model-zoo or training checkpoint.
    Full,
    /// Only `textual.*` / `backward_textual.*`; the backbone comes from
    /// elsewhere (e.g. a torchvision file) and `visual.cnn.*` keys are ignored.
    TextualOnly,
}

fn snapshot_at(snapshot: TensorSnapshot, path: &str) -> TensorSnapshot {
    let mut snapshot = snapshot;
    snapshot.path_stack = Some(path.split('.').map(str::to_string).collect());
    snapshot.container_stack = None;
    snapshot.tensor_id = None;
    snapshot
}

fn read_f32(snapshot: &TensorSnapshot, file: &Path, key: &str) -> Result<TensorData, VisionError> {
    snapshot
        .to_data()
        .map(|d| d.convert::<f32>())
        .map_err(|e| VisionError::Read {
            path: file.to_path_buf(),
            message: format!("{key}: {e:?}"),
        })
}

/// Splits `in_proj_weight` `[3H, H]` (or `in_proj_bias` `[3H]`) into three
/// snapshots for `query`, `key`, `value` under `attention`.
fn split_in_proj(
    data: TensorData,
    attention: &str,
    leaf: &str,
) -> impl Iterator<Item = TensorSnapshot> {
    let shape = data.shape.to_vec();
    let values = data.to_vec::<f32>().expect("converted to f32");
    let third = shape[0] / 3;
    let per = values.len() / 3;
    let attention = attention.to_string();
    let leaf = leaf.to_string();
    IN_PROJ_ROWS.into_iter().map(move |(projection, index)| {
        let mut part_shape = shape.clone();
        part_shape[0] = third;
        let part = TensorData::new(values[index * per..(index + 1) * per].to_vec(), part_shape);
        let path = format!("{attention}.{projection}.{leaf}");
        let mut snapshot = TensorSnapshot::from_data(
            part,
            path.split('.').map(str::to_string).collect(),
            Vec::new(),
            ParamId::new(),
        );
        snapshot.container_stack = None;
        snapshot.tensor_id = None;
        snapshot
    })
}

/// Loads an official VirTex checkpoint (`{"model": state_dict}`) into `model`,
/// a [`PretrainingModel`] with the checkpoint's task, backbone and head sizes
/// (or any module laid out as one: `visual`, `textual`, `backward_textual`).
pub fn load_virtex_checkpoint<B: Backend, M: Module<B>>(
    mut model: M,
    path: &Path,
    parts: CheckpointParts,
) -> Result<M, CheckpointError> {
    let mut result = apply_virtex_checkpoint(&mut model, path, parts)?;
    if parts == CheckpointParts::TextualOnly {
        result.missing.retain(|(p, _)| !p.starts_with("visual."));
    }
    check_applied(&result, path, false, official_name)?;
    Ok(model)
}

/// Applies what fits of an official VirTex checkpoint to `model` and reports
/// the rest (missing, unused and wrongly shaped tensors keep their values)
/// instead of failing on it: for starting a different model from one.
pub fn apply_virtex_checkpoint<B: Backend, M: Module<B>>(
    model: &mut M,
    path: &Path,
    parts: CheckpointParts,
) -> Result<ApplyResult, CheckpointError> {
    let reader = read_pth(path, Some("model"))?;
    let tensors: HashMap<String, TensorSnapshot> = reader.into_tensors().into_iter().collect();
    // A Transformer head ties its output to the word embedding; a linear
    // head (`none`) has its own `textual.output.weight` and no embedding.
    let tied_head = tensors.contains_key(WORDS);

    let mut snapshots = Vec::new();
    for (key, snapshot) in &tensors {
        if let Some(cnn) = key.strip_prefix("visual.cnn.") {
            if parts == CheckpointParts::Full && !cnn.ends_with("num_batches_tracked") {
                snapshots.push(snapshot_at(
                    snapshot.clone(),
                    &format!("visual.{}", torchvision_to_burn(cnn)),
                ));
            }
            continue;
        }
        let twin = match key.as_str() {
            "textual.output.weight" if tied_head => Some(WORDS.to_string()),
            _ => ["visual_projection.", "embedding.", "output."]
                .iter()
                .find_map(|shared| {
                    key.strip_prefix("backward_textual.")
                        .filter(|rest| rest.starts_with(shared))
                        .map(|rest| format!("textual.{rest}"))
                }),
        };
        if let Some(twin) = twin {
            let equal = tensors.get(&twin).is_some_and(|other| {
                read_f32(other, path, &twin).ok() == read_f32(snapshot, path, key).ok()
            });
            if !equal {
                return Err(CheckpointError::Untied {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    twin,
                });
            }
            continue;
        }
        match key.rsplit_once('.') {
            Some((attention, "in_proj_weight")) => snapshots.extend(split_in_proj(
                read_f32(snapshot, path, key)?,
                attention,
                "weight",
            )),
            Some((attention, "in_proj_bias")) => snapshots.extend(split_in_proj(
                read_f32(snapshot, path, key)?,
                attention,
                "bias",
            )),
            _ => snapshots.push(snapshot_at(snapshot.clone(), &textual_path(key))),
        }
    }

    Ok(model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true))
}
