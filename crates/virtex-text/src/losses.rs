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
    let picked = target_log_probs(logits, targets);
    -(picked * kept.clone()).sum() / kept.sum()
}

/// `log p(target)` at each position: `[batch, T, V]` logits, `[batch, T]` targets → `[batch, T]`.
fn target_log_probs<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim(2))
        .squeeze_dim::<2>(2)
}

/// Each caption's log-probability under teacher forcing: the sum over its
/// positions of `log p(tokens[t + 1] | tokens[..=t])` from `logits[t]`, the
/// padding id 0 left out (what [`next_token_loss`] averages, per caption).
///
/// # Shapes
/// - `logits`: `[batch, T, V]`, `tokens`: `[batch, T]` → `[batch]`
pub fn caption_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let [batch, length, vocab] = logits.dims();
    let targets = tokens.slice([0..batch, 1..length]);
    let kept = targets.clone().not_equal_elem(0).float();
    let picked = target_log_probs(logits.slice([0..batch, 0..length - 1, 0..vocab]), targets);
    (picked * kept).sum_dim(1).squeeze_dim(1)
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
    use burn::tensor::{Distribution, TensorData};
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

    #[test]
    fn caption_log_probs_sum_what_the_loss_averages() {
        let device = Default::default();
        let logits = Tensor::<B, 3>::random([3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        // Captions of 5, 3 and 2 tokens, right-padded with 0: 4, 2 and 1 predictions.
        let tokens = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![1i64, 4, 5, 6, 2, 1, 3, 2, 0, 0, 1, 2, 0, 0, 0], [3, 5]),
            &device,
        );
        let each = caption_log_probs(logits.clone(), tokens.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (row, predictions) in [(0, 4), (1, 2), (2, 1)] {
            let mean = next_token_loss(
                logits.clone().narrow(0, row, 1),
                tokens.clone().narrow(0, row, 1),
            )
            .into_scalar();
            assert!(
                (each[row] + mean * predictions as f32).abs() < 1e-5,
                "row {row}: {} against {}",
                each[row],
                -mean * predictions as f32
            );
        }
    }
}
