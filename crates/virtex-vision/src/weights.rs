//! virtex-rs's native weight format: safetensors with burn's parameter paths
//! (`layer1.0.bn1.gamma`) and the [`ResNetConfig`] as JSON in the metadata,
//! so a file alone rebuilds its backbone. Readable from Python with
//! `safetensors.torch.load_file`.

use std::io::Write;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, SafetensorsStore};

use crate::error::check_applied;
use crate::{ResNet, ResNetConfig, VisionError};

/// Metadata key holding the backbone's config.
const CONFIG_KEY: &str = "virtex.resnet_config";

/// Writes `model` (built from `config`) to `path`, atomically: a temporary
/// file beside it is renamed over it once complete.
pub fn save<B: Backend>(
    model: &ResNet<B>,
    config: &ResNetConfig,
    path: &Path,
) -> Result<(), VisionError> {
    let write_error = |source| VisionError::Write {
        path: path.to_path_buf(),
        source,
    };
    let config = serde_json::to_string(config).expect("a ResNetConfig serialises");
    let mut store = SafetensorsStore::from_bytes(None).metadata(CONFIG_KEY, config);
    model
        .save_into(&mut store)
        .map_err(|e| write_error(std::io::Error::other(e.to_string())))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| write_error(std::io::Error::other(e.to_string())))?;
    crate::atomic::write_file(path, |mut file| {
        file.write_all(&bytes)?;
        Ok(file)
    })
    .map_err(write_error)
}

/// Reads a file written by [`save`]: rebuilds the backbone from the stored
/// config on `device` and loads every tensor (all must be present and fit).
pub fn load<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(ResNet<B>, ResNetConfig), VisionError> {
    let bytes = std::fs::read(path).map_err(|e| VisionError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let not_native = |message: String| VisionError::NotNative {
        path: path.to_path_buf(),
        message,
    };
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| not_native(format!("not a safetensors file ({e})")))?;
    let config = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONFIG_KEY))
        .ok_or_else(|| not_native(format!("no '{CONFIG_KEY}' metadata")))?;
    let config: ResNetConfig = serde_json::from_str(config)
        .map_err(|e| not_native(format!("bad '{CONFIG_KEY}' metadata: {e}")))?;

    let mut model = config.init::<B>(device);
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| VisionError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    check_applied(&result, path, false, str::to_string)?;
    Ok((model, config))
}
