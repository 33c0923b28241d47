//! The five pretraining tasks, the reference's `MODEL.NAME`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
    /// The targets the task predicts, in the words of
    /// [`PretrainingTargets::kind`](super::PretrainingTargets::kind).
    pub fn targets(self) -> &'static str {
        match self {
            Self::Bicaptioning | Self::Captioning => "captions",
            Self::TokenClassification | Self::MultilabelClassification => "labels",
            Self::MaskedLm => "masked tokens",
        }
    }

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
