//! The boundary between the loader and the model: a [`PretrainingBatch`]
//! of plain vectors becomes a [`PretrainingInput`] of tensors on a device.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use virtex_data::batch::PretrainingBatch;
use virtex_data::tasks::TaskTargets;
use virtex_text::models::{PretrainingInput, PretrainingTargets};

fn int_tensor<B: Backend>(values: &[u32], rows: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
    let width = values.len() / rows.max(1);
    Tensor::from_data(TensorData::new(values, [rows, width]), device)
}

/// A loader batch as the model's input on `device`.
///
/// # Shapes
/// - images `[batch, 3, size, size]`; token ids `[batch, T]`; labels `[batch, W]`
pub fn model_input<B: Backend>(
    batch: &PretrainingBatch,
    device: &B::Device,
) -> PretrainingInput<B> {
    let rows = batch.len();
    let images = Tensor::from_data(
        TensorData::new(batch.images.clone(), [rows, 3, batch.size, batch.size]),
        device,
    );
    let targets = match &batch.targets {
        TaskTargets::Captioning => PretrainingTargets::Captions,
        TaskTargets::Labels { labels, .. } => {
            PretrainingTargets::Labels(int_tensor(labels, rows, device))
        }
        TaskTargets::MaskedLm { tokens, labels } => PretrainingTargets::MaskedLm {
            tokens: int_tensor(tokens, rows, device),
            labels: int_tensor(labels, rows, device),
        },
    };
    PretrainingInput {
        images,
        forward: int_tensor(&batch.forward, rows, device),
        backward: int_tensor(&batch.backward, rows, device),
        lengths: batch.lengths.clone(),
        targets,
    }
}
