//! The PyTorch twin of each workload: `tools/bench/train_step.py` in the
//! checkout at `root`, run with `python3` on the same machine and thread
//! count, one JSON line back.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use virtex_text::TextualHeadName;
use virtex_train::config::{Config, OptimizerName};
use virtex_train::device::DeviceSpec;

use crate::report::{StepReport, run_child};

/// The shape of one measured workload, shared by both implementations.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Images per step.
    pub batch: usize,
    /// Image side in pixels.
    pub size: usize,
    /// Timed steps (after one untimed warm-up).
    pub steps: usize,
    /// Where it runs.
    pub device: DeviceSpec,
    /// CPU threads.
    pub threads: usize,
}

impl Workload {
    fn args(&self) -> anyhow::Result<[String; 10]> {
        Ok([
            "--batch".into(),
            self.batch.to_string(),
            "--size".into(),
            self.size.to_string(),
            "--steps".into(),
            self.steps.to_string(),
            "--device".into(),
            device_arg(self.device)?,
            "--threads".into(),
            self.threads.to_string(),
        ])
    }
}

/// Runs `tools/bench/train_step.py <name> <args>` of the checkout at `root`
/// for `workload` and reads its report.
pub fn script(
    root: &Path,
    name: &str,
    args: &[String],
    workload: &Workload,
) -> anyhow::Result<StepReport> {
    let mut command = Command::new("python3");
    command
        .arg(root.join("tools/bench/train_step.py"))
        .arg(name)
        .args(args)
        .args(workload.args()?);
    run_child(command, &format!("tools/bench/train_step.py {name}"))
}

/// PyTorch's name for `device`; wgpu has none.
fn device_arg(device: DeviceSpec) -> anyhow::Result<String> {
    match device {
        DeviceSpec::Cpu => Ok("cpu".into()),
        DeviceSpec::Cuda(index) => Ok(format!("cuda:{index}")),
        DeviceSpec::Wgpu(_) => anyhow::bail!("PyTorch has no {device} device"),
    }
}

/// Measured fp32 GEMM GFLOP/s (2048³), or `None` without a working PyTorch.
pub fn gemm_gflops(root: &Path, threads: usize) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Gemm {
        gemm_gflops: f64,
    }
    let output = Command::new("python3")
        .arg(root.join("tools/bench/train_step.py"))
        .args(["gemm", "--threads", &threads.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'))?;
    serde_json::from_str::<Gemm>(line)
        .ok()
        .map(|g| g.gemm_gflops)
}

/// The PyTorch pretraining step for `config` (with fp16 autocast if `amp`).
pub fn train_row(
    root: &Path,
    config: &Config,
    workload: &Workload,
    amp: bool,
) -> anyhow::Result<StepReport> {
    let mut args = pytorch_train_args(config)?;
    if amp {
        args.push("--amp".into());
    }
    script(root, "train", &args, workload)
}

/// PyTorch's frozen-backbone feature extraction.
pub fn extract_row(root: &Path, arch: &str, workload: &Workload) -> anyhow::Result<StepReport> {
    script(
        root,
        "extract",
        &["--arch".into(), arch.to_string()],
        workload,
    )
}

/// Images/s of the Python data pipeline (`tools/bench/data_pipeline.py`,
/// one thread), read from its last line (`…: N images/s`).
pub fn data_pipeline(
    root: &Path,
    split_root: &Path,
    size: u32,
    batch: usize,
    batches: usize,
) -> anyhow::Result<f64> {
    let output = Command::new("python3")
        .arg(root.join("tools/bench/data_pipeline.py"))
        .arg("--root")
        .arg(split_root)
        .args(["--size", &size.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--batches", &batches.to_string()])
        .output()
        .context("running python3 tools/bench/data_pipeline.py")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "tools/bench/data_pipeline.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    text.lines()
        .rev()
        .find_map(|line| {
            line.strip_suffix(" images/s")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .with_context(|| format!("no 'N images/s' in {text:?}"))
}

/// What the PyTorch script needs to build the same model and optimiser.
fn pytorch_train_args(config: &Config) -> anyhow::Result<Vec<String>> {
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
