//! The pretraining losses, each ignoring the padding id 0.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy over the positions whose target is not 0
/// (`nn.CrossEntropyLoss(ignore_index=0)`).
///
/// # Shapes
/// - `logits`: `[batch, T, V]`, `targets`: `[batch, T]` → `[1]`
pub fn cross_entropy_ignoring_padding<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let kept = targets.clone().not_equal_elem(0).float();
    let picked = log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim(2))
        .squeeze_dim::<2>(2);
    -(picked * kept.clone()).sum() / kept.sum()
}

/// The captioning loss: predicting `tokens[:, 1:]` from `logits[:, :-1]`.
///
/// # Shapes
/// - `logits`: `[batch, T, V]`, `tokens`: `[batch, T]` → `[1]`
pub fn next_token_loss<B: Backend>(
    logits: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let [batch, length, vocab] = logits.dims();
    cross_entropy_ignoring_padding(
        logits.slice([0..batch, 0..length - 1, 0..vocab]),
        tokens.slice([0..batch, 1..length]),
    )
}

/// The reference's token/multilabel classification loss: for each image, the
/// negative mean log-probability of its label set; averaged over the batch.
///
/// # Shapes
/// - `logits`: `[batch, V]`; `labels`: `[batch, W]` label ids right-padded
///   with 0 (ignored) → `[1]`
pub fn label_set_loss<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let kept = labels.clone().not_equal_elem(0).float();
    let picked = log_softmax(logits, 1).gather(1, labels);
    let per_image = (picked * kept.clone()).sum_dim(1) / kept.sum_dim(1).clamp_min(1.0);
    -per_image.mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use burn_flex::Flex;

    type B = Flex;

    #[test]
    fn padding_targets_do_not_count() {
        let device = Default::default();
        // Uniform logits over 4 classes: every kept position costs ln 4.
        let logits = Tensor::<B, 3>::zeros([2, 3, 4], &device);
        let targets =
            Tensor::<B, 2, Int>::from_data(TensorData::from([[1, 2, 0], [3, 0, 0]]), &device);
        let loss: f32 = cross_entropy_ignoring_padding(logits, targets).into_scalar();
        assert!((loss - 4f32.ln()).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn label_sets_average_per_image_then_over_the_batch() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_data(
            TensorData::from([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]),
            &device,
        );
        let labels = Tensor::<B, 2, Int>::from_data(TensorData::from([[1, 2], [2, 0]]), &device);
        let loss: f32 = label_set_loss(logits, labels).into_scalar();
        let z = 2f32.exp() + 2.0;
        let first = -((2f32.exp() / z).ln() + (1.0 / z).ln()) / 2.0;
        let second = 3f32.ln();
        assert!((loss - (first + second) / 2.0).abs() < 1e-5, "{loss}");
    }
}
