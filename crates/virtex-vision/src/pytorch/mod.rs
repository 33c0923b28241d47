//! ResNet weights in and out of PyTorch `.pth` files.
//!
//! - In: a bare torchvision state dict (`torchvision.models.resnet50().state_dict()`,
//!   VirTex's hub backbone), or one nested under a top-level key and a prefix, as in
//!   a VirTex checkpoint (`{"model": {"visual.cnn.conv1.weight": …, "textual.…": …}}`).
//! - Out: the backbone under torchvision names or under Detectron2 names
//!   (VirTex's `detectron2_backbone_state_dict`), as files `torch.load` reads.

mod names;
pub mod torch_save;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn_store::pytorch::{PytorchError, PytorchReader};
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter};

pub use names::{burn_to_torchvision, torchvision_to_burn, torchvision_to_detectron2};
use torch_save::{PickleValue, TorchTensor};

use crate::error::check_applied;
use crate::{ResNet, VisionError};

/// BN buffers PyTorch keeps and burn does not (they only matter with `momentum=None`).
const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// Where a ResNet state dict sits inside a `.pth` file, and how strictly to load it.
#[derive(Clone, Debug)]
pub struct TorchvisionWeights {
    path: PathBuf,
    top_level_key: Option<String>,
    prefix: String,
    allow_partial: bool,
}

impl TorchvisionWeights {
    /// A bare torchvision state dict (keys `conv1.weight`, `layer1.0.bn1.bias`, …).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            top_level_key: None,
            prefix: String::new(),
            allow_partial: false,
        }
    }

    /// The visual backbone of a VirTex checkpoint: `["model"]`, keys under `visual.cnn.`.
    pub fn virtex_checkpoint(path: impl Into<PathBuf>) -> Self {
        Self::new(path)
            .with_top_level_key("model")
            .with_prefix("visual.cnn.")
    }

    /// Read the state dict from `checkpoint[key]`.
    pub fn with_top_level_key(mut self, key: impl Into<String>) -> Self {
        self.top_level_key = Some(key.into());
        self
    }

    /// Only keys starting with `prefix` belong to the backbone (the prefix is
    /// stripped); all others are left alone.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Tolerate missing and unexpected keys (shape mismatches stay errors).
    pub fn allow_partial(mut self, allow: bool) -> Self {
        self.allow_partial = allow;
        self
    }

    /// Loads the weights into `model`.
    ///
    /// `fc.*` keys are skipped when the model has no classifier (VirTex sets
    /// `fc = Identity`), and so are BN `num_batches_tracked` counters. Any other
    /// unexpected, missing, wrongly-shaped or wrongly-typed key is an error naming
    /// it, unless [`allow_partial`](Self::allow_partial) is set.
    pub fn load<B: Backend>(&self, mut model: ResNet<B>) -> Result<ResNet<B>, VisionError> {
        let reader = read_pth(&self.path, self.top_level_key.as_deref())?;

        let has_fc = model.fc.is_some();
        let snapshots: Vec<_> = reader
            .into_tensors()
            .into_iter()
            .filter_map(|(key, mut snapshot)| {
                let key = key.strip_prefix(&self.prefix)?;
                let skipped =
                    key.ends_with(NUM_BATCHES_TRACKED) || (!has_fc && key.starts_with("fc."));
                if skipped {
                    return None;
                }
                let path = torchvision_to_burn(key);
                snapshot.path_stack = Some(path.split('.').map(str::to_string).collect());
                snapshot.container_stack = None;
                snapshot.tensor_id = None;
                Some(snapshot)
            })
            .collect();

        let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true);

        let file_key = |path: &str| format!("{}{}", self.prefix, burn_to_torchvision(path));
        check_applied(&result, &self.path, self.allow_partial, file_key)?;
        Ok(model)
    }
}

/// The tensors of the `.pth` at `path` (their data is read when used), or
/// those of the dictionary under `top_level_key`. A file without that
/// dictionary is a [`VisionError::NoStateDict`] naming a few of the tensors
/// it has instead.
///
/// The pickle is read as data, never run: a file whose pickle calls anything
/// but torch's tensor rebuilders (`os.system`, say) is refused, naming the
/// call. A zip archive (`torch.save`'s format) is first read through once
/// (`check_archive`), so that a damaged entry is an error here rather than
/// tensors of zeros later.
pub fn read_pth(path: &Path, top_level_key: Option<&str>) -> Result<PytorchReader, VisionError> {
    check_archive(path)?;
    let read = match top_level_key {
        Some(key) => PytorchReader::with_top_level_key(path, key),
        None => PytorchReader::new(path),
    };
    let unreadable = |error: PytorchError| VisionError::Read {
        path: path.to_path_buf(),
        message: describe(&error),
    };
    read.map_err(|error| match (top_level_key, error) {
        (Some(key), PytorchError::KeyNotFound(_)) => match PytorchReader::new(path) {
            Ok(whole) => {
                let mut keys = whole.keys();
                keys.sort();
                VisionError::NoStateDict {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    keys,
                }
            }
            Err(error) => unreadable(error),
        },
        (_, error) => unreadable(error),
    })
}

/// Reads every entry of `path` to its end if it is a zip archive, which
/// checks each against its CRC-32. burn-store reads a tensor's data only
/// when it is used, and gives zeros for an entry it cannot read (one whose
/// bytes were damaged fails its CRC) or cannot find, and pads one too short
/// with zeros; damaged bytes are caught here, an archive rebuilt without an
/// entry or with a shorter one (whose CRCs are right) is not. A file that
/// begins as a zip archive but has none (cut short: the directory is at its
/// end) is an error; one that is no zip archive (a plain pickle, a legacy
/// `.pth`) is left to the reader.
fn check_archive(path: &Path) -> Result<(), VisionError> {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || magic != *b"PK\x03\x04" {
        return Ok(());
    }
    let unreadable = |message: String| VisionError::Read {
        path: path.to_path_buf(),
        message,
    };
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        unreadable(format!(
            "a zip archive (torch.save's format) without its directory, cut short or \
             damaged: {e}"
        ))
    })?;
    let damaged = |name: &str, error: &dyn std::fmt::Display| {
        unreadable(format!("zip entry '{name}': {error}"))
    };
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| damaged(&format!("#{index}"), &e))?;
        let name = entry.name().to_string();
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| damaged(&name, &e))?;
    }
    Ok(())
}

/// What burn-store's error says, without its guesses at the cause, and for
/// a pickle that calls something a state dict never does, what it calls.
fn describe(error: &PytorchError) -> String {
    use burn_store::pytorch::pickle_reader::PickleError;
    match error {
        PytorchError::Pickle(PickleError::UnsupportedType(call)) => format!(
            "its pickle calls {call}, which a state dict never does; refused (nothing was run)"
        ),
        PytorchError::Pickle(error) => format!("not a readable pickle: {error}"),
        other => other.to_string(),
    }
}

/// Key naming of an exported backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportNaming {
    /// A bare torchvision state dict: `torchvision.models.resnet50().load_state_dict(torch.load(f))`.
    Torchvision,
    /// `{"model": {"stem.conv1.weight": …, "res2.0.conv1.norm.weight": …}, "__author__": "virtex-rs"}`,
    /// what Detectron2's `DetectionCheckpointer` loads as `MODEL.WEIGHTS`.
    Detectron2,
}

impl std::str::FromStr for ExportNaming {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "torchvision" => Ok(Self::Torchvision),
            "detectron2" => Ok(Self::Detectron2),
            other => Err(format!(
                "unknown naming '{other}': expected torchvision or detectron2"
            )),
        }
    }
}

/// The model's tensors as an ordered torchvision state dict, with the
/// `num_batches_tracked` counters PyTorch's `load_state_dict` expects.
pub fn torchvision_state_dict<B: Backend>(model: &ResNet<B>) -> Vec<(String, TorchTensor)> {
    let mut state = Vec::new();
    for snapshot in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let key = burn_to_torchvision(&snapshot.full_path());
        let data = snapshot
            .to_data()
            .expect("a live module's tensors are readable")
            .convert::<f32>();
        let values = data.to_vec::<f32>().expect("converted to f32");
        let running_var = key.strip_suffix("running_var").map(str::to_string);
        state.push((key, TorchTensor::f32(data.shape.to_vec(), &values)));
        if let Some(bn) = running_var {
            state.push((
                format!("{bn}{NUM_BATCHES_TRACKED}"),
                TorchTensor::i64(vec![], &[0]),
            ));
        }
    }
    state
}

/// Writes the backbone to `path` (atomically) under the given naming.
pub fn export<B: Backend>(
    model: &ResNet<B>,
    path: &Path,
    naming: ExportNaming,
) -> Result<(), VisionError> {
    let state = torchvision_state_dict(model);
    let value = match naming {
        ExportNaming::Torchvision => PickleValue::Dict(
            state
                .into_iter()
                .map(|(k, t)| (k, PickleValue::Tensor(t)))
                .collect(),
        ),
        ExportNaming::Detectron2 => PickleValue::Dict(vec![
            (
                "model".into(),
                PickleValue::Dict(
                    state
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("fc."))
                        .map(|(k, t)| (torchvision_to_detectron2(&k), PickleValue::Tensor(t)))
                        .collect(),
                ),
            ),
            ("__author__".into(), PickleValue::Str("virtex-rs".into())),
        ]),
    };
    torch_save::save(path, &value).map_err(|source| VisionError::Write {
        path: path.to_path_buf(),
        source,
    })
}
