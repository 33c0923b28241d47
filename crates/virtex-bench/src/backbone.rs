//! `bench backbone`: a ResNet classification training step (SGD with
//! momentum, cross-entropy over a 1000-way fc) and an eval forward, on each of
//! burn's CPU backends or on one device.

use std::time::Instant;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Distribution, Int, Tensor};
use burn_flex::Flex;
use clap::ValueEnum;
use virtex_train::device::{BackendTask, DeviceSpec};
use virtex_vision::{AutodiffVisionBackend, ResNetArch, ResNetConfig};

use crate::report::median;

/// `bench backbone`.
#[derive(Debug, clap::Args)]
pub struct BackboneBench {
    /// Backbone architecture.
    #[arg(long, default_value = "resnet50")]
    pub arch: ResNetArch,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// CPU backends to compare (ndarray is >10x slower: minutes per step).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [CpuBackendName::Flex])]
    pub backends: Vec<CpuBackendName>,
    /// Run on this device instead of comparing CPU backends.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
}

/// CPU backends burn offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CpuBackendName {
    /// burn's pure-Rust Flex backend (the default).
    Flex,
    /// burn's NdArray backend.
    Ndarray,
}

/// Timings of one backend.
struct StepTimes {
    train_s: Vec<f64>,
    eval_s: Vec<f64>,
}

impl BackboneBench {
    /// Prints one row per backend.
    pub fn run(self) -> anyhow::Result<()> {
        println!(
            "{} training step (SGD m=0.9, CE over fc-1000), batch {}, {}x{}, {} timed steps after 1 warm-up",
            self.arch, self.batch, self.size, self.size, self.steps
        );
        println!("| backend | train s/step (median) | train images/s | eval fwd s (median) |");
        println!("|---|---|---|---|");
        let rows: Vec<(String, StepTimes)> = match self.device {
            Some(device) => vec![(device.to_string(), device.dispatch(self.task())?)],
            None => self
                .backends
                .iter()
                .map(|backend| {
                    let times = match backend {
                        CpuBackendName::Flex => {
                            self.task().run::<Autodiff<Flex>>(Default::default())
                        }
                        CpuBackendName::Ndarray => {
                            self.task().run::<Autodiff<NdArray>>(Default::default())
                        }
                    };
                    (format!("{backend:?}"), times)
                })
                .collect(),
        };
        for (name, times) in rows {
            let train = median(times.train_s);
            println!(
                "| {name} | {train:.2} | {:.2} | {:.2} |",
                self.batch as f64 / train,
                median(times.eval_s)
            );
        }
        Ok(())
    }

    fn task(&self) -> BackboneStep {
        BackboneStep {
            config: ResNetConfig::virtex(self.arch).with_num_classes(Some(1000)),
            batch: self.batch,
            size: self.size,
            steps: self.steps,
        }
    }
}

/// One training step and one eval forward of a ResNet, timed.
struct BackboneStep {
    config: ResNetConfig,
    batch: usize,
    size: usize,
    steps: usize,
}

impl BackendTask for BackboneStep {
    type Output = StepTimes;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> StepTimes {
        let mut model = self.config.init::<B>(&device);
        let mut optim = SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let images = Tensor::<B, 4>::random(
            [self.batch, 3, self.size, self.size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let labels = Tensor::<B, 1, Int>::from_ints(
            (0..self.batch as i32)
                .map(|i| i * 37 % 1000)
                .collect::<Vec<_>>()
                .as_slice(),
            &device,
        );

        let mut times = StepTimes {
            train_s: Vec::new(),
            eval_s: Vec::new(),
        };
        for step in 0..=self.steps {
            let start = Instant::now();
            let logits = model.forward_logits(images.clone()).expect("built with fc");
            let loss = loss_fn.forward(logits, labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.01, model, grads);
            // Wait for the device to finish before stopping the clock.
            let _ = B::sync(&device);
            if step > 0 {
                times.train_s.push(start.elapsed().as_secs_f64());
            }

            let eval_model = model.valid();
            let start = Instant::now();
            let features = eval_model.forward_pooled(images.clone().inner());
            let _ = features.into_data();
            if step > 0 {
                times.eval_s.push(start.elapsed().as_secs_f64());
            }
        }
        times
    }
}
