//! A backbone with a linear classifier, trained on an ImageFolder dataset
//! as `scripts/clf_linear.py` trains it: a linear probe on a frozen backbone
//! (ImageNet protocol: BN statistics frozen, no feature normalisation) or
//! end-to-end fine-tuning (iNaturalist protocol), with the pretraining's
//! optimiser and schedules.
//!
//! The head is `Linear(C → classes)` with weights N(0, 0.01) and bias 0.
//! Training crops are random resized crops (scale 0.08–1, ratio 3/4–4/3)
//! with horizontal flips; evaluation resizes the shorter side to 256/224 of
//! the crop and takes the centre crop. Every parameter is trained at
//! `OPTIM.LR` (the reference's classifier has no `cnn` names, so `CNN_LR`
//! never applies).

use std::path::PathBuf;

use burn::module::{AutodiffModule, Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;
use virtex_data::augment::TrainAugmentation;
use virtex_data::images::{EvalTransform, ImageError, load_rgb, to_normalized_chw};
use virtex_train::config::Config;
use virtex_train::optim::schedule::LrSchedule;
use virtex_train::optim::{StepRates, VirtexOptimizer};
use virtex_train::progress::Progress;
use virtex_vision::{AutodiffVisionBackend, Precision, ResNet, VisionBackend};

use super::image_folder::ImageFolder;
use super::{ClassificationError, TransferMode};

/// A backbone with a linear classifier on its pooled features.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// The ResNet.
    pub visual: ResNet<B>,
    /// `Linear(C → classes)`.
    pub fc: Linear<B>,
}

/// `Linear(channels → classes)`, weights N(0, 0.01), bias 0 (`clf_linear.py`).
pub fn linear_head<B: Backend>(channels: usize, classes: usize, device: &B::Device) -> Linear<B> {
    let mut fc = LinearConfig::new(channels, classes).init::<B>(device);
    fc.weight = Param::from_tensor(Tensor::random(
        [channels, classes],
        Distribution::Normal(0.0, 0.01),
        device,
    ));
    fc.bias = Some(Param::from_tensor(Tensor::zeros([classes], device)));
    fc
}

impl<B: VisionBackend> Classifier<B> {
    /// Logits `[batch, classes]` of images `[batch, 3, S, S]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        // Through `Precision` for its single-row guard (a last batch of one).
        Precision::F32.linear(&self.fc, self.visual.forward_pooled(images))
    }
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationResult {
    /// How the backbone was treated.
    pub mode: TransferMode,
    /// Top-1 accuracy on the tested split, in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy (top-k with k = min(5, classes)).
    pub top5: f64,
    /// Mean training loss over the first and the last 10% of iterations.
    pub loss_start_end: (f64, f64),
    /// Iterations run.
    pub iterations: u64,
}

/// Images of `samples`, preprocessed in parallel, as `[n, 3, size, size]`.
fn batch_tensor<B: Backend>(
    samples: &[(PathBuf, usize)],
    size: u32,
    augment: Option<(&TrainAugmentation, u64)>,
    device: &B::Device,
) -> Result<(Tensor<B, 4>, Tensor<B, 1, Int>), ClassificationError> {
    let pixels: Vec<Vec<f32>> = samples
        .par_iter()
        .enumerate()
        .map(|(i, (path, _))| {
            let image = load_rgb(path)?;
            let image = match augment {
                Some((augmentation, seed)) => {
                    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
                    augmentation.apply(&image, "", &mut rng).0
                }
                None => EvalTransform::downstream(size).apply(&image),
            };
            Ok(to_normalized_chw(&image))
        })
        .collect::<Result<_, ImageError>>()?;
    let n = samples.len();
    let s = size as usize;
    let images = Tensor::from_data(TensorData::new(pixels.concat(), [n, 3, s, s]), device);
    let labels: Vec<i64> = samples.iter().map(|(_, c)| *c as i64).collect();
    Ok((
        images,
        Tensor::from_data(TensorData::new(labels, [n]), device),
    ))
}

/// Top-1 and top-k correct counts of `logits` `[n, classes]` for `labels`.
fn correct<B: Backend>(logits: Tensor<B, 2>, labels: &[usize], k: usize) -> (usize, usize) {
    let [n, classes] = logits.dims();
    let values: Vec<f32> = logits.into_data().to_vec().expect("f32 logits");
    let (mut top1, mut topk) = (0, 0);
    for (row, &label) in values.chunks_exact(classes).zip(labels).take(n) {
        let target = row[label];
        let rank = row.iter().filter(|&&v| v > target).count();
        top1 += usize::from(rank == 0);
        topk += usize::from(rank < k);
    }
    (top1, topk)
}

/// Trains a classifier on `train` and reports accuracy on `val`.
///
/// `config` supplies `OPTIM.*` (batch size, SGD/AdamW, LR, weight decay,
/// schedule, iterations), `DATA.IMAGE_CROP_SIZE` and `RANDOM_SEED`;
/// `MODEL.VISUAL.FROZEN` picks the linear probe (true) or fine-tuning.
pub fn train_classifier<B: AutodiffVisionBackend>(
    backbone: ResNet<B>,
    config: &Config,
    train: &ImageFolder,
    val: &ImageFolder,
    device: &B::Device,
) -> Result<ClassificationResult, ClassificationError> {
    B::seed(device, config.random_seed);
    let classes = train.classes.len();
    let size = config.data.image_crop_size;
    let augmentation = TrainAugmentation {
        scale: (0.08, 1.0),
        jitter_probability: 0.0,
        ..TrainAugmentation::new(size)
    };
    let mode = if config.model.visual.frozen {
        TransferMode::LinearProbe
    } else {
        TransferMode::FineTune
    };
    let fc = linear_head::<B>(backbone.out_channels(), classes, device);
    let schedule = LrSchedule::new(&config.optim);
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let batch_size = config.optim.batch_size.min(train.samples.len());
    let per_epoch = (train.samples.len() / batch_size).max(1);
    let mut order: Vec<usize> = Vec::new();
    let mut losses = Vec::new();

    // The two modes differ in what trains: the head alone on features of
    // the frozen (inference-backend) backbone, or the whole classifier.
    let frozen = (mode == TransferMode::LinearProbe).then(|| backbone.valid());
    let mut model = Classifier {
        visual: backbone,
        fc,
    };
    let mut head_optimizer = match frozen {
        Some(_) => Some(VirtexOptimizer::new(&model.fc, &config.optim)?),
        None => None,
    };
    let mut full_optimizer = match frozen {
        Some(_) => None,
        None => Some(VirtexOptimizer::new(&model, &config.optim)?),
    };
    let mut progress = Progress::new(
        "iteration",
        0,
        config.optim.num_iterations,
        config.train.log_every,
    );
    for iteration in 0..config.optim.num_iterations {
        let position = iteration as usize % per_epoch;
        if position == 0 {
            order = (0..train.samples.len()).collect();
            let epoch = iteration / per_epoch as u64;
            order.shuffle(&mut StdRng::seed_from_u64(config.random_seed ^ epoch));
        }
        let samples: Vec<(PathBuf, usize)> = order[position * batch_size..][..batch_size]
            .iter()
            .map(|&i| train.samples[i].clone())
            .collect();
        let seed = config
            .random_seed
            .wrapping_add(iteration.wrapping_mul(1_000_003));
        let lr = config.optim.lr * schedule.multiplier(iteration);
        let rates = StepRates { cnn_lr: lr, lr };
        let loss = match &frozen {
            Some(frozen) => {
                let (images, labels) = batch_tensor::<B::InnerBackend>(
                    &samples,
                    size,
                    Some((&augmentation, seed)),
                    device,
                )?;
                let features = Tensor::<B, 2>::from_inner(frozen.forward_pooled(images));
                let loss = loss_fn.forward(
                    Precision::F32.linear(&model.fc, features),
                    Tensor::from_inner(labels),
                );
                let value = loss.clone().into_scalar().elem::<f64>();
                let grads = GradientsParams::from_grads(loss.backward(), &model.fc);
                let optimizer = head_optimizer.as_mut().expect("probe optimiser");
                model.fc = optimizer.step(model.fc, grads, rates).0;
                value
            }
            None => {
                let (images, labels) =
                    batch_tensor::<B>(&samples, size, Some((&augmentation, seed)), device)?;
                let loss = loss_fn.forward(model.forward(images), labels);
                let value = loss.clone().into_scalar().elem::<f64>();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let optimizer = full_optimizer.as_mut().expect("fine-tuning optimiser");
                model = optimizer.step(model, grads, rates).0;
                value
            }
        };
        losses.push(loss);
        progress.step(iteration + 1, &[("loss", loss), ("lr", lr)]);
        if progress.stop_requested() {
            break;
        }
    }
    progress.finish();

    let eval = model.valid();
    let k = 5.min(classes);
    let (mut top1, mut topk) = (0, 0);
    for chunk in val.samples.chunks(batch_size.max(1)) {
        let (images, _) = batch_tensor::<B::InnerBackend>(chunk, size, None, device)?;
        let labels: Vec<usize> = chunk.iter().map(|(_, c)| *c).collect();
        let (a, b) = correct(eval.forward(images), &labels, k);
        top1 += a;
        topk += b;
    }
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    Ok(ClassificationResult {
        mode,
        top1: top1 as f64 / val.samples.len() as f64,
        top5: topk as f64 / val.samples.len() as f64,
        loss_start_end: (
            mean(&losses[..tenth.min(losses.len())]),
            mean(&losses[losses.len().saturating_sub(tenth)..]),
        ),
        iterations: losses.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn_flex::Flex;

    #[test]
    fn top_k_counts_ranks() {
        let logits =
            Tensor::<Flex, 2>::from_floats([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]], &Default::default());
        // Row 0: label 1 is the top; row 1: label 2 ranks second.
        assert_eq!(correct(logits, &[1, 2], 2), (1, 2));
    }

    #[test]
    fn head_is_initialised_as_the_reference() {
        let fc = linear_head::<Autodiff<Flex>>(512, 10, &Default::default());
        let w: Vec<f32> = fc.weight.val().into_data().to_vec().unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 0.01).abs() < 0.001, "{std}");
        let b: Vec<f32> = fc.bias.unwrap().val().into_data().to_vec().unwrap();
        assert!(b.iter().all(|&v| v == 0.0));
    }
}
