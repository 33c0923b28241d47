//! `MODEL.*`: the pretraining task, the backbone, the textual head and the
//! caption decoder.

use serde::{Deserialize, Serialize};
use virtex_text::{PretrainingTask, TextualHeadName};
use virtex_vision::ResNetArch;

use super::{BeamPrefix, by_name};

/// `MODEL.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct ModelConfig {
    /// The pretraining task (`virtex` = bicaptioning).
    pub name: PretrainingTask,
    /// `MODEL.VISUAL.*`.
    pub visual: VisualConfig,
    /// `MODEL.TEXTUAL.*`.
    pub textual: TextualConfig,
    /// `MODEL.DECODER.*`.
    pub decoder: DecoderConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: PretrainingTask::Bicaptioning,
            visual: VisualConfig::default(),
            textual: TextualConfig::default(),
            decoder: DecoderConfig::default(),
        }
    }
}

/// `MODEL.VISUAL.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct VisualConfig {
    /// Backbone, e.g. `torchvision::resnet50`.
    #[serde(with = "by_name")]
    pub name: ResNetArch,
    /// The backbone's output channels (checked against the backbone).
    pub feature_size: usize,
    /// ImageNet-pretrained start: not available offline, must be false.
    pub pretrained: bool,
    /// Keep the backbone frozen.
    pub frozen: bool,
}

impl Default for VisualConfig {
    fn default() -> Self {
        Self {
            name: ResNetArch::Resnet50,
            feature_size: 2048,
            pretrained: false,
            frozen: false,
        }
    }
}

/// `MODEL.TEXTUAL.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct TextualConfig {
    /// e.g. `transdec_postnorm::L1_H2048_A32_F8192`, or `none`.
    pub name: TextualHeadName,
    /// Dropout (0.1).
    pub dropout: f64,
}

impl Default for TextualConfig {
    fn default() -> Self {
        Self {
            name: "transdec_postnorm::L1_H2048_A32_F8192"
                .parse()
                .expect("a valid default"),
            dropout: 0.1,
        }
    }
}

/// `MODEL.DECODER.*`: how captions are decoded in evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct DecoderConfig {
    /// `beam_search`, `nucleus_sampling` or `greedy` (virtex-rs).
    pub name: DecoderName,
    /// Beams (5).
    pub beam_size: usize,
    /// Nucleus mass (0.9).
    pub nucleus_size: f64,
    /// Most generated tokens (30).
    pub max_decoding_steps: usize,
    /// Beam search's prefix after the first step (virtex-rs): `keep_sos`, as
    /// the model was trained (default), or `drop_sos`, the reference's search.
    pub beam_prefix: BeamPrefix,
    /// λ of the first token's mutual-information score, `log p(t | image) −
    /// λ·log p(t | no image)` (virtex-rs; 0, the reference's decoding, by
    /// default; [`virtex_text::decoding::CaptionDecoder::prior_penalty`]).
    pub prior_penalty: f64,
    /// μ of beam search's bidirectional ranking: the final beam with the best
    /// forward score + μ·backward log-probability is the caption
    /// (bicaptioning models; no effect on a model without a backward decoder;
    /// virtex-rs; 0, the reference's decoding, by default;
    /// [`virtex_text::decoding::CaptionDecoder::backward_weight`]).
    pub backward_weight: f64,
}

/// `MODEL.DECODER.NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderName {
    /// Beam search.
    BeamSearch,
    /// Nucleus sampling.
    NucleusSampling,
    /// Greedy.
    Greedy,
}

impl std::str::FromStr for DecoderName {
    type Err = String;

    /// The config's names, or the short `beam` / `nucleus` of the command line.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "beam_search" | "beam" => Ok(Self::BeamSearch),
            "nucleus_sampling" | "nucleus" => Ok(Self::NucleusSampling),
            "greedy" => Ok(Self::Greedy),
            other => Err(format!(
                "unknown decoder '{other}': expected beam_search (beam), nucleus_sampling (nucleus) or greedy"
            )),
        }
    }
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            name: DecoderName::BeamSearch,
            beam_size: 5,
            nucleus_size: 0.9,
            max_decoding_steps: 30,
            beam_prefix: BeamPrefix::default(),
            prior_penalty: 0.0,
            backward_weight: 0.0,
        }
    }
}

impl DecoderConfig {
    /// The key and what is wrong, for a value the types allow but the
    /// decoder does not.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("MODEL.DECODER.PRIOR_PENALTY", self.prior_penalty),
            ("MODEL.DECODER.BACKWARD_WEIGHT", self.backward_weight),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err((key, format!("must be a finite number ≥ 0, got {value}")));
            }
        }
        Ok(())
    }
}
