//! The pretraining configuration: the reference's config tree
//! (`virtex/config.py`) with its keys and defaults, read from the reference's
//! YAML files (including `_BASE_` inheritance) and `--set KEY=VALUE`
//! overrides. Unknown keys and invalid values are errors naming the key.
//!
//! One section is virtex-rs's own: `TRAIN` holds what the reference passes to
//! `scripts/pretrain_virtex.py` as flags (checkpoint and validation periods,
//! logging).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;
use virtex_data::augment::TrainAugmentation;
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_text::decoding::{CaptionDecoder, DecodingStrategy};
use virtex_text::{PretrainingModelConfig, PretrainingTask, TextualHeadName};

mod data;
mod model;
mod optim;
mod train;
mod yaml;

pub use data::{DataConfig, TRAIN_TRANSFORMS, VAL_TRANSFORMS};
pub use model::{DecoderConfig, DecoderName, ModelConfig, TextualConfig, VisualConfig};
pub use optim::{LookaheadConfig, LrDecayName, OptimConfig, OptimizerName};
pub use train::TrainConfig;
pub use virtex_text::decoding::BeamPrefix;
use yaml::{read_tree, set_key};

/// Expansions per beam: fixed at 2 in the reference's `AutoRegressiveBeamSearch`.
const PER_NODE_BEAM_SIZE: usize = 2;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path}: not valid YAML: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: serde_yaml_ng::Error,
    },
    /// A key is unknown or its value invalid.
    #[error("{origin}: key {key}: {message}")]
    Key {
        /// The config file (and overrides) it came from.
        origin: String,
        /// The dotted key, e.g. `OPTIM.LR`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer disagrees with the config's vocabulary settings.
    #[error("tokenizer {path} and the config disagree: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// Which value, and both sides of it.
        message: String,
    },
    /// A `--set` override that is not `KEY=VALUE`.
    #[error("--set {0:?}: expected KEY=VALUE, e.g. OPTIM.LR=0.002")]
    Override(String),
}

/// Parses and prints through `FromStr` / `Display` (names like
/// `torchvision::resnet50` or `transdec_postnorm::L1_H2048_A32_F8192`).
mod by_name {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Config {
    /// Seed of everything random (0).
    pub random_seed: u64,
    /// Mixed precision (true in the reference): on CUDA, convolutions and
    /// matrix products in bf16, the rest in f32; ignored on the CPU
    /// ([`crate::device::DeviceSpec::precision`], docs/deviations.md).
    pub amp: bool,
    /// Accepted for compatibility; cuDNN is not used.
    pub cudnn_benchmark: bool,
    /// Accepted for compatibility; cuDNN is not used.
    pub cudnn_deterministic: bool,
    /// `DATA.*`.
    pub data: DataConfig,
    /// `MODEL.*`.
    pub model: ModelConfig,
    /// `OPTIM.*`.
    pub optim: OptimConfig,
    /// `TRAIN.*` (virtex-rs: the reference's script flags).
    pub train: TrainConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            random_seed: 0,
            amp: true,
            cudnn_benchmark: true,
            cudnn_deterministic: false,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
        }
    }
}

impl Config {
    /// The model these settings describe (`MODEL.*` and `DATA.VOCAB_SIZE`).
    pub fn model_config(&self) -> PretrainingModelConfig {
        PretrainingModelConfig {
            task: self.model.name,
            visual: self.model.visual.name,
            textual: self.model.textual.name,
            vocab_size: self.data.vocab_size,
            max_caption_length: self.data.max_caption_length,
            dropout: self.model.textual.dropout,
        }
    }

    /// The training augmentation `DATA.IMAGE_TRANSFORM_TRAIN` names, at
    /// `DATA.IMAGE_CROP_SIZE`.
    pub fn train_augmentation(&self) -> Result<TrainAugmentation, ConfigError> {
        TrainAugmentation::from_transforms(
            &self.data.image_transform_train,
            self.data.image_crop_size,
        )
        .map_err(|err| ConfigError::Key {
            origin: "config".into(),
            key: "DATA.IMAGE_TRANSFORM_TRAIN".into(),
            message: err.to_string(),
        })
    }

    /// The caption decoder `MODEL.DECODER` describes, with `[SOS]`/`[EOS]`
    /// from `DATA`; `name` replaces `MODEL.DECODER.NAME` when given.
    pub fn caption_decoder(&self, name: Option<DecoderName>) -> CaptionDecoder {
        let settings = &self.model.decoder;
        let strategy = match name.unwrap_or(settings.name) {
            DecoderName::BeamSearch => DecodingStrategy::Beam {
                beam_size: settings.beam_size,
                per_node_beam_size: PER_NODE_BEAM_SIZE,
                prefix: settings.beam_prefix,
            },
            DecoderName::NucleusSampling => DecodingStrategy::Nucleus {
                top_p: settings.nucleus_size,
            },
            DecoderName::Greedy => DecodingStrategy::Greedy,
        };
        CaptionDecoder {
            strategy,
            max_steps: settings.max_decoding_steps,
            sos_id: self.data.sos_index,
            eos_id: self.data.eos_index,
            prior_penalty: settings.prior_penalty as f32,
            backward_weight: settings.backward_weight as f32,
        }
    }

    /// Checks that `tokenizer` (read from `path`) has the config's vocabulary
    /// size and puts `<unk>`, `[SOS]`, `[EOS]` and `[MASK]` at the config's ids.
    pub fn check_tokenizer(
        &self,
        tokenizer: &SentencePieceTokenizer,
        path: &Path,
    ) -> Result<(), ConfigError> {
        let mismatch = |message: String| ConfigError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let vocab = tokenizer.vocab_size();
        // Multilabel classification predicts categories, not pieces.
        if self.model.name != PretrainingTask::MultilabelClassification
            && vocab != self.data.vocab_size
        {
            return Err(mismatch(format!(
                "it has {vocab} pieces, DATA.VOCAB_SIZE is {}",
                self.data.vocab_size
            )));
        }
        let d = &self.data;
        for (piece, key, id) in [
            ("<unk>", "DATA.UNK_INDEX", d.unk_index),
            ("[SOS]", "DATA.SOS_INDEX", d.sos_index),
            ("[EOS]", "DATA.EOS_INDEX", d.eos_index),
            ("[MASK]", "DATA.MASK_INDEX", d.mask_index),
        ] {
            let found = tokenizer.piece_to_id(piece);
            if found != Some(id) {
                let found = found.map_or("no such piece".into(), |f| format!("id {f}"));
                return Err(mismatch(format!("{piece} is {found}, {key} is {id}")));
            }
        }
        Ok(())
    }

    /// Loads `path` (the defaults when `None`) and applies `overrides`
    /// (`KEY=VALUE`, the value read as YAML), then validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut tree = match path {
            Some(path) => read_tree(path, 0)?,
            None => Value::Mapping(Default::default()),
        };
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| ConfigError::Override(item.clone()))?;
            let value: Value =
                serde_yaml_ng::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
            set_key(&mut tree, key.trim(), value);
        }
        let origin = match path {
            Some(path) if overrides.is_empty() => path.display().to_string(),
            Some(path) => format!("{} with --set overrides", path.display()),
            None => "the default config".to_string(),
        };
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|err| {
            let key = err.path().to_string();
            ConfigError::Key {
                origin: origin.clone(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: err.into_inner().to_string(),
            }
        })?;
        config.check(&origin)?;
        Ok(config)
    }

    /// Checks what the types cannot (see [`Self::load`], which calls it),
    /// naming the key; `origin` says where the config came from. A config
    /// built in code goes through it when a run starts.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate().map_err(|(key, message)| ConfigError::Key {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        })
    }

    /// Checks what the types cannot: consistent sizes, supported options.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |key, value: f64| {
            if value > 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err((key, format!("must be positive, got {value}")))
            }
        };
        positive("OPTIM.BATCH_SIZE", self.optim.batch_size as f64)?;
        positive("OPTIM.NUM_ITERATIONS", self.optim.num_iterations as f64)?;
        positive("DATA.IMAGE_CROP_SIZE", f64::from(self.data.image_crop_size))?;
        positive("DATA.VOCAB_SIZE", self.data.vocab_size as f64)?;
        if let Some(resize) = self.data.caption_resize_size
            && resize < self.data.image_crop_size
        {
            return Err((
                "DATA.CAPTION_RESIZE_SIZE",
                format!(
                    "{resize} is below DATA.IMAGE_CROP_SIZE ({}): the centre crop would not fit",
                    self.data.image_crop_size
                ),
            ));
        }
        self.model.decoder.check()?;
        self.train.check()?;
        if !(self.optim.lr >= 0.0 && self.optim.cnn_lr >= 0.0) {
            return Err(("OPTIM.LR", "learning rates must be ≥ 0".into()));
        }
        if self.optim.warmup_steps >= self.optim.num_iterations {
            return Err((
                "OPTIM.WARMUP_STEPS",
                format!(
                    "{} must be below OPTIM.NUM_ITERATIONS ({})",
                    self.optim.warmup_steps, self.optim.num_iterations
                ),
            ));
        }
        if self.optim.lookahead.enabled && self.optim.lookahead.steps == 0 {
            return Err(("OPTIM.LOOKAHEAD.STEPS", "must be ≥ 1".into()));
        }
        if let Err(err) = regex::Regex::new(&self.optim.no_decay) {
            return Err(("OPTIM.NO_DECAY", err.to_string()));
        }
        if let Err(err) = TrainAugmentation::from_transforms(&self.data.image_transform_train, 0) {
            return Err(("DATA.IMAGE_TRANSFORM_TRAIN", err.to_string()));
        }
        if self.data.image_transform_val != VAL_TRANSFORMS {
            return Err((
                "DATA.IMAGE_TRANSFORM_VAL",
                format!("only the reference's {VAL_TRANSFORMS:?} is implemented"),
            ));
        }
        if self.data.max_caption_length < 2 {
            return Err((
                "DATA.MAX_CAPTION_LENGTH",
                "must be ≥ 2, room for [SOS] and [EOS]".into(),
            ));
        }
        if !(self.data.use_percentage > 0.0 && self.data.use_percentage <= 100.0) {
            return Err(("DATA.USE_PERCENTAGE", "must be in (0, 100]".into()));
        }
        if self.model.visual.pretrained {
            return Err((
                "MODEL.VISUAL.PRETRAINED",
                "ImageNet weights cannot be downloaded here; start from scratch (false)".into(),
            ));
        }
        let channels = self.model.visual.name.out_channels();
        if self.model.visual.feature_size != channels {
            return Err((
                "MODEL.VISUAL.FEATURE_SIZE",
                format!(
                    "{} gives {channels} channels, not {}",
                    self.model.visual.name, self.model.visual.feature_size
                ),
            ));
        }
        if self.model.name.needs_transformer()
            != matches!(self.model.textual.name, TextualHeadName::Transformer { .. })
        {
            return Err((
                "MODEL.TEXTUAL.NAME",
                format!(
                    "{} does not go with MODEL.NAME {}",
                    self.model.textual.name, self.model.name
                ),
            ));
        }
        Ok(())
    }
}
