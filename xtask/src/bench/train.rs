//! `cargo xtask bench train`: the pretraining step (forward + backward +
//! optimiser step) of a config, beside the same step in PyTorch
//! (`tools/bench/train_step.py`), measured in the same run.
//!
//! Each row runs in a child process of its own (`bench train-row`), so its
//! peak resident memory is its own; the PyTorch twin runs likewise.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use virtex_text::TextualHeadName;
use virtex_text::models::PretrainingInput;
use virtex_train::config::{Config, OptimizerName};
use virtex_train::device::{BackendTask, DeviceSpec};
use virtex_train::optim::{StepRates, VirtexOptimizer};

use super::{median, peak_rss_mb, pytorch};
use crate::flags::{GpuCheck, TrainBench, TrainRowBench};
use crate::project_root;

/// Tokens per synthetic caption, `[SOS]` and `[EOS]` included (COCO captions
/// are 10–20 pieces long).
const CAPTION_TOKENS: usize = 22;

/// One measured row, as both implementations print it (one JSON line).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct StepReport {
    /// `virtex-rs …` or `pytorch …`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Median seconds per step.
    pub s_per_step: f64,
    /// Images per second at that median.
    pub images_per_s: f64,
    /// Peak resident memory of the process.
    pub peak_rss_mb: Option<f64>,
    /// Peak GPU memory above the level before the run (nvidia-smi).
    #[serde(default)]
    pub peak_gpu_mb: Option<f64>,
    /// FLOPs of one step (PyTorch's `FlopCounterMode`; CPU runs only).
    #[serde(default)]
    pub flops_per_step: Option<f64>,
}

/// The rows `bench train` runs without `--config`: the reference's base
/// model at the reference's per-GPU image size, and the bundled config.
const STANDARD_ROWS: [(&str, usize, usize); 2] = [
    ("data/configs/_base_bicaptioning_R_50_L1_H1024.yaml", 8, 224),
    ("data/configs/emoji_bicaptioning.yaml", 32, 64),
];

impl GpuCheck {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        println!(
            "GPU check: {} steps of {} at batch {}, 224², on {}",
            self.steps, STANDARD_ROWS[0].0, self.batch, self.device
        );
        TrainBench {
            config: Some(STANDARD_ROWS[0].0.to_string()),
            overrides: Vec::new(),
            batch: self.batch,
            size: 224,
            steps: self.steps,
            device: self.device,
        }
        .run()
    }
}

impl TrainBench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let rows: Vec<(String, usize, usize)> = match &self.config {
            Some(config) => vec![(config.clone(), self.batch, self.size)],
            None => STANDARD_ROWS
                .iter()
                .map(|&(c, b, s)| (c.to_string(), b, s))
                .collect(),
        };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let gemm = pytorch::gemm_gflops(threads);
        match gemm {
            Some(g) => println!(
                "ceiling: fp32 GEMM 2048³ through PyTorch, {threads} threads: {g:.0} GFLOP/s"
            ),
            None => println!("PyTorch not importable by python3: virtex-rs rows only"),
        }
        println!(
            "| config | batch | size | device | implementation | img/s | virtex-rs ÷ this | peak RSS MB | peak GPU MB | GFLOP/step | % of GEMM ceiling |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (config, batch, size) in rows {
            let loaded = Config::load(Some(&project_root().join(&config)), &self.overrides)?;
            let mut reports = vec![measure_gpu(self.device, || {
                self.child_row(&config, batch, size)
            })?];
            let mut twins = vec![false];
            if self.device != DeviceSpec::Cpu {
                twins.push(true);
            }
            for amp in twins {
                let workload = pytorch::Workload {
                    batch,
                    size,
                    steps: self.steps,
                    device: self.device,
                    threads,
                };
                let row = measure_gpu(self.device, || pytorch::train_row(&loaded, &workload, amp));
                match row {
                    Ok(row) => reports.push(row),
                    Err(e) => eprintln!("PyTorch row failed: {e:#}"),
                }
            }
            let flops = reports.iter().find_map(|r| r.flops_per_step);
            let ours = reports[0].images_per_s;
            let name = Path::new(&config)
                .file_stem()
                .map_or(config.clone(), |s| s.to_string_lossy().into_owned());
            for report in &reports {
                let ceiling = match (flops, gemm) {
                    (Some(f), Some(g)) if self.device == DeviceSpec::Cpu => format!(
                        "{:.1}%",
                        100.0 * f * report.images_per_s / batch as f64 / (g * 1e9)
                    ),
                    _ => "—".into(),
                };
                println!(
                    "| {name} | {batch} | {size} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {ceiling} |",
                    self.device,
                    report.implementation,
                    report.images_per_s,
                    ours / report.images_per_s,
                    fmt_mb(report.peak_rss_mb),
                    fmt_mb(report.peak_gpu_mb),
                    flops.map_or("—".into(), |f| format!("{:.1}", f / 1e9)),
                );
            }
        }
        Ok(())
    }

    /// Runs one row in a child process and reads its report.
    fn child_row(&self, config: &str, batch: usize, size: usize) -> anyhow::Result<StepReport> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["bench", "train-row", "--config", config]);
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
        let output = command.output().context("running bench train-row")?;
        if !output.status.success() {
            bail!(
                "bench train-row {config} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        last_json_line(&output.stdout)
    }
}

/// Runs `work` while sampling the GPU's used memory with `nvidia-smi` every
/// 100 ms; the report's `peak_gpu_mb` is the peak above the level before.
/// The same measure for both implementations (it includes the CUDA context).
fn measure_gpu(
    device: DeviceSpec,
    work: impl FnOnce() -> anyhow::Result<StepReport>,
) -> anyhow::Result<StepReport> {
    let DeviceSpec::Cuda(index) = device else {
        return work();
    };
    let used = move || -> Option<f64> {
        let out = Command::new("nvidia-smi")
            .args([
                "--query-gpu=memory.used",
                "--format=csv,noheader,nounits",
                &format!("--id={index}"),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let before = used();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak: Option<f64> = None;
            while !stop.load(Ordering::Relaxed) {
                if let Some(mb) = used() {
                    peak = Some(peak.map_or(mb, |p: f64| p.max(mb)));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let report = work();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().ok().flatten();
    let mut report = report?;
    report.peak_gpu_mb = match (peak, before) {
        (Some(peak), Some(before)) => Some(peak - before),
        _ => None,
    };
    Ok(report)
}

fn fmt_mb(mb: Option<f64>) -> String {
    mb.map_or("—".into(), |m| format!("{m:.0}"))
}

/// The last line of a child's stdout, parsed as a [`StepReport`].
pub(crate) fn last_json_line(stdout: &[u8]) -> anyhow::Result<StepReport> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("no JSON report in {text:?}"))?;
    serde_json::from_str(line).with_context(|| format!("parsing report {line:?}"))
}

impl TrainRowBench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = project_root();
        let config = Config::load(Some(&root.join(&self.config)), &self.overrides)?;
        let report = self.device.dispatch(TrainStep {
            config,
            batch: self.batch,
            size: self.size,
            steps: self.steps,
        })??;
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
}

impl TrainStep {
    /// Normal images and captions of random word pieces, `[SOS] w… [EOS]`.
    fn input<B: AutodiffBackend>(&self, device: &B::Device) -> PretrainingInput<B> {
        let words = CAPTION_TOKENS - 2;
        let vocab = self.config.data.vocab_size as i64;
        // A fixed LCG: the same captions on every backend and every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            4 + ((state >> 33) as i64 % (vocab - 4))
        };
        let (sos, eos) = (
            i64::from(self.config.data.sos_index),
            i64::from(self.config.data.eos_index),
        );
        let mut forward = Vec::with_capacity(self.batch * CAPTION_TOKENS);
        let mut backward = Vec::with_capacity(self.batch * CAPTION_TOKENS);
        for _ in 0..self.batch {
            let caption: Vec<i64> = (0..words).map(|_| next()).collect();
            forward.push(sos);
            forward.extend(&caption);
            forward.push(eos);
            backward.push(sos);
            backward.extend(caption.iter().rev());
            backward.push(eos);
        }
        let tokens = |values: Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(
                TensorData::new(values, [self.batch, CAPTION_TOKENS]),
                device,
            )
        };
        PretrainingInput {
            images: Tensor::random(
                [self.batch, 3, self.size, self.size],
                Distribution::Normal(0.0, 1.0),
                device,
            ),
            forward: tokens(forward),
            backward: tokens(backward),
            lengths: vec![CAPTION_TOKENS; self.batch],
            labels: None,
            masked: None,
        }
    }
}

impl BackendTask for TrainStep {
    type Output = anyhow::Result<StepReport>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        B::seed(&device, self.config.random_seed);
        let mut model = self.config.model_config().init::<B>(&device)?;
        let mut optimizer = VirtexOptimizer::new(&model, &self.config.optim)?;
        let input = self.input::<B>(&device);
        let rates = StepRates {
            cnn_lr: self.config.optim.cnn_lr,
            lr: self.config.optim.lr,
        };
        let mut times = Vec::new();
        // One untimed warm-up step (kernel autotuning on GPU, allocator on CPU).
        for step in 0..=self.steps {
            let start = Instant::now();
            let out = model.forward(&input);
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            let (updated, _) = optimizer.step(model, grads, rates);
            model = updated;
            B::sync(&device)?;
            if step > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        let s_per_step = median(times);
        Ok(StepReport {
            implementation: format!("virtex-rs {}", env!("CARGO_PKG_VERSION")),
            s_per_step,
            images_per_s: self.batch as f64 / s_per_step,
            peak_rss_mb: peak_rss_mb(),
            peak_gpu_mb: None,
            flops_per_step: None,
        })
    }
}

/// What the PyTorch script needs to build the same model and optimiser.
pub(crate) fn pytorch_train_args(config: &Config) -> anyhow::Result<Vec<String>> {
    let TextualHeadName::Transformer { size, .. } = config.model.textual.name else {
        bail!("bench train needs a transformer textual head (bicaptioning)");
    };
    let mut args = vec![
        "--arch".to_string(),
        config.model.visual.name.name().to_string(),
        "--hidden".into(),
        size.hidden.to_string(),
        "--layers".into(),
        size.layers.to_string(),
        "--vocab".into(),
        config.data.vocab_size.to_string(),
        "--optimizer".into(),
        match config.optim.optimizer_name {
            OptimizerName::Sgd => "sgd",
            OptimizerName::Adamw => "adamw",
        }
        .into(),
        "--lr".into(),
        config.optim.lr.to_string(),
    ];
    if config.optim.lookahead.enabled {
        args.push("--lookahead".into());
    }
    Ok(args)
}
