//! `DATA.*`: the dataset, the vocabulary's special ids, image and caption
//! preprocessing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use virtex_data::images::{BadImagePolicy, EvalTransform};
use virtex_data::tasks::MaskedLmConfig;

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
    /// Side the shorter edge is resized to before the centre crop of
    /// `IMAGE_CROP_SIZE` when captioning (`caption`, `evaluate captioning`;
    /// virtex-rs). Unset: the reference's `eval_captioning.py`, 256 for a
    /// 224 crop (`crop × 256/224`), which suits a model trained on random
    /// resized crops. A model trained on whole images (no
    /// `random_resized_crop`) should see whole images: set it to the crop.
    pub caption_resize_size: Option<u32>,
    /// Longest caption in tokens.
    pub max_caption_length: usize,
    /// Train from WebDataset tar shards instead of `ROOT`'s train split
    /// (virtex-rs): a brace pattern such as `shards/train-{000000..000099}.tar`;
    /// validation still reads `ROOT`'s val split.
    pub shards: Option<String>,
    /// Samples a shard stream holds for shuffling (virtex-rs).
    pub shuffle_buffer: usize,
    /// Training transforms, in the reference's order.
    pub image_transform_train: Vec<String>,
    /// Validation transforms.
    pub image_transform_val: Vec<String>,
    /// Share of the training images used.
    pub use_percentage: f64,
    /// Train on each image's first caption only.
    pub use_single_caption: bool,
    /// Masked-LM proportions (`DATA.MASKED_LM.*`).
    pub masked_lm: MaskedLmConfig,
    /// `error` (default) or `skip` undecodable images (virtex-rs): skipped
    /// ones are left out and counted at the end.
    pub on_bad_image: BadImagePolicy,
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
            caption_resize_size: None,
            max_caption_length: virtex_data::caption::MAX_CAPTION_LENGTH,
            shards: None,
            shuffle_buffer: virtex_data::shards::DEFAULT_SHUFFLE_BUFFER,
            image_transform_train: TRAIN_TRANSFORMS.iter().map(|s| s.to_string()).collect(),
            image_transform_val: VAL_TRANSFORMS.iter().map(|s| s.to_string()).collect(),
            use_percentage: 100.0,
            use_single_caption: false,
            masked_lm: MaskedLmConfig::default(),
            on_bad_image: BadImagePolicy::Error,
        }
    }
}

impl DataConfig {
    /// How `caption` and `evaluate captioning` prepare an image: resized
    /// to `CAPTION_RESIZE_SIZE` (or the reference's 256/224 of the crop),
    /// then centre-cropped to `IMAGE_CROP_SIZE`.
    pub fn caption_transform(&self) -> EvalTransform {
        match self.caption_resize_size {
            Some(resize) => EvalTransform {
                resize,
                ..EvalTransform::downstream(self.image_crop_size)
            },
            None => EvalTransform::downstream(self.image_crop_size),
        }
    }
}

/// The reference's training transforms; `TrainAugmentation::from_transforms`
/// also takes a list with some of them left out.
pub const TRAIN_TRANSFORMS: [&str; 4] = [
    "random_resized_crop",
    "horizontal_flip",
    "color_jitter",
    "normalize",
];
/// The reference's validation transforms.
pub const VAL_TRANSFORMS: [&str; 3] = ["smallest_resize", "center_crop", "normalize"];
