//! The validation of a run (rank 0's): the mean loss and its terms over the
//! validation batches, and captions of the contact sheet's images.

use burn::tensor::ElementConversion;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use virtex_text::{PretrainingModel, PretrainingTask, TransformerTextualHead};
use virtex_vision::VisionBackend;

use super::captions::sheet_sample;
use crate::config::Config;
use crate::data::Data;
use crate::error::TrainError;
use crate::model_input::model_input;

/// One validation pass.
pub(super) struct Validation {
    /// Mean loss.
    pub loss: f64,
    /// Mean of each component, as `val_<name>`.
    pub parts: Map<String, Value>,
    /// Captions of the contact sheet's images ([`sheet_sample`]; captioning
    /// models), by image id.
    pub captions: Vec<(u64, String)>,
}

/// Mean loss (and components) over the validation batches, in eval mode,
/// plus, for captioning models, captions of the contact sheet's images.
pub(super) fn validate<B: VisionBackend>(
    model: &PretrainingModel<B>,
    data: &Data,
    config: &Config,
    device: &B::Device,
) -> Result<Validation, TrainError> {
    let limit = match config.train.validation_batches {
        0 => data.val.batches_per_epoch(),
        n => n.min(data.val.batches_per_epoch()),
    };
    let (mut total, mut parts) = (0.0, Map::new());
    for index in 0..limit {
        let batch = data.val.batch(0, index)?;
        let input = model_input::<B>(&batch, device);
        let output = model.forward(&input)?;
        total += output.loss.into_scalar().elem::<f64>();
        for (name, term) in output.components {
            let value = term.into_scalar().elem::<f64>();
            let entry = parts.entry(format!("val_{name}")).or_insert(json!(0.0));
            *entry = json!(entry.as_f64().unwrap_or(0.0) + value);
        }
    }
    let captioning = matches!(
        config.model.name,
        PretrainingTask::Bicaptioning | PretrainingTask::Captioning
    );
    let captions = match model.transformer_head() {
        Some(head) if captioning => sheet_captions(model, head, data, config, device)?,
        _ => Vec::new(),
    };
    for value in parts.values_mut() {
        *value = json!(value.as_f64().unwrap_or(0.0) / limit as f64);
    }
    Ok(Validation {
        loss: total / limit as f64,
        parts,
        captions,
    })
}

/// Captions (by `MODEL.DECODER`) of the validation images on the contact
/// sheet ([`sheet_sample`]), by image id.
fn sheet_captions<B: VisionBackend>(
    model: &PretrainingModel<B>,
    head: &TransformerTextualHead<B>,
    data: &Data,
    config: &Config,
    device: &B::Device,
) -> Result<Vec<(u64, String)>, TrainError> {
    let positions = sheet_sample(data.val.dataset().images.len(), config.random_seed);
    let batch = data.val.batch_of(0, &positions)?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let features = model
        .visual
        .forward(model_input::<B>(&batch, device).images);
    let decoded = config.caption_decoder(None).decode_bicaptioning(
        head,
        model.backward_decoder(),
        features,
        &mut StdRng::seed_from_u64(0),
    );
    Ok(batch
        .image_ids
        .iter()
        .zip(decoded)
        .map(|(&id, caption)| (id, data.tokenizer.decode(&caption.tokens)))
        .collect())
}
