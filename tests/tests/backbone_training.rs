//! A backbone trains end to end on the backend chosen at the edge.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor};
use virtex_train::device::{BackendTask, DeviceSpec};
use virtex_vision::{AutodiffVisionBackend, ResNetArch, ResNetConfig};

/// Fits a ResNet-18 with a 4-way classifier to one fixed batch.
struct Overfit {
    steps: usize,
}

impl BackendTask for Overfit {
    type Output = Vec<f32>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Vec<f32> {
        B::seed(&device, 0);
        let mut model = ResNetConfig::virtex(ResNetArch::Resnet18)
            .with_num_classes(Some(4))
            .init::<B>(&device);
        let mut optim = SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let images =
            Tensor::<B, 4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let labels = Tensor::<B, 1, Int>::from_ints([0, 1, 2, 3], &device);
        (0..self.steps)
            .map(|_| {
                let logits = model.forward_logits(images.clone()).unwrap();
                let loss = loss_fn.forward(logits, labels.clone());
                let value = loss.clone().into_scalar().elem::<f32>();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(0.05, model.clone(), grads);
                value
            })
            .collect()
    }
}

#[test]
fn resnet18_overfits_one_batch_on_the_cpu_backend() {
    let losses = DeviceSpec::Cpu.dispatch(Overfit { steps: 8 }).unwrap();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < 0.5 * first,
        "loss should fall on a fixed batch: {losses:?}"
    );
}
