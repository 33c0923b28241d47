//! `Autodiff<B>` as a [`VisionBackend`]: BatchNorm is one node of the graph,
//! whose backward is the inner backend's
//! [`VisionBackend::batch_norm_train_backward`].

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::{BatchNormForward, VisionBackend};

/// The backward of one BatchNorm node.
#[derive(Debug)]
struct BatchNormBackward;

/// What the backward keeps: the input, γ, the batch mean and variance, ε.
type BatchNormState<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    f64,
);

impl<B: VisionBackend> Backward<B, 3> for BatchNormBackward {
    type State = BatchNormState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, mean, var, epsilon) = ops.state;
        let gradients = B::batch_norm_train_backward(x, gamma, mean, var, epsilon, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, gradients.x);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, gradients.gamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, gradients.beta);
        }
    }
}

impl<B: VisionBackend, C: CheckpointStrategy> VisionBackend for Autodiff<B, C> {
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormForward<Self> {
        let prepared = BatchNormBackward
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful();
        let forward = B::batch_norm_train(
            x.primitive.clone(),
            gamma.primitive.clone(),
            beta.primitive,
            epsilon,
        );
        // The statistics leave the graph: they only update running averages.
        let mean = Self::from_inner(forward.mean.clone());
        let var = Self::from_inner(forward.var.clone());
        let output = match prepared {
            OpsKind::Tracked(prep) => prep.finish(
                (
                    x.primitive,
                    gamma.primitive,
                    forward.mean,
                    forward.var,
                    epsilon,
                ),
                forward.output,
            ),
            OpsKind::UnTracked(prep) => prep.finish(forward.output),
        };
        BatchNormForward { output, mean, var }
    }
}
