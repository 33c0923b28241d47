//! The five pretraining models: a visual backbone, a textual head and the
//! task's loss (`virtex/models/*.py`, `virtex/factories.py::PretrainingModelFactory`).

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};
use virtex_vision::{ResNet, ResNetArch, ResNetConfig};

use crate::config::TextualHeadName;
use crate::decoder::TransformerDecoder;
use crate::head::{LinearTextualHead, TransformerTextualHead};
use crate::losses::{cross_entropy_ignoring_padding, label_set_loss};

/// The pretraining task, the reference's `MODEL.NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PretrainingTask {
    /// Forward and backward captioning, the VirTex model (`virtex` or `bicaptioning`).
    #[serde(alias = "virtex")]
    Bicaptioning,
    /// Forward captioning only.
    Captioning,
    /// Predict the caption's bag of words from the pooled features.
    TokenClassification,
    /// Predict the image's COCO instance categories.
    MultilabelClassification,
    /// Masked language modelling conditioned on the image.
    MaskedLm,
}

impl PretrainingTask {
    /// Whether the task decodes captions with a Transformer head.
    pub fn needs_transformer(self) -> bool {
        !matches!(
            self,
            Self::TokenClassification | Self::MultilabelClassification
        )
    }
}

impl FromStr for PretrainingTask {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            format!(
                "unknown pretraining task {name:?} (expected virtex, bicaptioning, captioning, \
                 token_classification, multilabel_classification or masked_lm)"
            )
        })
    }
}

impl fmt::Display for PretrainingTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).expect("unit variants serialise");
        f.write_str(name.as_str().expect("unit variants are strings"))
    }
}

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

/// A copy of `module` with the same values under new parameter ids, so it
/// trains on its own (`copy.deepcopy` in the reference). A plain `clone`
/// shares ids, which the optimiser would treat as one parameter, and clones
/// lazily initialised parameters without their values.
fn independent_copy<B: Backend, M: Module<B>>(module: &M) -> M {
    module.visit(&mut Materialise);
    module.clone().map(&mut NewParamIds)
}

/// Runs every lazy parameter's initialiser.
struct Materialise;

impl<B: Backend> ModuleVisitor<B> for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Gives every parameter a new id and its own tensor. Reusing the tensor
/// would keep one autodiff leaf for both copies, so the first copy visited
/// would collect both copies' gradients and the second none.
struct NewParamIds;

impl<B: Backend> ModuleMapper<B> for NewParamIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        let mut own = Tensor::from_data(tensor.to_data(), &tensor.device());
        if tensor.is_require_grad() {
            own = own.require_grad();
        }
        Param::from_mapped_value(ParamId::new(), own, mapper)
    }
}

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
    /// Label ids `[batch, W]` (token or multilabel classification).
    pub labels: Option<Tensor<B, 2, Int>>,
    /// Masked-LM inputs and labels, `[batch, T]` each.
    pub masked: Option<(Tensor<B, 2, Int>, Tensor<B, 2, Int>)>,
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

/// Predicting `tokens[:, 1:]` from `logits[:, :-1]`.
fn next_token_loss<B: Backend>(logits: Tensor<B, 3>, tokens: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [batch, length, vocab] = logits.dims();
    cross_entropy_ignoring_padding(
        logits.slice([0..batch, 0..length - 1, 0..vocab]),
        tokens.slice([0..batch, 1..length]),
    )
}

impl<B: Backend> PretrainingModel<B> {
    /// The forward Transformer head, if the model has one.
    pub fn transformer_head(&self) -> Option<&TransformerTextualHead<B>> {
        match &self.textual {
            TextualHead::Transformer(head) => Some(head),
            TextualHead::Linear(_) => None,
        }
    }

    /// The task's loss on `input`, from images through the backbone.
    pub fn forward(&self, input: &PretrainingInput<B>) -> PretrainingOutput<B> {
        let features = self.visual.forward(input.images.clone());
        self.forward_features(features, input)
    }

    /// The task's loss given the backbone's layer4 features `[batch, C, h, w]`.
    ///
    /// # Panics
    /// If `input` lacks the task's targets (labels for the classification
    /// tasks, masked tokens for masked LM): a loader set up for another task.
    pub fn forward_features(
        &self,
        features: Tensor<B, 4>,
        input: &PretrainingInput<B>,
    ) -> PretrainingOutput<B> {
        let components = match (&self.textual, self.task) {
            (TextualHead::Transformer(head), task) => {
                let memory = head.memory(features);
                match task {
                    PretrainingTask::MaskedLm => {
                        let (tokens, labels) = input
                            .masked
                            .clone()
                            .expect("masked_lm needs a loader with the MaskedLm task view");
                        let logits = head.decode_with(
                            &head.transformer,
                            memory,
                            tokens,
                            &input.lengths,
                            false,
                        );
                        vec![("masked_lm", cross_entropy_ignoring_padding(logits, labels))]
                    }
                    _ => {
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
            }
            (TextualHead::Linear(head), task) => {
                let labels = input
                    .labels
                    .clone()
                    .expect("classification tasks need a loader with a label task view");
                let name = match task {
                    PretrainingTask::MultilabelClassification => "multilabel_classification",
                    _ => "token_classification",
                };
                vec![(name, label_set_loss(head.forward(features), labels))]
            }
        };
        let loss = components
            .iter()
            .map(|(_, term)| term.clone())
            .reduce(|a, b| a + b)
            .expect("every task has a loss term");
        PretrainingOutput { loss, components }
    }
}
