//! The five pretraining models: a visual backbone, a textual head and the
//! task's loss (`virtex/models/*.py`, `virtex/factories.py::PretrainingModelFactory`).
//!
//! - `task.rs`: the tasks ([`PretrainingTask`], `MODEL.NAME`);
//! - `init.rs`: building and initialising a model ([`PretrainingModelConfig`]);
//! - `input.rs`: what the model reads and returns ([`PretrainingInput`],
//!   [`PretrainingTargets`], [`PretrainingOutput`]);
//! - `copy.rs`: independent copies of a module (the backward decoder is one);
//! - this module: the model and its loss, chosen by the task.

mod copy;
mod init;
mod input;
mod task;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use virtex_vision::{Precision, ResNet, VisionBackend};

pub use init::{ModelConfigError, PretrainingModelConfig};
pub use input::{PretrainingInput, PretrainingOutput, PretrainingTargets, TargetsMismatch};
pub use task::PretrainingTask;

use crate::decoder::TransformerDecoder;
use crate::head::{LinearTextualHead, TransformerTextualHead};
use crate::losses::{cross_entropy_ignoring_padding, label_set_loss, next_token_loss};

/// A textual head of either kind.
// One per model, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextualHead<B: Backend> {
    /// Transformer decoder head (captioning tasks and masked LM).
    Transformer(TransformerTextualHead<B>),
    /// Pooled linear head (token and multilabel classification).
    Linear(LinearTextualHead<B>),
}

/// The backward direction of bicaptioning: only its Transformer layers are
/// its own; the projection, embedding and output are the forward head's.
#[derive(Module, Debug)]
pub struct BackwardTextualHead<B: Backend> {
    /// The backward decoder (starts as a copy of the forward one).
    pub transformer: TransformerDecoder<B>,
}

/// A visual backbone, a textual head (and for bicaptioning, a backward
/// decoder) and the task's loss.
#[derive(Module, Debug)]
pub struct PretrainingModel<B: Backend> {
    /// The ResNet (`visual.cnn` in the reference's checkpoints).
    pub visual: ResNet<B>,
    /// The (forward) textual head.
    pub textual: TextualHead<B>,
    /// Bicaptioning's backward decoder.
    pub backward_textual: Option<BackwardTextualHead<B>>,
    /// The task.
    #[module(skip)]
    pub task: PretrainingTask,
}

impl<B: VisionBackend> PretrainingModel<B> {
    /// Runs the convolutions and the Transformer's matrix products in
    /// `precision` ([`Precision::Bf16`]: the reference's `AMP: true`); norms,
    /// softmax, the losses and the parameters stay f32, and so does the
    /// pooled linear head of the classification tasks (one small product).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.visual.precision = precision;
        if let TextualHead::Transformer(head) = &mut self.textual {
            head.set_precision(precision);
        }
        if let Some(backward) = &mut self.backward_textual {
            backward.transformer.set_precision(precision);
        }
        self
    }

    /// The forward Transformer head, if the model has one.
    pub fn transformer_head(&self) -> Option<&TransformerTextualHead<B>> {
        match &self.textual {
            TextualHead::Transformer(head) => Some(head),
            TextualHead::Linear(_) => None,
        }
    }

    /// Bicaptioning's backward decoder, if the model has one (for
    /// [`crate::decoding::CaptionDecoder::decode_bicaptioning`]).
    pub fn backward_decoder(&self) -> Option<&TransformerDecoder<B>> {
        self.backward_textual.as_ref().map(|b| &b.transformer)
    }

    /// The task's loss on `input`, from images through the backbone.
    pub fn forward(
        &self,
        input: &PretrainingInput<B>,
    ) -> Result<PretrainingOutput<B>, TargetsMismatch> {
        self.check_targets(&input.targets)?;
        let features = self.visual.forward(input.images.clone());
        self.forward_features(features, input)
    }

    /// The task's loss given the backbone's layer4 features `[batch, C, h, w]`.
    ///
    /// # Errors
    /// When `input`'s targets are not the task's (a loader set up for another task).
    ///
    /// # Panics
    /// If the textual head does not suit the task, which
    /// [`PretrainingModelConfig::init`] rules out.
    pub fn forward_features(
        &self,
        features: Tensor<B, 4>,
        input: &PretrainingInput<B>,
    ) -> Result<PretrainingOutput<B>, TargetsMismatch> {
        self.check_targets(&input.targets)?;
        let components = match (&self.textual, &input.targets) {
            (TextualHead::Transformer(head), PretrainingTargets::Captions) => {
                self.captioning_terms(head, features, input)
            }
            (TextualHead::Transformer(head), PretrainingTargets::MaskedLm { tokens, labels }) => {
                let memory = head.memory(features);
                let logits = head.decode_with(
                    &head.transformer,
                    memory,
                    tokens.clone(),
                    &input.lengths,
                    false,
                );
                vec![(
                    "masked_lm",
                    cross_entropy_ignoring_padding(logits, labels.clone()),
                )]
            }
            (TextualHead::Linear(head), PretrainingTargets::Labels(labels)) => {
                let name = match self.task {
                    PretrainingTask::MultilabelClassification => "multilabel_classification",
                    _ => "token_classification",
                };
                vec![(name, label_set_loss(head.forward(features), labels.clone()))]
            }
            (_, targets) => panic!(
                "a {} model whose textual head cannot read {}: build models with \
                 PretrainingModelConfig::init",
                self.task,
                targets.kind()
            ),
        };
        let loss = components
            .iter()
            .map(|(_, term)| term.clone())
            .reduce(|a, b| a + b)
            .expect("every task has a loss term");
        Ok(PretrainingOutput { loss, components })
    }

    /// An error unless `targets` are what the task predicts.
    fn check_targets(&self, targets: &PretrainingTargets<B>) -> Result<(), TargetsMismatch> {
        let needs = self.task.targets();
        if needs == targets.kind() {
            Ok(())
        } else {
            Err(TargetsMismatch {
                task: self.task,
                needs,
                given: targets.kind(),
            })
        }
    }

    /// The forward (and for bicaptioning, backward) next-token losses.
    fn captioning_terms(
        &self,
        head: &TransformerTextualHead<B>,
        features: Tensor<B, 4>,
        input: &PretrainingInput<B>,
    ) -> Vec<(&'static str, Tensor<B, 1>)> {
        let memory = head.memory(features);
        let logits = head.decode_with(
            &head.transformer,
            memory.clone(),
            input.forward.clone(),
            &input.lengths,
            true,
        );
        let mut terms = vec![(
            "captioning_forward",
            next_token_loss(logits, input.forward.clone()),
        )];
        if let Some(backward) = &self.backward_textual {
            let logits = head.decode_with(
                &backward.transformer,
                memory,
                input.backward.clone(),
                &input.lengths,
                true,
            );
            terms.push((
                "captioning_backward",
                next_token_loss(logits, input.backward.clone()),
            ));
        }
        terms
    }
}
