//! The bundled emoji dataset (feature `emoji`), as `cargo xtask prepare-data
//! emoji --from emoji-datasource-twitter-16.0.0.tgz` builds it: converts the npm package `emoji-datasource-twitter` (Twemoji graphics,
//! CC-BY 4.0) into a small real image–caption dataset in the COCO captions
//! layout, the bundled default of `cargo xtask pretrain`.
//!
//! Output, under `--output` (default `data/emoji`):
//! - `{train2017,val2017,test2017}/<code>.jpg`: each 64 px PNG composited on
//!   white, stored as JPEG at its native size.
//! - `annotations/captions_{train,val,test}2017.json`: COCO captions format,
//!   several captions per image built from the emoji's name and short names.
//! - `annotations/categories_{train,val,test}2017.json`: the classification
//!   view (category and subcategory of every image) for linear probes.
//! - `annotations/instances_{train,val,test}2017.json`: the same labels in COCO
//!   instances format (one instance per image, its subcategory as the category
//!   and the category as COCO's `supercategory`), for multilabel pretraining.
//! - `LICENSE-twemoji.md`: attribution and licence of the graphics.
//!
//! The split is fixed ([`Split::of`]): an emoji and all its skin-tone variants
//! are held out when the emoji's `sort_order` is a multiple of 10, otherwise
//! they go to `train`; of the held-out emoji, those with `sort_order / 10` even
//! go to `val` (to tune on), the odd ones to `test` (to report on).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use serde_json::json;

mod names;
mod subcategory;

pub use names::{EmojiEntry, EmojiImage, SkinVariation, Split, emoji_images};
pub use subcategory::caption_subcategory;

/// The npm package and version the bundled dataset is made from.
pub const EMOJI_PACKAGE: &str = "emoji-datasource-twitter@16.0.0";
/// JPEG quality of the stored images (keeps the whole dataset under 10 MB).
const JPEG_QUALITY: u8 = 85;
/// Directory of the 64 px images inside the package.
const IMAGE_DIR: &str = "package/img/twitter/64/";

/// A package that cannot be converted, or an output that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tarball is not the package, or part of it is malformed.
    #[error("{path}: {message}")]
    Package {
        /// The tarball.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An emoji entry the dataset cannot describe.
    #[error("{0}")]
    Entry(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn package(path: &Path, message: impl std::fmt::Display) -> PrepareError {
    PrepareError::Package {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// What [`prepare_emoji`] wrote.
#[derive(Debug)]
pub struct Summary {
    /// Images per split, in [`Split::ALL`]'s order (train, val, test).
    pub images: [usize; 3],
    /// Captions per split, in [`Split::ALL`]'s order (train, val, test).
    pub captions: [usize; 3],
    /// Bytes of JPEG written.
    pub bytes: u64,
    /// Where.
    pub output: PathBuf,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [train, val, test] = self.images;
        let [train_captions, val_captions, test_captions] = self.captions;
        write!(
            f,
            "wrote {train} train / {val} val / {test} test images \
             ({train_captions} / {val_captions} / {test_captions} captions, \
             {:.1} MB of JPEG) to {}",
            self.bytes as f64 / 1e6,
            self.output.display()
        )
    }
}

/// The parts of the package the dataset is made from.
struct Package {
    /// `package/emoji.json`.
    entries: Vec<EmojiEntry>,
    /// PNG bytes of the 64 px images, by file name.
    pngs: HashMap<String, Vec<u8>>,
}

/// Reads `emoji.json` and the 64 px PNGs from the package tarball.
fn read_package(tgz: &Path) -> Result<Package, PrepareError> {
    let file = File::open(tgz).map_err(io(tgz))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut entries = None;
    let mut pngs = HashMap::new();
    let not_tgz = |e: std::io::Error| package(tgz, format!("not a readable .tgz: {e}"));
    for item in archive.entries().map_err(not_tgz)? {
        let mut item = item.map_err(not_tgz)?;
        let path = item.path().map_err(not_tgz)?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        if path == "package/emoji.json" {
            item.read_to_end(&mut bytes).map_err(not_tgz)?;
            let parsed: Vec<EmojiEntry> = serde_json::from_slice(&bytes)
                .map_err(|e| package(tgz, format!("package/emoji.json is malformed: {e}")))?;
            entries = Some(parsed);
        } else if let Some(name) = path.strip_prefix(IMAGE_DIR) {
            item.read_to_end(&mut bytes).map_err(not_tgz)?;
            pngs.insert(name.to_string(), bytes);
        }
    }
    let entries = entries.ok_or_else(|| {
        package(
            tgz,
            "no package/emoji.json (is it emoji-datasource-twitter?)",
        )
    })?;
    Ok(Package { entries, pngs })
}

/// An RGBA PNG composited on white.
fn composite_on_white(png: &[u8]) -> Result<RgbImage, image::ImageError> {
    let rgba = image::load_from_memory_with_format(png, image::ImageFormat::Png)?.to_rgba8();
    Ok(RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let alpha = f32::from(a) / 255.0;
        let blend = |c: u8| (f32::from(c) * alpha + 255.0 * (1.0 - alpha)).round() as u8;
        Rgb([blend(r), blend(g), blend(b)])
    }))
}

/// Converts the package at `tgz` into the dataset under `output`.
pub fn prepare_emoji(tgz: &Path, output: &Path) -> Result<Summary, PrepareError> {
    let Package { entries, pngs } = read_package(tgz)?;
    let images = emoji_images(&entries)?;
    if images.is_empty() {
        return Err(package(tgz, "no emoji with Twitter images"));
    }

    let categories = index_of(images.iter().map(|i| i.category.as_str()));
    let subcategories = index_of(images.iter().map(|i| i.subcategory.as_str()));

    let mut summary = Summary {
        images: [0; 3],
        captions: [0; 3],
        bytes: 0,
        output: output.to_path_buf(),
    };
    let annotations_dir = output.join("annotations");
    std::fs::create_dir_all(&annotations_dir).map_err(io(&annotations_dir))?;
    for (slot, split) in Split::ALL.into_iter().enumerate() {
        let year_split = format!("{}2017", split.name());
        let dir = output.join(&year_split);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let (mut coco_images, mut annotations, mut labels, mut instances) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (index, image) in images.iter().enumerate().filter(|(_, i)| i.split == split) {
            let id = index + 1;
            let png = pngs.get(&image.source).ok_or_else(|| {
                package(
                    tgz,
                    format!(
                        "emoji.json names {IMAGE_DIR}{} but the package lacks it",
                        image.source
                    ),
                )
            })?;
            let rgb = composite_on_white(png)
                .map_err(|e| package(tgz, format!("decoding {IMAGE_DIR}{}: {e}", image.source)))?;
            let file_name = image.source.replace(".png", ".jpg");
            let path = dir.join(&file_name);
            let mut writer = BufWriter::new(File::create(&path).map_err(io(&path))?);
            JpegEncoder::new_with_quality(&mut writer, JPEG_QUALITY)
                .encode_image(&rgb)
                .map_err(|e| io(&path)(std::io::Error::other(e)))?;
            drop(writer);
            summary.bytes += std::fs::metadata(&path).map_err(io(&path))?.len();

            coco_images.push(json!({
                "id": id, "file_name": file_name, "width": rgb.width(), "height": rgb.height(), "license": 1,
            }));
            for caption in &image.captions {
                annotations.push(
                    json!({ "id": annotations.len() + 1, "image_id": id, "caption": caption }),
                );
            }
            labels.push(json!({
                "image_id": id,
                "category_id": categories[image.category.as_str()],
                "subcategory_id": subcategories[image.subcategory.as_str()],
            }));
            instances.push(json!({
                "id": instances.len() + 1,
                "image_id": id,
                "category_id": subcategories[image.subcategory.as_str()],
                "iscrowd": 0,
            }));
        }
        summary.images[slot] = coco_images.len();
        summary.captions[slot] = annotations.len();
        write_json(
            &output.join(format!("annotations/captions_{year_split}.json")),
            &json!({
                "info": {
                    "description": "Twemoji 64 px images with captions from emoji names (emoji-datasource-twitter 16.0.0)",
                    "version": "1.0",
                },
                "licenses": [{ "id": 1, "name": "CC-BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/" }],
                "images": coco_images,
                "annotations": annotations,
            }),
        )?;
        write_json(
            &output.join(format!("annotations/categories_{year_split}.json")),
            &json!({
                "categories": named(&categories),
                "subcategories": named(&subcategories),
                "labels": labels,
            }),
        )?;
        write_json(
            &output.join(format!("annotations/instances_{year_split}.json")),
            &json!({
                "images": coco_images,
                "categories": supercategorised(&subcategories, &images),
                "annotations": instances,
            }),
        )?;
    }
    let license = output.join("LICENSE-twemoji.md");
    std::fs::write(&license, TWEMOJI_LICENSE).map_err(io(&license))?;
    Ok(summary)
}

/// Names → 1-based ids in first-seen order (0 stays free for padding).
fn index_of<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut ids = BTreeMap::new();
    for name in names {
        let next = ids.len() + 1;
        ids.entry(name).or_insert(next);
    }
    ids
}

fn named(ids: &BTreeMap<&str, usize>) -> Vec<serde_json::Value> {
    let mut list: Vec<_> = ids.iter().map(|(n, id)| (*id, *n)).collect();
    list.sort();
    list.into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect()
}

/// Subcategories as COCO categories, each with its category as `supercategory`.
fn supercategorised(
    subcategories: &BTreeMap<&str, usize>,
    images: &[EmojiImage],
) -> Vec<serde_json::Value> {
    let parent: HashMap<&str, &str> = images
        .iter()
        .map(|i| (i.subcategory.as_str(), i.category.as_str()))
        .collect();
    named(subcategories)
        .into_iter()
        .map(|mut entry| {
            let name = entry["name"].as_str().expect("named() writes names");
            entry["supercategory"] = json!(parent[name]);
            entry
        })
        .collect()
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), PrepareError> {
    let bytes = serde_json::to_vec(value).expect("JSON values serialise");
    std::fs::write(path, bytes).map_err(io(path))
}

const TWEMOJI_LICENSE: &str = "\
# Twemoji graphics: attribution and licence

The images in this directory are Twemoji graphics, taken from the npm package
`emoji-datasource-twitter` 16.0.0 (https://github.com/iamcal/emoji-data) and
converted by `cargo xtask prepare-data emoji` (composited on white, stored as
JPEG at 64 px). Captions are built from the emoji names in that package.

Twemoji graphics: Copyright 2019 Twitter, Inc and other contributors;
Copyright 2024 jdecked and other contributors (https://github.com/jdecked/twemoji).
Licensed under the Creative Commons Attribution 4.0 International licence
(CC-BY 4.0), https://creativecommons.org/licenses/by/4.0/ : you may share and
adapt them for any purpose, provided you give appropriate credit, link to the
licence, and indicate if changes were made. Changes made here: alpha
composited on a white background, re-encoded as JPEG.

The emoji names and metadata (emoji-data) are MIT licensed,
Copyright (c) 2013 Cal Henderson.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_a_real_slice_of_the_package() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::env::temp_dir().join(format!("virtex-emoji-{}", std::process::id()));
        let summary = prepare_emoji(&root.join("data/fixtures/emoji-mini.tgz"), &out).unwrap();
        // hash, flag-eg, santa + 5 skin tones; "two" (sort_order 1560) for
        // validation, "vs" (1590) for test.
        assert_eq!(summary.images, [8, 1, 1]);
        assert_eq!(summary.captions[1..], [4, 4]);
        assert!(
            summary
                .to_string()
                .contains("8 train / 1 val / 1 test images")
        );

        let captions: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("annotations/captions_train2017.json")).unwrap(),
        )
        .unwrap();
        let images = captions["images"].as_array().unwrap();
        assert_eq!(images.len(), 8);
        assert!(captions["annotations"].as_array().unwrap().iter().any(|a| {
            a["caption"] == "an emoji of father christmas with medium-dark skin tone"
        }));
        for image in images {
            let path = out
                .join("train2017")
                .join(image["file_name"].as_str().unwrap());
            let decoded = image::open(&path).unwrap().to_rgb8();
            assert_eq!(decoded.dimensions(), (64, 64));
            // Composited on white: the corners of an emoji are background.
            let corner = decoded.get_pixel(0, 0).0;
            assert!(
                corner.iter().all(|&c| c > 240),
                "{path:?} corner {corner:?}"
            );
        }
        // Each held-out split: its one emoji, under the id of its position in
        // sort_order order (hash 1556, two 1560, vs 1590, flag-eg 1719; santa 372
        // and its five tones first).
        for (split, name, id) in [("val", "keycap 2", 8), ("test", "squared vs", 9)] {
            let captions = crate::coco::CocoCaptions::load(&out, split).unwrap();
            assert_eq!(captions.images.len(), 1, "{split}");
            assert_eq!(captions.images[0].id, id, "{split}");
            assert_eq!(captions.images[0].captions[1], name, "{split}");
            let labels: serde_json::Value = serde_json::from_slice(
                &std::fs::read(out.join(format!("annotations/categories_{split}2017.json")))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(labels["labels"].as_array().unwrap().len(), 1, "{split}");
            assert_eq!(labels["labels"][0]["image_id"], id, "{split}");
            let instances = crate::instances::CocoInstances::load(&out, split).unwrap();
            assert_eq!(instances.labels.len(), 1, "{split}");
            // Subcategory ids are 1..=K already, so the reference's remapping keeps them.
            let subcategory = labels["labels"][0]["subcategory_id"].as_u64().unwrap() as u32;
            assert_eq!(instances.labels[&id], [subcategory], "{split}");
        }
        assert!(out.join("LICENSE-twemoji.md").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_file_that_is_not_the_package_is_named_in_the_error() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let not_tgz = root.join("data/fixtures/resnet18_state_dict_shapes.txt");
        let err =
            prepare_emoji(&not_tgz, &std::env::temp_dir().join("virtex-emoji-bad")).unwrap_err();
        assert!(
            format!("{err:#}").contains("resnet18_state_dict_shapes.txt"),
            "{err:#}"
        );
    }
}
