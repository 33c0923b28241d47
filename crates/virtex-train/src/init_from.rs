//! Starting a new model from another model's weights (`pretrain
//! --init-from`): whatever fits is loaded, the rest keeps its fresh
//! initialisation, and the report names both.
//!
//! A virtex-rs checkpoint or an official VirTex `.pth` gives every tensor the
//! new model has under the same name and shape (a deeper decoder keeps its
//! extra layers fresh, another vocabulary its embedding); a torchvision
//! `.pth` gives the backbone alone.

use burn::tensor::backend::Backend;
use burn_store::{ApplyError, ApplyResult, ModuleSnapshot};
use virtex_text::PretrainingModel;
use virtex_text::pytorch::{CheckpointParts, apply_virtex_checkpoint};
use virtex_vision::pytorch::TorchvisionWeights;

use crate::checkpoint::ModelCheckpoint;
use crate::source::{SourceError, WeightsSource};

/// What an initialisation loaded and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Tensors of the new model given the source's values.
    pub loaded: usize,
    /// Tensors of the new model that kept their fresh values, each with why
    /// (not in the source, or another shape there).
    pub left_out: Vec<String>,
    /// Tensors of the source the new model has no place for.
    pub unused: Vec<String>,
}

impl InitReport {
    fn from_apply(result: ApplyResult) -> Self {
        let mut left_out: Vec<String> = result
            .missing
            .into_iter()
            .map(|(path, _)| format!("{path} (not in the source)"))
            .collect();
        left_out.extend(result.errors.into_iter().map(|error| match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!("{path} (shape {found:?} in the source, {expected:?} here)"),
            ApplyError::DTypeMismatch { path, .. } => format!("{path} (another dtype)"),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => {
                format!("{path} ({message})")
            }
        }));
        left_out.sort();
        let mut unused = result.unused;
        unused.sort();
        Self {
            loaded: result.applied.len(),
            left_out,
            unused,
        }
    }
}

impl WeightsSource {
    /// `model` with what fits of this source's weights (`Random` changes
    /// nothing), and the report of what did and did not.
    pub fn init_model<B: Backend>(
        &self,
        mut model: PretrainingModel<B>,
    ) -> Result<(PretrainingModel<B>, InitReport), SourceError> {
        let result = match self {
            Self::Random => return Ok((model, InitReport::default())),
            Self::Native(path) => ModelCheckpoint::open(path)?.apply_partially(&mut model)?,
            Self::Virtex(path) => apply_virtex_checkpoint(&mut model, path, CheckpointParts::Full)?,
            Self::Torchvision(path) => {
                let loaded = model.visual.collect(None, None, false).len();
                model.visual = TorchvisionWeights::new(path).load(model.visual)?;
                let mut left_out =
                    vec!["textual.* (a torchvision file holds a backbone only)".into()];
                if model.backward_textual.is_some() {
                    left_out.push("backward_textual.* (likewise)".into());
                }
                let report = InitReport {
                    loaded,
                    left_out,
                    unused: Vec::new(),
                };
                return Ok((model, report));
            }
        };
        Ok((model, InitReport::from_apply(result)))
    }
}
