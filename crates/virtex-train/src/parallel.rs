//! Data parallelism over several devices, as the reference's DDP does it,
//! built from burn's own multi-device primitives (`Module::fork`,
//! `GradientsParams::to_device`): the batch is split into one shard per
//! device, each replica computes its shard's mean loss and gradients, the
//! gradients are averaged on the first device and the first device's model
//! takes the optimiser step (the next step forks it again).
//!
//! BatchNorm normalises with each shard's own statistics (per-GPU BN, like
//! the reference's); the first device's running statistics are the ones
//! kept, as DDP broadcasts rank 0's buffers.

use crate::batch::model_input;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use virtex_data::loader::PretrainingBatch;
use virtex_text::PretrainingModel;
use virtex_text::models::TargetsMismatch;
use virtex_vision::FrozenResNet;

/// The outcome of one forward + backward over all shards. The loss and its
/// terms stay on the first device (`[1]`, detached from the graph): reading
/// them is left to the caller ([`crate::readings`]), so a step needs no
/// transfer to the host.
pub struct StepGradients<B: AutodiffBackend> {
    /// Mean of the shards' losses.
    pub loss: Tensor<B::InnerBackend, 1>,
    /// Mean of each loss component over the shards.
    pub components: Vec<(&'static str, Tensor<B::InnerBackend, 1>)>,
    /// Gradients averaged over the shards, on the first device.
    pub grads: GradientsParams,
}

/// Forward and backward of `batch` split over `devices` (at least one; with
/// one device this is the plain single-device step). With `frozen_visual`
/// (`MODEL.VISUAL.FROZEN`) the backbone runs in inference mode and only the
/// textual heads get gradients.
pub fn forward_backward<B: AutodiffBackend>(
    model: &PretrainingModel<B>,
    batch: &PretrainingBatch,
    devices: &[B::Device],
    frozen_visual: bool,
) -> Result<StepGradients<B>, TargetsMismatch> {
    let main = &devices[0];
    let shards = batch.split(devices.len());
    let mut loss: Option<Tensor<B::InnerBackend, 1>> = None;
    let mut components: Vec<(&'static str, Tensor<B::InnerBackend, 1>)> = Vec::new();
    let mut all_grads = Vec::with_capacity(shards.len());
    for (index, (shard, device)) in shards.iter().zip(devices).enumerate() {
        // The first shard runs on the model itself, so its BatchNorm
        // running statistics are the ones that persist.
        let replica = (index > 0).then(|| model.clone().fork(device));
        let replica = replica.as_ref().unwrap_or(model);
        let input = model_input::<B>(shard, device);
        let out = if frozen_visual {
            let features = FrozenResNet::new(replica.visual.clone()).forward(input.images.clone());
            replica.forward_features(features, &input)?
        } else {
            replica.forward(&input)?
        };
        let on_main = |value: Tensor<B, 1>| value.inner().to_device(main);
        let shard_loss = on_main(out.loss.clone());
        loss = Some(match loss.take() {
            Some(sum) => sum + shard_loss,
            None => shard_loss,
        });
        for (k, (name, term)) in out.components.into_iter().enumerate() {
            let value = on_main(term);
            match components.get_mut(k) {
                Some((_, sum)) => *sum = sum.clone() + value,
                None => components.push((name, value)),
            }
        }
        let grads = GradientsParams::from_grads(out.loss.backward(), replica);
        all_grads.push(if index > 0 {
            grads.to_device(main, replica)
        } else {
            grads
        });
    }
    let parts = all_grads.len() as f64;
    for (_, sum) in &mut components {
        *sum = sum.clone().div_scalar(parts);
    }
    let grads = if all_grads.len() == 1 {
        all_grads.pop().expect("one shard")
    } else {
        let mut mean = Mean {
            shards: all_grads,
            out: GradientsParams::new(),
        };
        model.visit(&mut mean);
        mean.out
    };
    Ok(StepGradients {
        loss: loss.expect("at least one shard").div_scalar(parts),
        components,
        grads,
    })
}

/// Averages each parameter's gradient over the shards.
struct Mean {
    shards: Vec<GradientsParams>,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Mean {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id = param.id;
        let grads: Vec<Tensor<B::InnerBackend, D>> = self
            .shards
            .iter_mut()
            .filter_map(|g| g.remove::<B::InnerBackend, D>(id))
            .collect();
        let count = grads.len();
        if let Some(sum) = grads.into_iter().reduce(|a, b| a + b) {
            self.out.register(id, sum.div_scalar(count as f64));
        }
    }
}
