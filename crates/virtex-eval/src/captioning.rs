//! Captioning a set of images with a pretrained model (the reference's
//! `scripts/eval_captioning.py` without the scoring): the downstream
//! evaluation transform (256 → 224, kept in that ratio at the model's crop
//! size), the visual backbone, then the forward decoder.
//!
//! ```no_run
//! use std::path::Path;
//! use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS};
//! use virtex_eval::captioning::{CaptionTask, ImageSet};
//! use virtex_train::config::Config;
//! use virtex_train::device::DeviceSpec;
//! use virtex_train::source::WeightsSource;
//!
//! let checkpoint = Path::new("runs/emoji_bicaptioning/checkpoint_800.safetensors");
//! let captions = DeviceSpec::Cpu.dispatch(CaptionTask {
//!     source: WeightsSource::from_arg(checkpoint, None)?, // a .pth's layout is detected
//!     config: Config::default(), // used only by `.pth` sources
//!     tokenizer: None,           // the config's DATA.TOKENIZER_MODEL
//!     decoder: None,             // the config's MODEL.DECODER
//!     beam_prefix: None,
//!     prior_penalty: None,
//!     backward_weight: None,
//!     images: ImageSet::folder(Path::new("my_photos"))?,
//!     batch: 16,
//!     attention_dir: None,
//!     on_bad_image: BadImagePolicy::Skip,
//!     max_image_pixels: DEFAULT_MAX_PIXELS,
//! })??;
//! for result in &captions.results {
//!     println!("{:?}: {}", result.image, result.caption);
//! }
//! for bad in &captions.skipped {
//!     eprintln!("skipped {bad}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use virtex_data::coco::{CaptionResult, CocoCaptions, ImageRef, split_image_dir};
use virtex_data::images::{BadImagePolicy, ImageError, image_files, normalized_batch};
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_text::decoding::DecodedCaption;
use virtex_train::config::{BeamPrefix, Config, ConfigError, DecoderName};
use virtex_train::device::BackendTask;
use virtex_train::source::WeightsSource;
use virtex_vision::AutodiffVisionBackend;

use crate::attention_maps::caption_strip;
use crate::error::{EvalError, io};

/// The images to caption, each with how its result names it.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    /// `(name in the results, file)`, in captioning order.
    pub items: Vec<(ImageRef, PathBuf)>,
}

impl ImageSet {
    /// The JPEG and PNG files of `dir`, by file name.
    pub fn folder(dir: &Path) -> Result<Self, EvalError> {
        let items = image_files(dir)
            .map_err(io(dir))?
            .into_iter()
            .map(|path| {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (ImageRef::File { file_name }, path)
            })
            .collect();
        Ok(Self { items })
    }

    /// The captioned images of a COCO captions JSON, by id; `image_dir`
    /// defaults to `ROOT/{split}2017` beside `ROOT/annotations/`.
    pub fn coco(annotations: &Path, image_dir: Option<&Path>) -> Result<Self, EvalError> {
        let dir = match image_dir {
            Some(dir) => dir.to_path_buf(),
            None => split_image_dir(annotations)
                .ok_or_else(|| EvalError::NoImageDir(annotations.to_path_buf()))?,
        };
        Ok(Self::from_dataset(&CocoCaptions::from_files(
            annotations,
            &dir,
        )?))
    }

    /// The captioned images of a loaded COCO split, by id.
    pub fn from_dataset(dataset: &CocoCaptions) -> Self {
        let items = dataset
            .images
            .iter()
            .map(|image| (ImageRef::Id { image_id: image.id }, image.path.clone()))
            .collect();
        Self { items }
    }

    /// A folder, or a COCO captions JSON (see [`ImageSet::coco`]).
    pub fn from_path(images: &Path, image_dir: Option<&Path>) -> Result<Self, EvalError> {
        if images.is_dir() {
            Self::folder(images)
        } else {
            Self::coco(images, image_dir)
        }
    }
}

/// Captions every image of [`ImageSet`] on the backend it is dispatched to.
#[derive(Clone, Debug)]
pub struct CaptionTask {
    /// The model's weights.
    pub source: WeightsSource,
    /// The model's config for sources that hold none (`.pth`, `random`).
    pub config: Config,
    /// SentencePiece model [default: the config's `DATA.TOKENIZER_MODEL`].
    pub tokenizer: Option<PathBuf>,
    /// Replaces `MODEL.DECODER.NAME`.
    pub decoder: Option<DecoderName>,
    /// Replaces `MODEL.DECODER.BEAM_PREFIX`.
    pub beam_prefix: Option<BeamPrefix>,
    /// Replaces `MODEL.DECODER.PRIOR_PENALTY` (a finite number ≥ 0).
    pub prior_penalty: Option<f64>,
    /// Replaces `MODEL.DECODER.BACKWARD_WEIGHT` (a finite number ≥ 0).
    pub backward_weight: Option<f64>,
    /// The images.
    pub images: ImageSet,
    /// Images per forward pass.
    pub batch: usize,
    /// Also write, per image, `<name>.png` (the image, then the forward
    /// decoder's cross-attention for each word) and `<name>.txt` (the words).
    pub attention_dir: Option<PathBuf>,
    /// An image that cannot be read stops the task (`Error`) or is left
    /// out and listed in [`Captions::skipped`] (`Skip`).
    pub on_bad_image: BadImagePolicy,
    /// Images with more pixels are refused (decompression bombs).
    pub max_image_pixels: u64,
}

/// What a [`CaptionTask`] made.
#[derive(Clone, Debug, Default)]
pub struct Captions {
    /// One caption per readable image, in [`ImageSet`] order.
    pub results: Vec<CaptionResult>,
    /// The images left out under [`BadImagePolicy::Skip`], each with why.
    pub skipped: Vec<ImageError>,
}

impl BackendTask for CaptionTask {
    type Output = Result<Captions, EvalError>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let (model, mut config) = self
            .source
            .model::<B::InnerBackend>(&self.config, &device)?;
        if let Some(prefix) = self.beam_prefix {
            config.model.decoder.beam_prefix = prefix;
        }
        if let Some(penalty) = self.prior_penalty {
            config.model.decoder.prior_penalty = penalty;
        }
        if let Some(weight) = self.backward_weight {
            config.model.decoder.backward_weight = weight;
        }
        config
            .model
            .decoder
            .check()
            .map_err(|(key, message)| ConfigError::Key {
                origin: "CaptionTask".into(),
                key: key.into(),
                message,
            })?;
        let head = model
            .transformer_head()
            .ok_or_else(|| EvalError::NoDecoder {
                source_name: self.source.to_string(),
                task: config.model.name,
            })?;
        if self.backward_weight.is_some_and(|w| w > 0.0) && model.backward_decoder().is_none() {
            return Err(ConfigError::Key {
                origin: "CaptionTask".into(),
                key: "MODEL.DECODER.BACKWARD_WEIGHT".into(),
                message: format!(
                    "needs a backward decoder, which a {} model has not (bicaptioning has)",
                    config.model.name
                ),
            }
            .into());
        }
        let tokenizer_path = self
            .tokenizer
            .clone()
            .unwrap_or(config.data.tokenizer_model.clone());
        let tokenizer = SentencePieceTokenizer::from_file(&tokenizer_path).map_err(|source| {
            EvalError::Tokenizer {
                path: tokenizer_path.clone(),
                source,
            }
        })?;
        config.check_tokenizer(&tokenizer, &tokenizer_path)?;
        let decoder = config.caption_decoder(self.decoder);
        let transform = config
            .data
            .caption_transform()
            .with_max_pixels(self.max_image_pixels);
        let side = transform.crop as usize;
        let mut rng = StdRng::seed_from_u64(config.random_seed);
        if let Some(dir) = &self.attention_dir {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut results = Vec::with_capacity(self.images.items.len());
        let mut skipped = Vec::new();
        for chunk in self.images.items.chunks(self.batch.max(1)) {
            let paths: Vec<PathBuf> = chunk.iter().map(|(_, path)| path.clone()).collect();
            // Each image is decoded once: its crop feeds the model and, with
            // an attention directory, the heat maps.
            let read = transform.load_readable_crops(&paths, self.on_bad_image)?;
            skipped.extend(read.skipped);
            let crops = read.crops;
            let kept = read.positions.iter().map(|&i| &chunk[i]);
            if crops.is_empty() {
                continue;
            }
            let images = Tensor::<B::InnerBackend, 4>::from_data(
                TensorData::new(normalized_batch(&crops), [crops.len(), 3, side, side]),
                &device,
            );
            let captions = decoder.decode_bicaptioning(
                head,
                model.backward_decoder(),
                model.visual.forward(images),
                &mut rng,
            );
            for (((image, path), caption), crop) in kept.zip(captions).zip(&crops) {
                if let Some(dir) = &self.attention_dir {
                    write_attention(dir, image, path, crop, &caption, &tokenizer)?;
                }
                results.push(CaptionResult {
                    image: image.clone(),
                    caption: tokenizer.decode(&caption.tokens),
                });
            }
        }
        Ok(Captions { results, skipped })
    }
}

/// Writes `<name>.png` (the image, then one attention heat map per word,
/// panels at least 224 px) and `<name>.txt` (the words, one per panel).
fn write_attention(
    dir: &Path,
    image: &ImageRef,
    path: &Path,
    crop: &RgbImage,
    caption: &DecodedCaption,
    tokenizer: &SentencePieceTokenizer,
) -> Result<(), EvalError> {
    let name = match image {
        ImageRef::Id { image_id } => image_id.to_string(),
        ImageRef::File { .. } => path
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned()),
    };
    let side = crop.width().max(224);
    let shown = image::imageops::resize(crop, side, side, image::imageops::FilterType::Triangle);
    let png = dir.join(format!("{name}.png"));
    caption_strip(&shown, &caption.attention)
        .save(&png)
        .map_err(|e| EvalError::Io {
            path: png.clone(),
            source: std::io::Error::other(e),
        })?;
    let words: String = caption
        .tokens
        .iter()
        .map(|&t| format!("{}\n", tokenizer.id_to_piece(t).unwrap_or("<unk>")))
        .collect();
    let txt = dir.join(format!("{name}.txt"));
    virtex_data::atomic::write_bytes(&txt, words.as_bytes()).map_err(io(&txt))
}
