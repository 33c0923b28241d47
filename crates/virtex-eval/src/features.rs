//! Frozen-backbone features (`scripts/clf_voc07.py`, `scripts/clf_linear.py`):
//! shorter side resized to 256/224 of the crop, centre crop, ResNet in eval
//! mode, global-average-pooled layer4 (`[N, 2048]` for ResNet-50), optionally
//! L2-normalised; written as NumPy `.npy` for numpy/sklearn users.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use virtex_data::images::{
    BadImagePolicy, DEFAULT_MAX_PIXELS, EvalTransform, ImageError, image_files, normalized_batch,
};
use virtex_train::device::BackendTask;
use virtex_train::source::WeightsSource;
use virtex_vision::{AutodiffVisionBackend, ResNet, ResNetArch, VisionBackend};

use crate::error::{EvalError, io};

/// Pooled features of a list of images, row-major `[rows, dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Images.
    pub rows: usize,
    /// Channels of the pooled layer4.
    pub dim: usize,
    /// `rows × dim` values.
    pub values: Vec<f32>,
}

/// The images of a directory (JPEG and PNG, sorted), or the paths listed in
/// a text file (one per line, relative to the file's directory unless absolute).
pub fn image_list(images: &Path) -> Result<Vec<PathBuf>, EvalError> {
    if images.is_dir() {
        return image_files(images).map_err(io(images));
    }
    let text = std::fs::read_to_string(images).map_err(io(images))?;
    let base = images.parent().unwrap_or(Path::new("."));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| base.join(line))
        .collect())
}

/// Pooled layer4 features of `images` from a frozen backbone, on the backend
/// it is dispatched to.
#[derive(Clone, Debug)]
pub struct FeatureTask {
    /// The backbone's weights.
    pub source: WeightsSource,
    /// Its architecture, for sources without a config.
    pub arch: ResNetArch,
    /// The images, in row order.
    pub images: Vec<PathBuf>,
    /// How they are read and pooled.
    pub extraction: Extraction,
}

impl BackendTask for FeatureTask {
    type Output = Result<ExtractedFeatures, EvalError>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        let backbone = self
            .source
            .backbone::<B::InnerBackend>(self.arch, &device)?;
        Ok(extract(&backbone, &self.images, &self.extraction, &device)?)
    }
}

/// How [`extract`] reads and pools images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extraction {
    /// Side the backbone sees (224 in the reference, after resizing the
    /// shorter side to 256/224 of it).
    pub size: u32,
    /// Images per forward pass.
    pub batch: usize,
    /// Scale each row to unit length (the VOC07 SVM protocol).
    pub l2_normalize: bool,
    /// An image that cannot be read stops the extraction (`Error`) or is
    /// left out, its row not written, and listed (`Skip`).
    pub on_bad_image: BadImagePolicy,
    /// Images with more pixels are refused (decompression bombs).
    pub max_image_pixels: u64,
}

impl Extraction {
    /// At side `size`, 16 images a pass, no normalisation, stopping at a bad
    /// image, the default pixel limit.
    pub fn new(size: u32) -> Self {
        Self {
            size,
            batch: 16,
            l2_normalize: false,
            on_bad_image: BadImagePolicy::Error,
            max_image_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// What [`extract`] made: a row per image it could read.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtractedFeatures {
    /// `[images.len(), dim]`.
    pub features: Features,
    /// The image of each row.
    pub images: Vec<PathBuf>,
    /// The images left out under [`BadImagePolicy::Skip`], each with why.
    pub skipped: Vec<ImageError>,
}

/// Extracts pooled layer4 features of `images` with `backbone` (an inference
/// backend, so BatchNorm uses its running statistics), as `extraction` says.
pub fn extract<B: VisionBackend>(
    backbone: &ResNet<B>,
    images: &[PathBuf],
    extraction: &Extraction,
    device: &B::Device,
) -> Result<ExtractedFeatures, ImageError> {
    let transform =
        EvalTransform::downstream(extraction.size).with_max_pixels(extraction.max_image_pixels);
    let side = extraction.size as usize;
    let mut values = Vec::new();
    let mut dim = 0;
    let mut kept = Vec::with_capacity(images.len());
    let mut skipped = Vec::new();
    for chunk in images.chunks(extraction.batch.max(1)) {
        let read = transform.load_readable_crops(chunk, extraction.on_bad_image)?;
        skipped.extend(read.skipped);
        kept.extend(read.positions.iter().map(|&i| chunk[i].clone()));
        let crops = read.crops;
        if crops.is_empty() {
            continue;
        }
        let input = Tensor::<B, 4>::from_data(
            TensorData::new(normalized_batch(&crops), [crops.len(), 3, side, side]),
            device,
        );
        let mut pooled = backbone.forward_pooled(input);
        if extraction.l2_normalize {
            let norms = pooled
                .clone()
                .powi_scalar(2)
                .sum_dim(1)
                .sqrt()
                .clamp_min(1e-12);
            pooled = pooled / norms;
        }
        dim = pooled.dims()[1];
        values.extend(
            pooled
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 features"),
        );
    }
    Ok(ExtractedFeatures {
        features: Features {
            rows: kept.len(),
            dim,
            values,
        },
        images: kept,
        skipped,
    })
}

impl Features {
    /// The `.npy` bytes (format 1.0, little-endian float32, shape
    /// `[rows, dim]`, C order), byte for byte what `numpy.save` writes.
    pub fn to_npy(&self) -> Vec<u8> {
        npy_f32(&[self.rows, self.dim], &self.values)
    }

    /// Writes the `.npy` to `path` atomically.
    pub fn save_npy(&self, path: &Path) -> std::io::Result<()> {
        virtex_data::atomic::write_bytes(path, &self.to_npy())
    }

    /// Reads a 2-D little-endian float32 or float16 (`'<f4'`/`'<f2'`),
    /// C-order `.npy`, as numpy writes it (format 1.0 or 2.0).
    pub fn from_npy(bytes: &[u8]) -> Result<Self, NpyError> {
        let bad = |why: &str| NpyError(why.to_string());
        let rest = bytes
            .strip_prefix(b"\x93NUMPY")
            .ok_or_else(|| bad("not an .npy file (no magic)"))?;
        let (header_len, offset) = match rest.first() {
            Some(1) if rest.len() >= 4 => (usize::from(u16::from_le_bytes([rest[2], rest[3]])), 4),
            Some(2 | 3) if rest.len() >= 6 => (
                u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize,
                6,
            ),
            _ => return Err(bad("unsupported .npy version")),
        };
        let header = rest
            .get(offset..offset + header_len)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| bad("truncated header"))?;
        let data = &rest[offset + header_len..];
        if header.contains("'fortran_order': True") {
            return Err(bad("Fortran-order arrays are not supported"));
        }
        let shape: Vec<usize> = header
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| bad("no shape in header"))?
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().map_err(|_| bad("bad shape")))
            .collect::<Result<_, _>>()?;
        let [rows, dim] = shape[..] else {
            return Err(bad(&format!("expected a 2-D array, got shape {shape:?}")));
        };
        let values: Vec<f32> = if header.contains("'descr': '<f4'") {
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else if header.contains("'descr': '<f2'") {
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        } else {
            return Err(bad("only '<f4' and '<f2' arrays are supported"));
        };
        if values.len() != rows * dim {
            return Err(bad(&format!(
                "shape ({rows}, {dim}) but {} values",
                values.len()
            )));
        }
        Ok(Self { rows, dim, values })
    }

    /// Reads an `.npy` file (see [`Features::from_npy`]).
    pub fn load_npy(path: &Path) -> Result<Self, NpyError> {
        let bytes =
            std::fs::read(path).map_err(|e| NpyError(format!("{}: {e}", path.display())))?;
        Self::from_npy(&bytes).map_err(|e| NpyError(format!("{}: {}", path.display(), e.0)))
    }
}

/// An `.npy` file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NpyError(String);

/// NumPy's format 1.0: magic, version, a little-endian u16 header length,
/// a Python dict literal padded with spaces (and a newline) so the data
/// starts at a multiple of 64 bytes, then the raw values.
fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let dims = if shape.len() == 1 {
        dims
    } else {
        dims.trim_end_matches(", ").to_string()
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    const PREAMBLE: usize = 10;
    while !(PREAMBLE + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(PREAMBLE + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;
    use virtex_vision::{ResNetArch, ResNetConfig};

    #[test]
    fn npy_round_trips_and_reads_float16() {
        let features = Features {
            rows: 2,
            dim: 3,
            values: vec![1.0, -2.5, 0.0, 3.25, 1e-3, 7.0],
        };
        assert_eq!(Features::from_npy(&features.to_npy()).unwrap(), features);
        // numpy.save(np.array([[1, -2.5], [0.5, 3]], dtype=np.float16))
        let mut f16 = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let mut header = "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        f16.extend(header.as_bytes());
        for v in [1.0f32, -2.5, 0.5, 3.0] {
            f16.extend(half::f16::from_f32(v).to_le_bytes());
        }
        let read = Features::from_npy(&f16).unwrap();
        assert_eq!((read.rows, read.dim), (2, 2));
        assert_eq!(read.values, [1.0, -2.5, 0.5, 3.0]);
        assert!(Features::from_npy(b"not numpy").is_err());
    }

    #[test]
    fn features_are_pooled_normalised_and_batch_independent() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/emoji/val2017");
        let mut images: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        images.sort();
        images.truncate(3);
        let device = Default::default();
        let backbone = ResNetConfig::virtex(ResNetArch::Resnet18).init::<Flex>(&device);
        let extraction = Extraction {
            batch: 2,
            l2_normalize: true,
            ..Extraction::new(32)
        };
        let features = extract(&backbone, &images, &extraction, &device)
            .unwrap()
            .features;
        assert_eq!((features.rows, features.dim), (3, 512));
        for row in features.values.chunks(512) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        }
        // The same image alone gives the same row: batching does not leak.
        let one_by_one = Extraction {
            batch: 1,
            ..extraction
        };
        let alone = extract(&backbone, &images[2..], &one_by_one, &device)
            .unwrap()
            .features;
        let diff = alone
            .values
            .iter()
            .zip(&features.values[1024..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{diff}");

        let bytes = features.to_npy();
        assert_eq!(bytes.len(), 128 + 4 * 3 * 512);
        assert_eq!(&bytes[128..132], &features.values[0].to_le_bytes());
    }

    #[test]
    fn npy_bytes_equal_numpys() {
        // tools/fixtures/make_npy_fixture.py: numpy.save of this array.
        let numpy = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/npy/f32_2x3.npy"),
        )
        .unwrap();
        let ours = npy_f32(&[2, 3], &[0.5, -1.25, 3.0, 1e-8, 2.0, -0.0]);
        assert_eq!(ours, numpy);
    }
}
