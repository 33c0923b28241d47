//! `gpu-check`: the prepared GPU measurement, `bench train` on the
//! reference's base config (R-50 + L1_H1024 bicaptioning) at 224², beside
//! PyTorch f32 and AMP; images/s and peak GPU memory. Smaller shapes
//! (`--size`, `--batch`) rehearse it on a software GPU (`--device wgpu`).

use std::path::Path;

use virtex_train::device::DeviceSpec;

use crate::train::{STANDARD_ROWS, TrainBench};

/// `gpu-check`.
#[derive(Debug, clap::Args)]
pub struct GpuCheck {
    /// The GPU: `cuda[:N]`, or `wgpu[:N|:cpu]` (no PyTorch rows there).
    #[arg(long, default_value = "cuda")]
    pub device: DeviceSpec,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Image side.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
}

impl GpuCheck {
    /// Prints the rows of [`TrainBench`] for this GPU, with the configs and
    /// PyTorch twin of the checkout at `root`.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        println!(
            "GPU check: {} steps of {} at batch {}, {}², on {}",
            self.steps, STANDARD_ROWS[0].0, self.batch, self.size, self.device
        );
        TrainBench {
            config: Some(STANDARD_ROWS[0].0.to_string()),
            overrides: Vec::new(),
            batch: self.batch,
            size: self.size,
            steps: self.steps,
            device: self.device,
        }
        .run(root)
    }
}
