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
use virtex_text::{PretrainingModelConfig, PretrainingTask, TextualHeadName};
use virtex_vision::ResNetArch;

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
    /// Mixed precision (true in the reference; see docs/deviations.md).
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

/// `DATA.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct DataConfig {
    /// Dataset root in COCO layout.
    pub root: PathBuf,
    /// SentencePiece model.
    pub tokenizer_model: PathBuf,
    /// Vocabulary size (81 for multilabel classification: 80 categories + pad).
    pub vocab_size: usize,
    /// `<unk>`/padding id.
    pub unk_index: u32,
    /// `[SOS]` id.
    pub sos_index: u32,
    /// `[EOS]` id.
    pub eos_index: u32,
    /// `[MASK]` id.
    pub mask_index: u32,
    /// Training crop and validation side.
    pub image_crop_size: u32,
    /// Longest caption in tokens.
    pub max_caption_length: usize,
    /// Training transforms, in the reference's order.
    pub image_transform_train: Vec<String>,
    /// Validation transforms.
    pub image_transform_val: Vec<String>,
    /// Share of the training images used.
    pub use_percentage: f64,
    /// Train on each image's first caption only.
    pub use_single_caption: bool,
    /// Masked-LM proportions.
    pub masked_lm: MaskedLmSection,
    /// `error` (default) or `skip` undecodable images (virtex-rs).
    pub on_bad_image: BadImage,
}

/// What to do with an undecodable image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadImage {
    /// Stop, naming the file.
    Error,
    /// Leave it out and report the count at the end.
    Skip,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            root: "datasets/coco".into(),
            tokenizer_model: "datasets/vocab/coco_10k.model".into(),
            vocab_size: 10000,
            unk_index: 0,
            sos_index: 1,
            eos_index: 2,
            mask_index: 3,
            image_crop_size: 224,
            max_caption_length: 30,
            image_transform_train: TRAIN_TRANSFORMS.iter().map(|s| s.to_string()).collect(),
            image_transform_val: VAL_TRANSFORMS.iter().map(|s| s.to_string()).collect(),
            use_percentage: 100.0,
            use_single_caption: false,
            masked_lm: MaskedLmSection::default(),
            on_bad_image: BadImage::Error,
        }
    }
}

/// The reference's training transforms (the only order virtex-rs implements).
pub const TRAIN_TRANSFORMS: [&str; 4] = [
    "random_resized_crop",
    "horizontal_flip",
    "color_jitter",
    "normalize",
];
/// The reference's validation transforms.
pub const VAL_TRANSFORMS: [&str; 3] = ["smallest_resize", "center_crop", "normalize"];

/// `DATA.MASKED_LM.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct MaskedLmSection {
    /// 0.15.
    pub mask_proportion: f64,
    /// 0.85.
    pub mask_probability: f64,
    /// 0.10.
    pub replace_probability: f64,
}

impl Default for MaskedLmSection {
    fn default() -> Self {
        Self {
            mask_proportion: 0.15,
            mask_probability: 0.85,
            replace_probability: 0.10,
        }
    }
}

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

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            name: DecoderName::BeamSearch,
            beam_size: 5,
            nucleus_size: 0.9,
            max_decoding_steps: 30,
        }
    }
}

/// `OPTIM.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct OptimConfig {
    /// `sgd` or `adamw`.
    pub optimizer_name: OptimizerName,
    /// SGD momentum (0.9).
    pub sgd_momentum: f64,
    /// Weight decay (1e-4).
    pub weight_decay: f64,
    /// Regex (`re.match`) over parameter names exempt from weight decay.
    pub no_decay: String,
    /// Global gradient-norm clip (10); 0 disables.
    pub clip_grad_norm: f64,
    /// `OPTIM.LOOKAHEAD.*`.
    pub lookahead: LookaheadConfig,
    /// Images per iteration, over all devices (256).
    pub batch_size: usize,
    /// Learning rate of the visual backbone (parameters named `*cnn*`), 0.2.
    pub cnn_lr: f64,
    /// Learning rate of everything else, 0.001.
    pub lr: f64,
    /// Iterations (500000).
    pub num_iterations: u64,
    /// Linear warm-up iterations (10000).
    pub warmup_steps: u64,
    /// `cosine`, `multistep`, `linear` or `none`.
    pub lr_decay_name: LrDecayName,
    /// Multistep milestones.
    pub lr_steps: Vec<u64>,
    /// Multistep factor (0.1).
    pub lr_gamma: f64,
}

/// `OPTIM.OPTIMIZER_NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// SGD with momentum.
    Sgd,
    /// AdamW.
    Adamw,
}

/// `OPTIM.LR_DECAY_NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecayName {
    /// Constant after warm-up.
    None,
    /// Cosine to zero.
    Cosine,
    /// Linear to zero.
    Linear,
    /// ×`LR_GAMMA` at each of `LR_STEPS`.
    Multistep,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer_name: OptimizerName::Sgd,
            sgd_momentum: 0.9,
            weight_decay: 1e-4,
            no_decay: ".*textual.(embedding|transformer).*(norm.*|bias)".into(),
            clip_grad_norm: 10.0,
            lookahead: LookaheadConfig::default(),
            batch_size: 256,
            cnn_lr: 0.2,
            lr: 0.001,
            num_iterations: 500_000,
            warmup_steps: 10_000,
            lr_decay_name: LrDecayName::Cosine,
            lr_steps: Vec::new(),
            lr_gamma: 0.1,
        }
    }
}

/// `OPTIM.LOOKAHEAD.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct LookaheadConfig {
    /// Whether to wrap the optimiser (true).
    #[serde(rename = "USE")]
    pub enabled: bool,
    /// Slow-weight step (0.5).
    pub alpha: f64,
    /// Fast steps per slow step, k (5).
    pub steps: u64,
}

impl Default for LookaheadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            alpha: 0.5,
            steps: 5,
        }
    }
}

/// `TRAIN.*` (virtex-rs): what the reference's script takes as flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct TrainConfig {
    /// Save a checkpoint every N iterations (2000).
    pub checkpoint_every: u64,
    /// Keep the newest K checkpoints; 0 keeps all.
    pub keep_last: usize,
    /// Validation loss every N iterations (2000).
    pub validate_every: u64,
    /// Validation batches per evaluation; 0 = the whole split.
    pub validation_batches: usize,
    /// Log metrics every N iterations (20).
    pub log_every: u64,
    /// Batches the loader prepares ahead.
    pub prefetch: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 2000,
            keep_last: 0,
            validate_every: 2000,
            validation_batches: 0,
            log_every: 20,
            prefetch: 2,
        }
    }
}

/// Reads `path` as YAML, merging in its `_BASE_` chain (paths relative to
/// the file naming them), base first.
fn read_tree(path: &Path, depth: usize) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tree: Value = serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    if tree.is_null() {
        tree = Value::Mapping(Default::default());
    }
    let base = tree.as_mapping_mut().and_then(|m| m.remove("_BASE_"));
    match base {
        Some(Value::String(base)) if depth < 8 => {
            let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
            let mut merged = read_tree(&base_path, depth + 1)?;
            merge(&mut merged, tree);
            Ok(merged)
        }
        Some(other) => Err(ConfigError::Key {
            origin: path.display().to_string(),
            key: "_BASE_".into(),
            message: format!("expected the path of a base config (at most 8 deep), got {other:?}"),
        }),
        None => Ok(tree),
    }
}

/// Overlays `over` onto `base`, recursing into mappings.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Sets dotted `key` in `tree` to `value`, creating sections as needed.
fn set_key(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    for part in key.split('.') {
        if !node.is_mapping() {
            *node = Value::Mapping(Default::default());
        }
        let map = node.as_mapping_mut().expect("made a mapping");
        node = map
            .entry(Value::String(part.to_string()))
            .or_insert(Value::Null);
    }
    *node = value;
}

impl Config {
    /// The model these settings describe (`MODEL.*` and `DATA.VOCAB_SIZE`).
    pub fn model_config(&self) -> PretrainingModelConfig {
        PretrainingModelConfig {
            task: self.model.name,
            visual: self.model.visual.name,
            textual: self.model.textual.name,
            vocab_size: self.data.vocab_size,
            dropout: self.model.textual.dropout,
        }
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
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Key {
                origin,
                key: key.to_string(),
                message,
            })?;
        Ok(config)
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
        if self.data.image_transform_train != TRAIN_TRANSFORMS {
            return Err((
                "DATA.IMAGE_TRANSFORM_TRAIN",
                format!("only the reference's {TRAIN_TRANSFORMS:?} is implemented"),
            ));
        }
        if self.data.image_transform_val != VAL_TRANSFORMS {
            return Err((
                "DATA.IMAGE_TRANSFORM_VAL",
                format!("only the reference's {VAL_TRANSFORMS:?} is implemented"),
            ));
        }
        if self.data.max_caption_length != 30 {
            return Err((
                "DATA.MAX_CAPTION_LENGTH",
                "the textual heads learn 30 positions, as the reference's".into(),
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
