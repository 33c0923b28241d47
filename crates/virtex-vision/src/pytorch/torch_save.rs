//! A writer for PyTorch's `torch.save` zip format, enough for state dicts.
//!
//! No crate writes this format (burn-store and candle only read it), so it is
//! written here: a zip archive of stored entries, `archive/data.pkl` (pickle
//! protocol 2 whose tensors are `torch._utils._rebuild_tensor_v2` calls over
//! persistent-id storages), one `archive/data/<n>` file of raw little-endian
//! bytes per tensor, and `archive/version`. Only globals that
//! `torch.load(weights_only=True)` allows are emitted.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Element types a written tensor can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorchDType {
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.int64` (`LongStorage`).
    I64,
}

impl TorchDType {
    fn storage(self) -> &'static str {
        match self {
            TorchDType::F32 => "FloatStorage",
            TorchDType::I64 => "LongStorage",
        }
    }

    fn size(self) -> usize {
        match self {
            TorchDType::F32 => 4,
            TorchDType::I64 => 8,
        }
    }
}

/// A contiguous CPU tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    /// Element type.
    pub dtype: TorchDType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Row-major little-endian element bytes.
    pub bytes: Vec<u8>,
}

impl TorchTensor {
    /// A float32 tensor.
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: TorchDType::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An int64 tensor.
    pub fn i64(shape: Vec<usize>, values: &[i64]) -> Self {
        Self {
            dtype: TorchDType::I64,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn numel(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }
}

/// The values a saved object may contain.
#[derive(Clone, Debug, PartialEq)]
pub enum PickleValue {
    /// A `dict` with string keys, in insertion order.
    Dict(Vec<(String, PickleValue)>),
    /// A `str`.
    Str(String),
    /// A `bool`.
    Bool(bool),
    /// A `torch.Tensor`.
    Tensor(TorchTensor),
}

/// Writes `value` as `torch.save` would, atomically: a temporary file beside
/// `path` is renamed over it once complete.
pub fn save(path: &Path, value: &PickleValue) -> io::Result<()> {
    let mut pickle = Pickler::default();
    pickle.buf.extend_from_slice(&[0x80, 2]); // PROTO 2
    pickle.value(value);
    pickle.buf.push(b'.'); // STOP

    virtex_data::atomic::write_file(path, |file| {
        let mut zip = ZipWriter::new(BufWriter::new(file));
        let stored = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .large_file(true);
        zip.start_file("archive/data.pkl", stored)?;
        zip.write_all(&pickle.buf)?;
        zip.start_file("archive/byteorder", stored)?;
        zip.write_all(b"little")?;
        for (key, tensor) in pickle.storages.iter().enumerate() {
            // 64-byte alignment lets `torch.load(mmap=True)` map the storages.
            zip.start_file(format!("archive/data/{key}"), stored.with_alignment(64))?;
            zip.write_all(&tensor.bytes)?;
        }
        zip.start_file("archive/version", stored)?;
        zip.write_all(b"3\n")?;
        zip.finish()?.into_inner().map_err(|e| e.into_error())
    })
}

/// Pickle protocol 2 encoder for [`PickleValue`].
#[derive(Default)]
struct Pickler<'a> {
    buf: Vec<u8>,
    storages: Vec<&'a TorchTensor>,
}

impl<'a> Pickler<'a> {
    const MARK: u8 = b'(';
    const TUPLE: u8 = b't';
    const REDUCE: u8 = b'R';

    fn value(&mut self, value: &'a PickleValue) {
        match value {
            PickleValue::Dict(items) => {
                self.buf.push(b'}'); // EMPTY_DICT
                if !items.is_empty() {
                    self.buf.push(Self::MARK);
                    for (key, item) in items {
                        self.str(key);
                        self.value(item);
                    }
                    self.buf.push(b'u'); // SETITEMS
                }
            }
            PickleValue::Str(s) => self.str(s),
            PickleValue::Bool(b) => self.buf.push(if *b { 0x88 } else { 0x89 }),
            PickleValue::Tensor(t) => self.tensor(t),
        }
    }

    fn str(&mut self, s: &str) {
        self.buf.push(b'X'); // BINUNICODE
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        match i32::try_from(v) {
            Ok(v) => {
                self.buf.push(b'J'); // BININT
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
            Err(_) => {
                self.buf.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes
                self.buf.extend_from_slice(&(v as i64).to_le_bytes());
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.buf.push(b'c');
        self.buf
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn int_tuple(&mut self, values: &[usize]) {
        self.buf.push(Self::MARK);
        for &v in values {
            self.int(v);
        }
        self.buf.push(Self::TUPLE);
    }

    /// `_rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`.
    fn tensor(&mut self, tensor: &'a TorchTensor) {
        let key = self.storages.len();
        self.storages.push(tensor);
        let stride: Vec<usize> = (0..tensor.shape.len())
            .map(|d| tensor.shape[d + 1..].iter().product())
            .collect();

        self.global("torch._utils", "_rebuild_tensor_v2");
        self.buf.push(Self::MARK);
        // Persistent id: ("storage", torch.<Type>Storage, "<key>", "cpu", numel).
        self.buf.push(Self::MARK);
        self.str("storage");
        self.global("torch", tensor.dtype.storage());
        self.str(&key.to_string());
        self.str("cpu");
        self.int(tensor.numel());
        self.buf.push(Self::TUPLE);
        self.buf.push(b'Q'); // BINPERSID
        self.int(0); // storage offset
        self.int_tuple(&tensor.shape);
        self.int_tuple(&stride);
        self.buf.push(0x89); // requires_grad = False
        self.global("collections", "OrderedDict");
        self.buf.push(b')'); // EMPTY_TUPLE
        self.buf.push(Self::REDUCE);
        self.buf.push(Self::TUPLE);
        self.buf.push(Self::REDUCE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_store::pytorch::PytorchReader;

    #[test]
    fn burn_store_reads_back_what_is_written() {
        let dir = std::env::temp_dir().join(format!("virtex-torch-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sd.pth");
        let weight: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let state = PickleValue::Dict(vec![
            (
                "conv.weight".into(),
                PickleValue::Tensor(TorchTensor::f32(vec![2, 3, 2, 2], &weight)),
            ),
            (
                "bn.num_batches_tracked".into(),
                PickleValue::Tensor(TorchTensor::i64(vec![], &[7])),
            ),
        ]);
        let root = PickleValue::Dict(vec![
            ("model".into(), state),
            ("__author__".into(), PickleValue::Str("virtex-rs".into())),
        ]);
        save(&path, &root).unwrap();

        let reader = PytorchReader::with_top_level_key(&path, "model").unwrap();
        let mut keys = reader.keys();
        keys.sort();
        assert_eq!(keys, ["bn.num_batches_tracked", "conv.weight"]);
        let conv = reader.get("conv.weight").unwrap();
        assert_eq!(conv.shape.to_vec(), vec![2, 3, 2, 2]);
        assert_eq!(conv.to_data().unwrap().to_vec::<f32>().unwrap(), weight);
        let count = reader
            .get("bn.num_batches_tracked")
            .unwrap()
            .to_data()
            .unwrap();
        assert_eq!(count.to_vec::<i64>().unwrap(), vec![7]);
        assert!(!dir.join("sd.tmp-write").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
