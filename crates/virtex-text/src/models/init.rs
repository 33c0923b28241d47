//! Building a pretraining model from its config, initialised as the
//! reference (`virtex/factories.py::PretrainingModelFactory`).

use burn::module::Module;
use burn::tensor::backend::Backend;
use virtex_vision::{ResNetArch, ResNetConfig};

use super::copy::{Materialise, independent_copy};
use super::{BackwardTextualHead, PretrainingModel, PretrainingTask, TextualHead};
use crate::head::{LinearTextualHead, TransformerTextualHead};
use crate::head_name::TextualHeadName;

/// What a model is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainingModelConfig {
    /// The task.
    pub task: PretrainingTask,
    /// The visual backbone.
    pub visual: ResNetArch,
    /// The textual head.
    pub textual: TextualHeadName,
    /// Outputs: the vocabulary size, or categories + 1 for multilabel.
    pub vocab_size: usize,
    /// Longest caption in tokens, `[SOS]` and `[EOS]` included: the
    /// Transformer head's learned positions (`DATA.MAX_CAPTION_LENGTH`, 30).
    pub max_caption_length: usize,
    /// Dropout in the textual head (0.1).
    pub dropout: f64,
}

/// A config whose task and head do not go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MODEL.NAME {task} needs {needs}, but MODEL.TEXTUAL.NAME is {textual}")]
pub struct ModelConfigError {
    /// The task.
    pub task: PretrainingTask,
    /// The head given.
    pub textual: TextualHeadName,
    /// What the task needs.
    pub needs: &'static str,
}

impl PretrainingModelConfig {
    /// Builds the model, initialised as the reference.
    pub fn init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<PretrainingModel<B>, ModelConfigError> {
        let visual = ResNetConfig::virtex(self.visual).init(device);
        let channels = visual.out_channels();
        let (textual, backward_textual) = match (self.textual, self.task.needs_transformer()) {
            (TextualHeadName::Transformer { norm, size }, true) => {
                let head = TransformerTextualHead::new(
                    channels,
                    self.vocab_size,
                    self.max_caption_length,
                    &size,
                    norm,
                    self.dropout,
                    device,
                );
                let backward =
                    (self.task == PretrainingTask::Bicaptioning).then(|| BackwardTextualHead {
                        transformer: independent_copy(&head.transformer),
                    });
                (TextualHead::Transformer(head), backward)
            }
            (TextualHeadName::Linear, false) => (
                TextualHead::Linear(LinearTextualHead::new(channels, self.vocab_size, device)),
                None,
            ),
            (textual, needs_transformer) => {
                return Err(ModelConfigError {
                    task: self.task,
                    textual,
                    needs: if needs_transformer {
                        "a transdec_* head"
                    } else {
                        "the linear head `none`"
                    },
                });
            }
        };
        let model = PretrainingModel {
            visual,
            textual,
            backward_textual,
            task: self.task,
        };
        // Run every lazy initialiser now, so the draws happen here and not
        // at first use (where a training loop may have reseeded the backend).
        model.visit(&mut Materialise);
        Ok(model)
    }
}
