//! One training step's forward and backward on one device. Data parallelism
//! happens between processes ([`crate::distributed`]): each rank runs this
//! step on its share of the global batch and the ranks then average the
//! gradients, as the reference's DDP does.

use crate::model_input::model_input;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use virtex_data::batch::PretrainingBatch;
use virtex_text::PretrainingModel;
use virtex_text::models::TargetsMismatch;
use virtex_vision::{AutodiffVisionBackend, FrozenResNet};

/// The outcome of one forward + backward. The loss and its terms stay on the
/// device (`[1]`, detached from the graph): reading them is left to the
/// caller ([`crate::readings`]), so a step needs no transfer to the host.
pub struct StepGradients<B: AutodiffBackend> {
    /// The batch's loss.
    pub loss: Tensor<B::InnerBackend, 1>,
    /// Each loss component, by name.
    pub components: Vec<(&'static str, Tensor<B::InnerBackend, 1>)>,
    /// The gradients of the loss.
    pub grads: GradientsParams,
}

/// Forward and backward of `batch` on `device`. With `frozen_visual`
/// (`MODEL.VISUAL.FROZEN`) the backbone runs in inference mode and only the
/// textual heads get gradients.
pub fn forward_backward<B: AutodiffVisionBackend>(
    model: &PretrainingModel<B>,
    batch: &PretrainingBatch,
    device: &B::Device,
    frozen_visual: bool,
) -> Result<StepGradients<B>, TargetsMismatch> {
    let input = model_input::<B>(batch, device);
    let out = if frozen_visual {
        let features = FrozenResNet::new(model.visual.clone()).forward(input.images.clone());
        model.forward_features(features, &input)?
    } else {
        model.forward(&input)?
    };
    let components = out
        .components
        .into_iter()
        .map(|(name, term)| (name, term.inner()))
        .collect();
    let grads = GradientsParams::from_grads(out.loss.backward(), model);
    Ok(StepGradients {
        loss: out.loss.inner(),
        components,
        grads,
    })
}
