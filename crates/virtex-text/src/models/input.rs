//! What a pretraining model reads (one batch as tensors) and what it returns
//! (the loss and its named terms).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::PretrainingTask;

/// One batch on the model's device.
#[derive(Clone, Debug)]
pub struct PretrainingInput<B: Backend> {
    /// Images `[batch, 3, S, S]`.
    pub images: Tensor<B, 4>,
    /// `[SOS] … [EOS]` tokens, `[batch, T]`, padded with 0.
    pub forward: Tensor<B, 2, Int>,
    /// The reversed tokens, `[batch, T]`.
    pub backward: Tensor<B, 2, Int>,
    /// Caption lengths.
    pub lengths: Vec<usize>,
    /// What the task predicts.
    pub targets: PretrainingTargets<B>,
}

/// The targets of one batch; they must be the model's task's.
#[derive(Clone, Debug)]
pub enum PretrainingTargets<B: Backend> {
    /// Captioning and bicaptioning: the caption tokens themselves.
    Captions,
    /// Token or multilabel classification: label ids `[batch, W]`,
    /// right-padded with 0.
    Labels(Tensor<B, 2, Int>),
    /// Masked LM: the caption with masked pieces (the input) and the pieces
    /// to recover (0 elsewhere), `[batch, T]` each.
    MaskedLm {
        /// The decoder's input.
        tokens: Tensor<B, 2, Int>,
        /// The original piece at each masked position, 0 elsewhere.
        labels: Tensor<B, 2, Int>,
    },
}

impl<B: Backend> PretrainingTargets<B> {
    /// What these targets are, in words.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Captions => "captions",
            Self::Labels(_) => "labels",
            Self::MaskedLm { .. } => "masked tokens",
        }
    }
}

/// A batch whose targets are not the model's task's: a loader set up for
/// another task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} model needs {needs} as targets, but the batch carries {given}")]
pub struct TargetsMismatch {
    /// The model's task.
    pub task: PretrainingTask,
    /// The targets the task needs.
    pub needs: &'static str,
    /// The targets the batch carries.
    pub given: &'static str,
}

/// A loss and its named parts (`captioning_forward`, `captioning_backward`,
/// `token_classification`, `multilabel_classification`, `masked_lm`).
#[derive(Clone, Debug)]
pub struct PretrainingOutput<B: Backend> {
    /// The total, what the optimiser minimises.
    pub loss: Tensor<B, 1>,
    /// Each term of the total.
    pub components: Vec<(&'static str, Tensor<B, 1>)>,
}
