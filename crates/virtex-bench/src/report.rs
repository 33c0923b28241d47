//! One measured row, as both implementations print it, and the measures
//! taken around it (median, peak resident and GPU memory).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use virtex_train::device::DeviceSpec;

/// One measured row (one JSON line from either implementation).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepReport {
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
    /// FLOPs of one step (PyTorch's `FlopCounterMode`).
    #[serde(default)]
    pub flops_per_step: Option<f64>,
    /// Seconds of the untimed first step: on a GPU it compiles the kernels
    /// and autotunes each new shape (the one-off cost the timed steps leave
    /// out; a second run that finds the autotune cache pays less).
    #[serde(default)]
    pub first_step_s: Option<f64>,
}

/// The last JSON line of a child's stdout, parsed as a [`StepReport`].
pub fn last_json_line(stdout: &[u8]) -> anyhow::Result<StepReport> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("no JSON report in {text:?}"))?;
    serde_json::from_str(line).with_context(|| format!("parsing report {line:?}"))
}

/// The median of `xs` (the upper one of an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Peak resident memory of this process (`VmHWM`), Linux only.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A memory figure for a table cell.
pub fn fmt_mb(mb: Option<f64>) -> String {
    mb.map_or("—".into(), |m| format!("{m:.0}"))
}

/// Runs `work` while sampling the GPU's used memory with `nvidia-smi` every
/// 100 ms; the report's `peak_gpu_mb` is the peak above the level before.
/// The same measure for both implementations (it includes the CUDA context).
pub fn measure_gpu(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_report_line_and_the_median() {
        let out = b"warming up\n{\"impl\": \"pytorch 2\", \"s_per_step\": 0.5, \"images_per_s\": 16.0, \"peak_rss_mb\": null}\n";
        let report = last_json_line(out).unwrap();
        assert_eq!(report.implementation, "pytorch 2");
        assert_eq!(report.images_per_s, 16.0);
        assert!(last_json_line(b"no json").is_err());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
