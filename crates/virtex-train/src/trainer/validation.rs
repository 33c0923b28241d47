//! The validation of a run (rank 0's): the mean loss and its terms over the
//! validation batches, and captions of the first images.

use burn::tensor::ElementConversion;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use virtex_text::{PretrainingModel, PretrainingTask};
use virtex_vision::VisionBackend;

use crate::config::Config;
use crate::data::Data;
use crate::error::TrainError;
use crate::model_input::model_input;

/// Validation images whose captions (by `MODEL.DECODER`) are logged, and
/// shown with their references in the run's contact sheet.
const LOGGED_CAPTIONS: usize = 8;

/// One validation pass.
pub(super) struct Validation {
    /// Mean loss.
    pub loss: f64,
    /// Mean of each component, as `val_<name>`.
    pub parts: Map<String, Value>,
    /// Captions of the first images (captioning models), by image id.
    pub captions: Vec<(u64, String)>,
}

/// Mean loss (and components) over the validation batches, in eval mode,
/// plus captions of the first images for captioning models.
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
    let mut captions = Vec::new();
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
        let captioning = matches!(
            config.model.name,
            PretrainingTask::Bicaptioning | PretrainingTask::Captioning
        );
        if index == 0
            && captioning
            && let Some(head) = model.transformer_head()
        {
            let count = LOGGED_CAPTIONS.min(batch.len());
            let features = model.visual.forward(input.images.narrow(0, 0, count));
            let decoder = config.caption_decoder(None);
            let decoded = decoder.decode(head, features, &mut StdRng::seed_from_u64(0));
            captions = batch
                .image_ids
                .iter()
                .zip(decoded)
                .map(|(&id, c)| (id, data.tokenizer.decode(&c.tokens)))
                .collect();
        }
    }
    for value in parts.values_mut() {
        *value = json!(value.as_f64().unwrap_or(0.0) / limit as f64);
    }
    Ok(Validation {
        loss: total / limit as f64,
        parts,
        captions,
    })
}
