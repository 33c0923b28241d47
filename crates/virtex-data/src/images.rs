//! Reading images as 8-bit RGB, whatever their layout, and the evaluation
//! preprocessing (`virtex/factories.py::ImageTransformsFactory`, val branch).

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{ImageFormat, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

/// ImageNet channel means (RGB, on 0–1 values), the reference's `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, on 0–1 values).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// PIL's `Image.MAX_IMAGE_PIXELS` (89,478,485): images with more pixels are
/// refused as possible decompression bombs (a small file that decodes to
/// gigabytes) unless the caller raises the limit.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

/// What to do with an image that cannot be used: `error` or `skip`, as the
/// config's `DATA.ON_BAD_IMAGE` and the command line's `--on-bad-image`
/// spell it (serde, [`FromStr`](std::str::FromStr) and [`Display`](fmt::Display)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadImagePolicy {
    /// Stop with an error naming the file (the default).
    #[default]
    Error,
    /// Leave the image out, and count or list it.
    Skip,
}

impl std::str::FromStr for BadImagePolicy {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "error" => Ok(Self::Error),
            "skip" => Ok(Self::Skip),
            other => Err(format!(
                "unknown bad-image policy '{other}': expected error or skip"
            )),
        }
    }
}

impl fmt::Display for BadImagePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Skip => "skip",
        })
    }
}

/// An image that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ImageError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (missing, truncated, not an image, …).
    pub message: String,
}

/// Whether `path` names a JPEG or PNG file (by extension, any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The JPEG and PNG files of `dir`, sorted by name.
pub fn image_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_image_file(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Decodes `path` as 8-bit RGB: grayscale is replicated, palettes expanded,
/// CMYK converted, 16-bit scaled down, and alpha dropped (as OpenCV's
/// `imread(IMREAD_COLOR)`, which the reference uses).
///
/// A truncated JPEG is an error: the decoder would otherwise fill the missing
/// rows with grey, so the end-of-image marker is required. Images above
/// [`DEFAULT_MAX_PIXELS`] are refused ([`load_rgb_within`] takes a limit).
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    load_rgb_within(path, DEFAULT_MAX_PIXELS)
}

/// [`load_rgb`], refusing images of more than `max_pixels` pixels before
/// decoding them (the header says how large the image is).
pub fn load_rgb_within(path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    decode_rgb_within(&bytes, path, max_pixels)
}

/// [`load_rgb_within`] on an encoded image already in memory (a tar shard's
/// member, say); `path` names it in errors.
pub fn decode_rgb_within(
    bytes: &[u8],
    path: &Path,
    max_pixels: u64,
) -> Result<RgbImage, ImageError> {
    let error = |message: String| ImageError {
        path: path.to_path_buf(),
        message,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| error(format!("cannot read: {e}")))?;
    if reader.format() == Some(ImageFormat::Jpeg) && !has_jpeg_end_marker(bytes) {
        return Err(error("truncated JPEG (no end-of-image marker)".into()));
    }
    let (width, height) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| error(format!("cannot read: {e}")))?
        .into_dimensions()
        .map_err(|e| error(format!("cannot decode: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(error(format!(
            "{width}×{height} = {pixels} pixels is over the limit of {max_pixels} \
             (a possible decompression bomb; raise the limit to read it)"
        )));
    }
    let mut limits = Limits::no_limits();
    // Room for the largest allowed image at 16 bits per RGBA channel.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(1 << 26));
    let mut reader = reader;
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| error(format!("cannot decode: {e}")))?;
    Ok(image.to_rgb8())
}

/// Whether the end-of-image marker (`FF D9`) closes the file, allowing a
/// little trailing padding as some writers add.
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(32)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Resizes the shorter side to `shorter` (bilinear) and crops the centre
/// `crop × crop`: albumentations' `SmallestMaxSize` + `CenterCrop`. The
/// pretraining validation uses `shorter = crop`; downstream evaluation and
/// captioning resize to 256 and crop 224.
pub fn resize_and_center_crop(image: &RgbImage, shorter: u32, crop: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let shorter = shorter.max(crop);
    let scale = f64::from(shorter) / f64::from(w.min(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(shorter),
        ((f64::from(h) * scale).round() as u32).max(shorter),
    );
    // The centre crop of the resized image, in source pixels.
    let side = f64::from(crop) / scale;
    let (left, top) = (
        f64::from(nw - crop) / 2.0 / scale,
        f64::from(nh - crop) / 2.0 / scale,
    );
    resize_region(
        image,
        (left, top, side.min(f64::from(w)), side.min(f64::from(h))),
        crop,
    )
}

/// The evaluation preprocessing: shorter side resized (bilinear), centre
/// crop, ImageNet normalisation. The reference uses two sizes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalTransform {
    /// Side the shorter edge is resized to.
    pub resize: u32,
    /// Side of the centre crop the model sees.
    pub crop: u32,
    /// Larger images are refused ([`DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
}

impl EvalTransform {
    /// Downstream evaluation and captioning (`scripts/clf_*.py`,
    /// `eval_captioning.py`): resize to 256, crop 224, kept in that ratio at
    /// other crop sizes (`crop × 256/224`, rounded up).
    pub fn downstream(crop: u32) -> Self {
        Self {
            resize: (crop * 256).div_ceil(224),
            crop,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// Pretraining validation: the pretraining factory passes the crop size
    /// to every resize and crop (`SmallestMaxSize(224)` → `CenterCrop(224)`).
    pub fn pretraining(crop: u32) -> Self {
        Self {
            resize: crop,
            crop,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// The resized, centre-cropped image.
    pub fn apply(&self, image: &RgbImage) -> RgbImage {
        resize_and_center_crop(image, self.resize, self.crop)
    }

    /// Loads `paths` in parallel and returns their crops, normalised, as one
    /// `[paths.len(), 3, crop, crop]` buffer.
    pub fn load_batch(&self, paths: &[PathBuf]) -> Result<Vec<f32>, ImageError> {
        Ok(normalized_batch(&self.load_crops(paths)?))
    }

    /// Refuses images of more than `max_pixels` pixels.
    pub fn with_max_pixels(self, max_pixels: u64) -> Self {
        Self { max_pixels, ..self }
    }

    /// Loads `paths` in parallel and returns their crops, for callers that
    /// need the pixels as well as the model's input ([`normalized_batch`]).
    pub fn load_crops(&self, paths: &[PathBuf]) -> Result<Vec<RgbImage>, ImageError> {
        self.try_load_crops(paths).into_iter().collect()
    }

    /// [`EvalTransform::load_crops`] under `policy`: the crops of the images
    /// that could be read, with their positions in `paths`, and the errors
    /// of those left out (`Skip`); under `Error`, the first error.
    pub fn load_readable_crops(
        &self,
        paths: &[PathBuf],
        policy: BadImagePolicy,
    ) -> Result<ReadableCrops, ImageError> {
        let mut read = ReadableCrops::default();
        for (index, crop) in self.try_load_crops(paths).into_iter().enumerate() {
            match crop {
                Ok(crop) => {
                    read.positions.push(index);
                    read.crops.push(crop);
                }
                Err(err) if policy == BadImagePolicy::Skip => read.skipped.push(err),
                Err(err) => return Err(err),
            }
        }
        Ok(read)
    }

    /// [`EvalTransform::load_crops`], with each image's own outcome.
    pub fn try_load_crops(&self, paths: &[PathBuf]) -> Vec<Result<RgbImage, ImageError>> {
        use rayon::prelude::*;
        paths
            .par_iter()
            .map(|path| Ok(self.apply(&load_rgb_within(path, self.max_pixels)?)))
            .collect()
    }
}

/// What [`EvalTransform::load_readable_crops`] could read.
#[derive(Debug, Default)]
pub struct ReadableCrops {
    /// The position in the paths of each crop.
    pub positions: Vec<usize>,
    /// The crops of the readable images, in order.
    pub crops: Vec<RgbImage>,
    /// The images left out, each with why.
    pub skipped: Vec<ImageError>,
}

/// Equal-sized crops, ImageNet-normalised, as one `[crops.len(), 3, h, w]`
/// buffer.
pub fn normalized_batch(crops: &[RgbImage]) -> Vec<f32> {
    use rayon::prelude::*;
    let images: Vec<Vec<f32>> = crops.par_iter().map(to_normalized_chw).collect();
    images.concat()
}

/// Resizes the region `(left, top, width, height)` of `image` (source pixels)
/// to `size × size` with a bilinear (triangle) filter, scaled to the region's
/// size when shrinking, as PIL and OpenCV's area-aware resizes do.
pub fn resize_region(image: &RgbImage, region: (f64, f64, f64, f64), size: u32) -> RgbImage {
    let mut out = RgbImage::new(size, size);
    let (left, top, width, height) = region;
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, width, height);
    Resizer::new()
        .resize(image, &mut out, &options)
        .expect("RGB u8 into RGB u8 with an in-bounds crop");
    out
}

/// ImageNet-normalised CHW floats of an RGB image.
///
/// # Shapes
/// - `image`: `H × W` RGB → `[3, H, W]` flattened, channel-major
pub fn to_normalized_chw(image: &RgbImage) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] =
                (f32::from(pixel.0[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/fixtures/images")
            .join(name)
    }

    #[test]
    fn the_bad_image_policy_has_one_spelling_everywhere() {
        for (policy, name) in [
            (BadImagePolicy::Error, "error"),
            (BadImagePolicy::Skip, "skip"),
        ] {
            assert_eq!(policy.to_string(), name);
            assert_eq!(name.parse::<BadImagePolicy>(), Ok(policy));
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<BadImagePolicy>(&json).unwrap(),
                policy
            );
        }
        let err = "Skip".parse::<BadImagePolicy>().unwrap_err();
        assert!(
            err.contains("'Skip'") && err.contains("error or skip"),
            "{err}"
        );
    }

    #[test]
    fn every_layout_decodes_to_rgb() {
        let reference = load_rgb(&fixture("rgb.jpg")).unwrap();
        assert_eq!(reference.dimensions(), (48, 32));
        for name in [
            "gray.png",
            "cmyk.jpg",
            "palette.png",
            "rgba.png",
            "gray16.png",
        ] {
            let image = load_rgb(&fixture(name)).unwrap();
            assert_eq!(image.dimensions(), (48, 32), "{name}");
            // Same picture: mean brightness within a few levels of the RGB original.
            let mean = |im: &RgbImage| {
                im.pixels()
                    .map(|p| p.0.iter().map(|&v| f64::from(v)).sum::<f64>())
                    .sum::<f64>()
                    / (3.0 * f64::from(im.width() * im.height()))
            };
            let (a, b) = (mean(&image), mean(&reference));
            assert!((a - b).abs() < 12.0, "{name}: mean {a} vs {b}");
        }
    }

    #[test]
    fn broken_files_are_errors_naming_them() {
        for name in [
            "truncated.jpg",
            "not_an_image.jpg",
            "empty.jpg",
            "absent.jpg",
        ] {
            let err = load_rgb(&fixture(name)).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn images_over_the_pixel_limit_are_refused_unread() {
        // tools/fixtures/make_bad_image_fixtures.py: 12000×8000 in 12 KB.
        let err = load_rgb(&fixture("bomb.png")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("bomb.png"), "{message}");
        assert!(
            message.contains("12000×8000 = 96000000 pixels"),
            "{message}"
        );
        assert!(message.contains("limit of 89478485"), "{message}");
        // rgb.jpg has 48×32 = 1536 pixels.
        let rgb = fixture("rgb.jpg");
        assert!(load_rgb_within(&rgb, 1535).is_err());
        assert_eq!(load_rgb_within(&rgb, 1536).unwrap().dimensions(), (48, 32));
        let transform = EvalTransform::pretraining(16).with_max_pixels(1536);
        let outcomes = transform.try_load_crops(&[fixture("bomb.png"), rgb]);
        assert!(
            outcomes[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("limit of 1536")
        );
        assert_eq!(outcomes[1].as_ref().unwrap().dimensions(), (16, 16));
    }

    #[test]
    fn evaluation_preprocessing_resizes_crops_and_normalises() {
        let image = load_rgb(&fixture("rgb.jpg")).unwrap();
        let crop = resize_and_center_crop(&image, 16, 16);
        assert_eq!(
            resize_and_center_crop(&image, 20, 16).dimensions(),
            (16, 16)
        );
        assert_eq!(crop.dimensions(), (16, 16));
        let chw = to_normalized_chw(&crop);
        assert_eq!(chw.len(), 3 * 16 * 16);
        assert_eq!(
            EvalTransform::downstream(224),
            EvalTransform {
                resize: 256,
                crop: 224,
                max_pixels: DEFAULT_MAX_PIXELS,
            }
        );
        assert_eq!(EvalTransform::downstream(32).resize, 37);
        let batch = EvalTransform::pretraining(16)
            .load_batch(&[fixture("rgb.jpg"), fixture("gray.png")])
            .unwrap();
        assert_eq!(batch.len(), 2 * 3 * 16 * 16);
        assert_eq!(batch[..3 * 16 * 16], chw[..]);
        let white = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let expected_red = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!((to_normalized_chw(&white)[0] - expected_red).abs() < 1e-6);
    }
}
