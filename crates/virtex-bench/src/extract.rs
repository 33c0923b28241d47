//! `bench extract`: frozen-backbone feature extraction (eval
//! forward, global average pool, L2 normalisation), beside PyTorch's.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::{Distribution, Tensor};
use virtex_train::device::{BackendTask, DeviceSpec};
use virtex_vision::{AutodiffVisionBackend, ResNetArch, ResNetConfig};

use crate::report::median;
use crate::{available_threads, pytorch};

/// `bench extract`.
#[derive(Debug, clap::Args)]
pub struct ExtractBench {
    /// Backbone architecture.
    #[arg(long, default_value = "resnet50")]
    pub arch: ResNetArch,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Image side.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Timed passes (after one untimed warm-up).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

impl ExtractBench {
    /// Prints virtex-rs's and PyTorch's images/s and their ratio.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let threads = available_threads();
        let rust_s = median(self.device.dispatch(Extraction {
            config: ResNetConfig::virtex(self.arch),
            batch: self.batch,
            size: self.size,
            steps: self.steps,
        })?);
        let rust = self.batch as f64 / rust_s;
        let torch = pytorch::extract_row(
            root,
            self.arch.name(),
            &pytorch::Workload {
                batch: self.batch,
                size: self.size,
                steps: self.steps,
                device: self.device,
                threads,
            },
        );
        println!("| backbone | batch | size | device | virtex-rs img/s | PyTorch img/s | ratio |");
        println!("|---|---|---|---|---|---|---|");
        let (torch_ips, ratio) = match torch {
            Ok(t) => (
                format!("{:.2}", t.images_per_s),
                format!("{:.2}", rust / t.images_per_s),
            ),
            Err(e) => {
                eprintln!("PyTorch row failed: {e:#}");
                ("—".into(), "—".into())
            }
        };
        println!(
            "| {} | {} | {} | {} | {rust:.2} | {torch_ips} | {ratio} |",
            self.arch, self.batch, self.size, self.device
        );
        Ok(())
    }
}

/// Timed eval forwards of a frozen backbone.
struct Extraction {
    config: ResNetConfig,
    batch: usize,
    size: usize,
    steps: usize,
}

impl BackendTask for Extraction {
    type Output = Vec<f64>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Vec<f64> {
        let model = self.config.init::<B>(&device).valid();
        let images = Tensor::<B::InnerBackend, 4>::random(
            [self.batch, 3, self.size, self.size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut times = Vec::new();
        for step in 0..=self.steps {
            let start = Instant::now();
            let features = model.forward_pooled(images.clone());
            let norm = features.clone().powi_scalar(2).sum_dim(1).sqrt();
            let _ = (features / norm).into_data();
            if step > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times
    }
}
