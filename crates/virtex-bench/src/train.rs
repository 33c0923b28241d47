//! `bench train`: the pretraining step of a config as the trainer runs it
//! ([`virtex_train::step::forward_backward`] on a loader-shaped batch, then
//! the optimiser's step), beside the same step in PyTorch
//! (`tools/bench/train_step.py`), measured in the same run.
//!
//! Each row runs in a child process of its own (`bench train-row`, through
//! the running executable), so its peak resident memory is its own; the
//! PyTorch twin runs likewise.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use virtex_data::batch::PretrainingBatch;
use virtex_data::caption::CaptionTokens;
use virtex_data::tasks::{TaskTargets, pad_batch};
use virtex_train::config::Config;
use virtex_train::device::{BackendTask, DeviceSpec};
use virtex_train::optim::{StepRates, VirtexOptimizer};
use virtex_train::step::forward_backward;
use virtex_train::worker::on_worker_thread;
use virtex_vision::{AutodiffVisionBackend, Precision};

use crate::report::{StepReport, bench_child, fmt_mb, measure_gpu, median, peak_rss_mb, run_child};
use crate::{available_threads, pytorch};

/// `bench train`.
#[derive(Debug, clap::Args)]
pub struct TrainBench {
    /// One config to measure [default: the reference's base config at batch
    /// 8, 224², and the bundled emoji config at batch 32, 64²].
    #[arg(long)]
    pub config: Option<String>,
    /// Override a config key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Images per step (with `--config`).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Image side (with `--config`).
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// `bench train-row`.
#[derive(Debug, clap::Args)]
pub struct TrainRowBench {
    /// Config, relative to the repository root or absolute.
    #[arg(long)]
    pub config: String,
    /// Override a config key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Images per step.
    #[arg(long)]
    pub batch: usize,
    /// Image side.
    #[arg(long)]
    pub size: usize,
    /// Timed steps.
    #[arg(long)]
    pub steps: usize,
    /// Device.
    #[arg(long)]
    pub device: DeviceSpec,
    /// Mixed precision (`AMP: true`; bf16 products on CUDA, f32 on the CPU).
    #[arg(long)]
    pub amp: bool,
}

/// Tokens per synthetic caption, `[SOS]` and `[EOS]` included (COCO captions
/// are 10–20 pieces long).
const CAPTION_TOKENS: usize = 22;

/// The rows `bench train` runs without `--config`: the reference's base
/// model at the reference's per-GPU image size, and the bundled config.
pub(crate) const STANDARD_ROWS: [(&str, usize, usize); 2] = [
    ("data/configs/_base_bicaptioning_R_50_L1_H1024.yaml", 8, 224),
    ("data/configs/emoji_bicaptioning.yaml", 32, 64),
];

impl TrainBench {
    /// Prints virtex-rs's row and PyTorch's (f32, and AMP on a GPU) per
    /// config, the configs and the PyTorch twin read from the checkout at `root`.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let rows: Vec<(String, usize, usize)> = match &self.config {
            Some(config) => vec![(config.clone(), self.batch, self.size)],
            None => STANDARD_ROWS
                .iter()
                .map(|&(c, b, s)| (c.to_string(), b, s))
                .collect(),
        };
        let threads = available_threads();
        let gemm = pytorch::gemm_gflops(root, threads);
        match gemm {
            Some(g) => println!(
                "ceiling: fp32 GEMM 2048³ through PyTorch, {threads} threads: {g:.0} GFLOP/s"
            ),
            None => println!("PyTorch not importable by python3: virtex-rs rows only"),
        }
        println!(
            "| config | batch | size | device | implementation | img/s | virtex-rs (same precision) ÷ this | peak RSS MB | peak GPU MB | GFLOP/step | % of GEMM ceiling (CPU) or model TFLOP/s (GPU) | first step s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (config, batch, size) in rows {
            let loaded = Config::load(Some(&root.join(&config)), &self.overrides)?;
            // f32, and on a GPU mixed precision too, for both implementations;
            // a row that fails is reported and left out.
            let mut twins = vec![false];
            if let Ok(Precision::Bf16) = self.device.precision(true) {
                twins.push(true);
            }
            let workload = pytorch::Workload {
                batch,
                size,
                steps: self.steps,
                device: self.device,
                threads,
            };
            let mut reports: Vec<(bool, StepReport)> = Vec::new();
            for &amp in &twins {
                match measure_gpu(self.device, || self.child_row(&config, batch, size, amp)) {
                    Ok(row) => reports.push((amp, row)),
                    Err(e) => eprintln!("virtex-rs row (AMP {amp}) failed: {e:#}"),
                }
            }
            let ours: Vec<(bool, f64)> = reports
                .iter()
                .map(|(amp, r)| (*amp, r.images_per_s))
                .collect();
            for &amp in &twins {
                match measure_gpu(self.device, || {
                    pytorch::train_row(root, &loaded, &workload, amp)
                }) {
                    Ok(row) => reports.push((amp, row)),
                    Err(e) => eprintln!("PyTorch row (AMP {amp}) failed: {e:#}"),
                }
            }
            let flops = reports.iter().find_map(|(_, r)| r.flops_per_step);
            let name = Path::new(&config)
                .file_stem()
                .map_or(config.clone(), |s| s.to_string_lossy().into_owned());
            for (amp, report) in &reports {
                // virtex-rs at the same precision ÷ this row.
                let ratio = ours
                    .iter()
                    .find(|(a, _)| a == amp)
                    .map_or("—".into(), |(_, o)| {
                        format!("{:.2}", o / report.images_per_s)
                    });
                // On the CPU, the share of the measured GEMM ceiling; on a
                // GPU, the model FLOP/s achieved (÷ the card's peak: MFU).
                let ceiling = match (flops, gemm) {
                    (Some(f), Some(g)) if self.device == DeviceSpec::Cpu => format!(
                        "{:.1}%",
                        100.0 * f * report.images_per_s / batch as f64 / (g * 1e9)
                    ),
                    (Some(f), _) if self.device != DeviceSpec::Cpu => format!(
                        "{:.1} TFLOP/s",
                        f * report.images_per_s / batch as f64 / 1e12
                    ),
                    _ => "—".into(),
                };
                println!(
                    "| {name} | {batch} | {size} | {} | {} | {:.2} | {ratio} | {} | {} | {} | {ceiling} | {} |",
                    self.device,
                    report.implementation,
                    report.images_per_s,
                    fmt_mb(report.peak_rss_mb),
                    fmt_mb(report.peak_gpu_mb),
                    flops.map_or("—".into(), |f| format!("{:.1}", f / 1e9)),
                    report
                        .first_step_s
                        .map_or("—".into(), |s| format!("{s:.1}")),
                );
            }
        }
        Ok(())
    }

    /// Runs one row in a child process and reads its report.
    fn child_row(
        &self,
        config: &str,
        batch: usize,
        size: usize,
        amp: bool,
    ) -> anyhow::Result<StepReport> {
        let mut command = bench_child(&["train-row", "--config", config])?;
        for set in &self.overrides {
            command.args(["--set", set]);
        }
        command.args([
            "--batch",
            &batch.to_string(),
            "--size",
            &size.to_string(),
            "--steps",
            &self.steps.to_string(),
            "--device",
            &self.device.to_string(),
        ]);
        if amp {
            command.arg("--amp");
        }
        run_child(command, &format!("bench train-row {config}"))
    }
}

impl TrainRowBench {
    /// Prints this process's [`StepReport`] as one JSON line (the config
    /// relative to the checkout at `root`).
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let config = Config::load(Some(&root.join(&self.config)), &self.overrides)?;
        let device = self.device;
        let step = TrainStep {
            config,
            batch: self.batch,
            size: self.size,
            steps: self.steps,
            precision: device.precision(self.amp)?,
        };
        let report = device.dispatch(step)??;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

/// Timed pretraining steps on one synthetic batch.
struct TrainStep {
    config: Config,
    batch: usize,
    size: usize,
    steps: usize,
    precision: Precision,
}

impl TrainStep {
    /// A batch as the loader makes one: normal images (drawn on `device`)
    /// and captions of random word pieces, framed by the loader's
    /// [`CaptionTokens`] (`[SOS] w… [EOS]`, the backward one reversed) and
    /// padded by its [`pad_batch`].
    fn batch<B: Backend>(&self, device: &B::Device) -> anyhow::Result<PretrainingBatch> {
        let vocab = self.config.data.vocab_size as u64;
        // A fixed LCG: the same captions on every backend and every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (4 + (state >> 33) % (vocab - 4)) as u32
        };
        let captions: Vec<CaptionTokens> = (0..self.batch)
            .map(|_| {
                let pieces: Vec<u32> = (0..CAPTION_TOKENS - 2).map(|_| next()).collect();
                CaptionTokens::from_pieces(
                    self.config.data.sos_index,
                    pieces,
                    self.config.data.eos_index,
                    self.config.data.max_caption_length,
                )
            })
            .collect();
        let rows = |pick: fn(&CaptionTokens) -> &[u32]| -> Vec<&[u32]> {
            captions.iter().map(pick).collect()
        };
        let (forward, max_len, lengths) = pad_batch(&rows(|c| &c.forward));
        let (backward, _, _) = pad_batch(&rows(|c| &c.backward));
        let images = Tensor::<B, 4>::random(
            [self.batch, 3, self.size, self.size],
            Distribution::Normal(0.0, 1.0),
            device,
        )
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(PretrainingBatch {
            image_ids: (0..self.batch as u64).collect(),
            images,
            size: self.size,
            forward,
            backward,
            max_len,
            lengths,
            targets: TaskTargets::Captioning,
        })
    }
}

impl BackendTask for TrainStep {
    type Output = anyhow::Result<StepReport>;

    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output {
        // Set up as the trainer sets up a fresh run.
        B::seed(&device, self.config.random_seed);
        let mut model = self.config.model_config().init::<B>(&device)?;
        let frozen = self.config.model.visual.frozen;
        if frozen {
            model.visual = model.visual.no_grad();
        }
        let mut optimizer = VirtexOptimizer::new(&model, &self.config.optim)?;
        let mut model = model.with_precision(self.precision);
        let batch = self.batch::<B::InnerBackend>(&device)?;
        let rates = StepRates {
            cnn_lr: self.config.optim.cnn_lr,
            lr: self.config.optim.lr,
        };
        let mut times = Vec::new();
        let mut first_step_s = None;
        // One untimed warm-up step (kernel autotuning on GPU, allocator on CPU).
        for step in 0..=self.steps {
            let start = Instant::now();
            // The trainer's step, on one of rayon's threads as it runs it:
            // the batch to the device, forward and backward, then the
            // optimiser's step.
            let gradients = on_worker_thread(|| forward_backward(&model, &batch, &device, frozen))?;
            model = on_worker_thread(|| optimizer.step(model, gradients.grads, rates)).0;
            B::sync(&device)?;
            match step {
                0 => first_step_s = Some(start.elapsed().as_secs_f64()),
                _ => times.push(start.elapsed().as_secs_f64()),
            }
        }
        let s_per_step = median(times);
        Ok(StepReport {
            implementation: match self.precision {
                Precision::F32 => format!("virtex-rs {}", env!("CARGO_PKG_VERSION")),
                Precision::Bf16 => format!("virtex-rs {} AMP bf16", env!("CARGO_PKG_VERSION")),
            },
            s_per_step,
            images_per_s: self.batch as f64 / s_per_step,
            peak_rss_mb: peak_rss_mb(),
            peak_gpu_mb: None,
            flops_per_step: None,
            first_step_s,
        })
    }
}
