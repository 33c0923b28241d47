//! COCO-sized photographs for `bench data --images photos`: real photos
//! (scikit-image's sample photographs by default, or any folder of them)
//! re-encoded as 640×480 JPEGs, COCO's typical size and format, and written
//! as a COCO-format split, so the data pipeline is timed on what a COCO
//! pretraining decodes rather than on 64 px icons.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use image::ImageFormat;
use image::imageops::FilterType;
use serde_json::json;
use virtex_data::coco::CocoCaptions;

/// Width and height of a COCO-sized image (most of COCO's are 640 × 480).
pub const COCO_SIZE: (u32, u32) = (640, 480);

/// The photographs among scikit-image's sample images (`skimage/data`):
/// colour photos and grey-scale ones, as COCO holds a few; its synthetic
/// images, textures and logos are left out.
pub const SKIMAGE_PHOTOS: [&str; 12] = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
];

/// scikit-image's sample photographs, found through `python3`.
pub fn skimage_photos() -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), 'data'))",
        ])
        .output()
        .context("running python3 to find scikit-image")?;
    if !output.status.success() {
        bail!(
            "scikit-image is not importable by python3 (`pip install scikit-image`, \
             or pass --photo-dir DIR): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    Ok(SKIMAGE_PHOTOS.iter().map(|name| dir.join(name)).collect())
}

/// The JPEG and PNG files of `dir`, by name.
pub fn photos_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading --photo-dir {}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            ImageFormat::from_path(path)
                .is_ok_and(|format| matches!(format, ImageFormat::Jpeg | ImageFormat::Png))
        })
        .collect();
    photos.sort();
    if photos.is_empty() {
        bail!("--photo-dir {}: no .jpg or .png files", dir.display());
    }
    Ok(photos)
}

/// Writes `count` images, cycling through `sources`, each scaled and
/// centre-cropped to [`COCO_SIZE`] and saved as a JPEG, into
/// `root/train2017`, with `root/annotations/captions_train2017.json`
/// (one caption per image, naming its source), and loads the split.
pub fn write_coco_sized_split(
    sources: &[PathBuf],
    root: &Path,
    count: usize,
) -> anyhow::Result<CocoCaptions> {
    let (width, height) = COCO_SIZE;
    let images_dir = root.join("train2017");
    std::fs::create_dir_all(&images_dir)
        .with_context(|| format!("creating {}", images_dir.display()))?;
    std::fs::create_dir_all(root.join("annotations"))?;
    let mut encoded = Vec::with_capacity(sources.len());
    for source in sources {
        let photo =
            image::open(source).with_context(|| format!("decoding {}", source.display()))?;
        let photo = photo
            .resize_to_fill(width, height, FilterType::Triangle)
            .into_rgb8();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&photo)
            .with_context(|| format!("encoding {}", source.display()))?;
        let name = source
            .file_stem()
            .map_or_else(|| "photo".into(), |s| s.to_string_lossy().replace('_', " "));
        encoded.push((jpeg, name));
    }
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (index, (jpeg, name)) in encoded.iter().cycle().take(count).enumerate() {
        let id = index as u64 + 1;
        let file_name = format!("{id:012}.jpg");
        let path = images_dir.join(&file_name);
        std::fs::write(&path, jpeg).with_context(|| format!("writing {}", path.display()))?;
        images.push(json!({"id": id, "file_name": file_name, "width": width, "height": height}));
        annotations.push(
            json!({"id": id, "image_id": id, "caption": format!("a photograph of the {name}")}),
        );
    }
    let captions = root.join("annotations/captions_train2017.json");
    std::fs::write(
        &captions,
        serde_json::to_vec(&json!({"images": images, "annotations": annotations}))?,
    )
    .with_context(|| format!("writing {}", captions.display()))?;
    Ok(CocoCaptions::load(root, "train")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_split_of_coco_sized_jpegs_that_loads() {
        let dir = std::env::temp_dir().join(format!("virtex-photos-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sources = dir.join("sources");
        std::fs::create_dir_all(&sources).unwrap();
        // A 300 × 451 "portrait" and a grey 512 × 512, as chelsea and camera.
        image::RgbImage::from_fn(300, 451, |x, y| image::Rgb([x as u8, y as u8, 7]))
            .save(sources.join("cat_face.png"))
            .unwrap();
        image::GrayImage::from_fn(512, 512, |x, _| image::Luma([x as u8]))
            .save(sources.join("camera.jpg"))
            .unwrap();
        std::fs::write(sources.join("notes.txt"), "not an image").unwrap();
        let photos = photos_in(&sources).unwrap();
        assert_eq!(photos.len(), 2, "{photos:?}");

        let split = write_coco_sized_split(&photos, &dir.join("coco"), 5).unwrap();
        assert_eq!(split.images.len(), 5);
        for image in &split.images {
            let decoded = image::open(&image.path).unwrap();
            assert_eq!((decoded.width(), decoded.height()), COCO_SIZE);
            assert_eq!(
                ImageFormat::from_path(&image.path).unwrap(),
                ImageFormat::Jpeg
            );
        }
        assert_eq!(split.images[0].captions, ["a photograph of the camera"]);
        assert_eq!(split.images[1].captions, ["a photograph of the cat face"]);
        assert_eq!(split.images[2].captions, ["a photograph of the camera"]);

        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = photos_in(&empty).unwrap_err().to_string();
        assert!(
            err.contains("no .jpg or .png") && err.contains("empty"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
