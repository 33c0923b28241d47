//! `cargo xtask caption`: captions a directory of images or a COCO-format
//! split with a pretrained model (virtex-rs checkpoint or official `.pth`),
//! as the reference's `scripts/eval_captioning.py` (256 resize → 224 crop,
//! scaled to the model's crop size).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde_json::json;
use virtex_data::coco::CocoCaptions;
use virtex_data::images::{load_rgb, resize_and_center_crop, to_normalized_chw};
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_eval::attention_maps::caption_strip;
use virtex_text::PretrainingModel;
use virtex_text::checkpoint::{CheckpointParts, load_virtex_checkpoint};
use virtex_text::decoding::{CaptionDecoder, DecodedCaption, DecodingStrategy};
use virtex_train::checkpoint::{load_model, read_meta};
use virtex_train::config::{Config, DecoderName};
use virtex_train::device::BackendTask;

use crate::flags::{Caption, DecoderChoice};

/// One image to caption: how the output names it, and its file.
#[derive(Clone, Debug)]
struct Item {
    key: serde_json::Value,
    path: PathBuf,
}

/// The JPEG and PNG files of `dir`, sorted by name.
pub(crate) fn image_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Images of a directory (sorted, by file name) or of a COCO JSON (by id).
fn items(images: &Path, image_dir: Option<&Path>) -> anyhow::Result<Vec<Item>> {
    if images.is_dir() {
        let paths = image_files(images)?;
        return Ok(paths
            .into_iter()
            .map(|path| Item {
                key: json!({ "file_name": path.file_name().map(|n| n.to_string_lossy()) }),
                path,
            })
            .collect());
    }
    let dir = match image_dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            // ROOT/annotations/captions_val2017.json → ROOT/val2017
            let split = images
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("captions_"))
                .with_context(|| {
                    format!(
                        "{}: name the image directory with --image-dir",
                        images.display()
                    )
                })?;
            let root = images
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            root.join(split)
        }
    };
    let dataset = CocoCaptions::from_files(images, &dir)?;
    Ok(dataset
        .images
        .into_iter()
        .map(|image| Item {
            key: json!({ "image_id": image.id }),
            path: image.path,
        })
        .collect())
}

/// The model, its config and the tokenizer, from either checkpoint kind.
fn load<B: Backend>(
    cmd: &Caption,
    device: &B::Device,
) -> anyhow::Result<(PretrainingModel<B>, Config)> {
    let native = cmd
        .checkpoint
        .extension()
        .is_some_and(|e| e == "safetensors");
    let config = if native {
        read_meta(&cmd.checkpoint)?.config
    } else {
        Config::load(Some(&cmd.config), &[])?
    };
    let model = config.model_config().init::<B>(device)?;
    let model = if native {
        load_model(&cmd.checkpoint, model)?.0
    } else {
        load_virtex_checkpoint(model, &cmd.checkpoint, CheckpointParts::Full)?
    };
    Ok((model, config))
}

/// Writes `<name>.png` (the image, then one attention heat map per word,
/// panels at least 224 px) and `<name>.txt` (the words, one per panel).
fn write_attention(
    dir: &Path,
    item: &Item,
    image: &RgbImage,
    caption: &DecodedCaption,
    tokenizer: &SentencePieceTokenizer,
) -> anyhow::Result<()> {
    let name = match (item.key["image_id"].as_u64(), item.path.file_stem()) {
        (Some(id), _) => id.to_string(),
        (None, Some(stem)) => stem.to_string_lossy().into_owned(),
        (None, None) => "image".to_string(),
    };
    let side = image.width().max(224);
    let shown = image::imageops::resize(image, side, side, image::imageops::FilterType::Triangle);
    let strip = caption_strip(&shown, &caption.attention);
    let png = dir.join(format!("{name}.png"));
    strip
        .save(&png)
        .with_context(|| format!("writing {}", png.display()))?;
    let words: String = caption
        .tokens
        .iter()
        .map(|&t| format!("{}\n", tokenizer.id_to_piece(t).unwrap_or("<unk>")))
        .collect();
    crate::write_atomically(&dir.join(format!("{name}.txt")), words.as_bytes())
}

/// Captions every item; returns `[{key…, "caption"}]`.
pub(crate) struct Captioning {
    pub(crate) cmd: Caption,
}

impl BackendTask for Captioning {
    type Output = anyhow::Result<Vec<serde_json::Value>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let cmd = self.cmd;
        let (model, config) = load::<B::InnerBackend>(&cmd, &device)?;
        let Some(head) = model.transformer_head() else {
            bail!(
                "{} is a {} model, which has no caption decoder",
                cmd.checkpoint.display(),
                config.model.name
            );
        };
        let tokenizer_path = cmd
            .tokenizer
            .clone()
            .unwrap_or(config.data.tokenizer_model.clone());
        let tokenizer = SentencePieceTokenizer::from_file(&tokenizer_path)
            .with_context(|| format!("tokenizer {}", tokenizer_path.display()))?;
        let strategy = match cmd.decoder.unwrap_or(match config.model.decoder.name {
            DecoderName::BeamSearch => DecoderChoice::Beam,
            DecoderName::NucleusSampling => DecoderChoice::Nucleus,
            DecoderName::Greedy => DecoderChoice::Greedy,
        }) {
            DecoderChoice::Beam => DecodingStrategy::Beam {
                beam_size: config.model.decoder.beam_size,
                per_node_beam_size: 2,
            },
            DecoderChoice::Nucleus => DecodingStrategy::Nucleus {
                top_p: config.model.decoder.nucleus_size,
            },
            DecoderChoice::Greedy => DecodingStrategy::Greedy,
        };
        let decoder = CaptionDecoder {
            strategy,
            max_steps: config.model.decoder.max_decoding_steps,
            sos_id: config.data.sos_index,
            eos_id: config.data.eos_index,
        };
        // The reference captions at 256 → 224; keep that ratio at the model's size.
        let crop = config.data.image_crop_size;
        let shorter = (crop * 256).div_ceil(224);
        let items = items(&cmd.images, cmd.image_dir.as_deref())?;
        let mut rng = StdRng::seed_from_u64(config.random_seed);
        let mut out = Vec::with_capacity(items.len());
        if let Some(dir) = &cmd.attention_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for chunk in items.chunks(cmd.batch.max(1)) {
            let crops: Vec<RgbImage> = chunk
                .par_iter()
                .map(|item| {
                    Ok(resize_and_center_crop(
                        &load_rgb(&item.path)?,
                        shorter,
                        crop,
                    ))
                })
                .collect::<Result<_, virtex_data::images::ImageError>>()?;
            let pixels: Vec<f32> = crops.iter().flat_map(to_normalized_chw).collect();
            let size = crop as usize;
            let images = Tensor::<B::InnerBackend, 4>::from_data(
                TensorData::new(pixels, [chunk.len(), 3, size, size]),
                &device,
            );
            let captions = decoder.decode(head, model.visual.forward(images), &mut rng);
            for ((item, caption), image) in chunk.iter().zip(captions).zip(&crops) {
                let mut entry = item.key.clone();
                entry["caption"] = json!(tokenizer.decode(&caption.tokens));
                if let Some(dir) = &cmd.attention_dir {
                    write_attention(dir, item, image, &caption, &tokenizer)?;
                }
                out.push(entry);
            }
        }
        Ok(out)
    }
}

impl Caption {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let output = self.output.clone();
        let device = self.device;
        let captions = device.dispatch(Captioning { cmd: self })??;
        crate::write_atomically(&output, &serde_json::to_vec_pretty(&captions)?)?;
        println!("wrote {} captions to {}", captions.len(), output.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtex_train::device::CpuBackend;
    use virtex_train::trainer::Pretraining;

    #[test]
    fn a_trained_checkpoint_captions_images_and_exports_its_backbone() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = std::env::temp_dir().join(format!("virtex-caption-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&output);
        let sets: Vec<String> = vec![
            format!("DATA.ROOT={}", root.join("data/emoji").display()),
            format!(
                "DATA.TOKENIZER_MODEL={}",
                root.join("data/vocab/emoji_1k.model").display()
            ),
            "OPTIM.NUM_ITERATIONS=2".into(),
            "TRAIN.VALIDATE_EVERY=0".into(),
        ];
        let config = Config::load(
            Some(&root.join("data/configs/tests/emoji_tiny.yaml")),
            &sets,
        )
        .unwrap();
        Pretraining {
            config,
            output: output.clone(),
            resume: false,
        }
        .run::<CpuBackend>(Default::default())
        .unwrap();

        // A three-image COCO split and a two-image directory.
        let split = output.join("annotations/captions_tiny2017.json");
        std::fs::create_dir_all(split.parent().unwrap()).unwrap();
        std::fs::create_dir_all(output.join("tiny2017")).unwrap();
        let val = CocoCaptions::load(&root.join("data/emoji"), "val").unwrap();
        let mut listed = Vec::new();
        for image in &val.images[..3] {
            let name = image
                .path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            std::fs::copy(&image.path, output.join("tiny2017").join(&name)).unwrap();
            listed.push(json!({"id": image.id, "file_name": name}));
        }
        let annotations: Vec<_> = listed
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"id": i + 1, "image_id": image["id"], "caption": "an emoji"}))
            .collect();
        std::fs::write(
            &split,
            json!({"images": listed, "annotations": annotations}).to_string(),
        )
        .unwrap();

        let cmd = |images: PathBuf, decoder| Caption {
            checkpoint: output.join("checkpoint_2.safetensors"),
            config: PathBuf::new(),
            tokenizer: None,
            images,
            image_dir: None,
            decoder: Some(decoder),
            batch: 2,
            output: PathBuf::new(),
            attention_dir: None,
            device: "cpu".parse().unwrap(),
        };
        let coco = Captioning {
            cmd: cmd(split, DecoderChoice::Beam),
        }
        .run::<CpuBackend>(Default::default())
        .unwrap();
        let ids: Vec<u64> = coco
            .iter()
            .map(|c| c["image_id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ids,
            val.images[..3].iter().map(|i| i.id).collect::<Vec<_>>()
        );
        assert!(coco.iter().all(|c| c["caption"].is_string()));
        let attention = output.join("attention");
        let dir = Captioning {
            cmd: Caption {
                attention_dir: Some(attention.clone()),
                ..cmd(output.join("tiny2017"), DecoderChoice::Greedy)
            },
        }
        .run::<CpuBackend>(Default::default())
        .unwrap();
        assert_eq!(dir.len(), 3);
        assert!(dir[0]["file_name"].as_str().unwrap().ends_with(".jpg"));
        // One attention strip per image: the image, then a panel per word.
        for path in image_files(&output.join("tiny2017")).unwrap() {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let words = std::fs::read_to_string(attention.join(format!("{stem}.txt"))).unwrap();
            let strip = image::open(attention.join(format!("{stem}.png"))).unwrap();
            assert_eq!(strip.height(), 224);
            assert_eq!(strip.width(), 224 * (words.lines().count() as u32 + 1));
        }

        // `evaluate features` reads the same checkpoint's backbone.
        let backbone = crate::flags::BackboneSource {
            checkpoint: output.join("checkpoint_2.safetensors"),
            layout: crate::flags::WeightsLayout::Virtex,
            arch: "resnet50".parse().unwrap(),
        };
        let images = image_files(&output.join("tiny2017")).unwrap();
        let features = crate::evaluate::FeatureTask {
            backbone: &backbone,
            images: &images,
            size: 32,
            batch: 2,
            l2_normalize: true,
        }
        .run::<CpuBackend>(Default::default())
        .unwrap();
        assert_eq!(
            (features.rows, features.dim),
            (3, 512),
            "ResNet-18 from the checkpoint's config"
        );

        // `evaluate detectron2-export` writes the same backbone under
        // Detectron2's names.
        let pth = output.join("detectron2.pth");
        crate::flags::Detectron2Export {
            backbone,
            output: pth.clone(),
        }
        .run()
        .unwrap();
        let reader = burn_store::pytorch::PytorchReader::with_top_level_key(&pth, "model").unwrap();
        let keys = reader.keys();
        assert_eq!(keys.len(), 120, "ResNet-18 without fc: {keys:?}");
        assert!(keys.contains(&"res5.1.conv2.norm.running_var".to_string()));
        std::fs::remove_dir_all(output).unwrap();
    }
}
