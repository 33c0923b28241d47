//! Frozen-backbone features (`scripts/clf_voc07.py`, `scripts/clf_linear.py`):
//! shorter side resized to 256/224 of the crop, centre crop, ResNet in eval
//! mode, global-average-pooled layer4 (`[N, 2048]` for ResNet-50), optionally
//! L2-normalised; written as NumPy `.npy` for numpy/sklearn users.

use std::io;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use virtex_data::images::{ImageError, load_rgb, resize_and_center_crop, to_normalized_chw};
use virtex_vision::ResNet;

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

/// Extracts pooled layer4 features of `images` with `backbone` (an inference
/// backend, so BatchNorm uses its running statistics), `batch` at a time.
/// `crop` is the side the backbone sees (224 in the reference, after a 256
/// resize); `l2_normalize` scales each row to unit length (VOC07 SVMs).
pub fn extract<B: Backend>(
    backbone: &ResNet<B>,
    images: &[PathBuf],
    crop: u32,
    batch: usize,
    l2_normalize: bool,
    device: &B::Device,
) -> Result<Features, ImageError> {
    let shorter = (crop * 256).div_ceil(224);
    let side = crop as usize;
    let mut values = Vec::new();
    let mut dim = 0;
    for chunk in images.chunks(batch.max(1)) {
        let pixels: Vec<Vec<f32>> = chunk
            .par_iter()
            .map(|path| {
                Ok(to_normalized_chw(&resize_and_center_crop(
                    &load_rgb(path)?,
                    shorter,
                    crop,
                )))
            })
            .collect::<Result<_, ImageError>>()?;
        let input = Tensor::<B, 4>::from_data(
            TensorData::new(pixels.concat(), [chunk.len(), 3, side, side]),
            device,
        );
        let mut pooled = backbone.forward_pooled(input);
        if l2_normalize {
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
    Ok(Features {
        rows: images.len(),
        dim,
        values,
    })
}

impl Features {
    /// The `.npy` bytes (format 1.0, little-endian float32, shape
    /// `[rows, dim]`, C order), byte for byte what `numpy.save` writes.
    pub fn to_npy(&self) -> Vec<u8> {
        npy_f32(&[self.rows, self.dim], &self.values)
    }

    /// Writes the `.npy` to `path` atomically.
    pub fn save_npy(&self, path: &Path) -> io::Result<()> {
        virtex_vision::atomic::write_bytes(path, &self.to_npy())
    }
}

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
    use burn::backend::Flex;
    use virtex_vision::{ResNetArch, ResNetConfig};

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
        let features = extract(&backbone, &images, 32, 2, true, &device).unwrap();
        assert_eq!((features.rows, features.dim), (3, 512));
        for row in features.values.chunks(512) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        }
        // The same image alone gives the same row: batching does not leak.
        let alone = extract(&backbone, &images[2..], 32, 1, true, &device).unwrap();
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
