//! One measured row, as both implementations print it, the child process
//! a row runs in, and the measures taken around it (median, peak resident
//! and GPU memory, the CPU's name).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use virtex_train::device::DeviceSpec;

/// Lines of a failed child's stderr its error repeats (the last ones).
const STDERR_TAIL: usize = 40;

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

/// `bench <args>` of this same program: a row in a process of its own, so
/// that its peak resident memory ([`peak_rss_mb`], which it reports) is its
/// own. Its errors come without anyhow's backtrace (`RUST_LIB_BACKTRACE=0`,
/// panics keep theirs), so that the end of its stderr says why it failed.
pub fn bench_child<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe().context("finding this program")?);
    command
        .arg("bench")
        .args(args)
        .env("RUST_LIB_BACKTRACE", "0");
    Ok(command)
}

/// Runs `command` (`what` in errors) to its end and reads the report it
/// prints as its last JSON line; a child that fails is an error holding
/// the last lines of its stderr.
pub fn run_child<T: DeserializeOwned>(mut command: Command, what: &str) -> anyhow::Result<T> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL)..].join("\n");
        bail!("{what} failed ({}):\n{tail}", output.status);
    }
    last_json_line(&output.stdout)
}

/// The last JSON line of a child's stdout, parsed as its report.
pub fn last_json_line<T: DeserializeOwned>(stdout: &[u8]) -> anyhow::Result<T> {
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

/// The CPU's model name (`/proc/cpuinfo`), Linux on x86 only.
pub fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = cpuinfo.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
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
        let report: StepReport = last_json_line(out).unwrap();
        assert_eq!(report.implementation, "pytorch 2");
        assert_eq!(report.images_per_s, 16.0);
        assert!(last_json_line::<StepReport>(b"no json").is_err());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn a_failing_child_is_named_with_the_end_of_its_stderr() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "for i in $(seq 1 100); do echo line $i >&2; done; exit 3",
        ]);
        let err = run_child::<StepReport>(command, "seed 7: pretraining")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("seed 7: pretraining failed (exit status: 3)"),
            "{err}"
        );
        assert!(
            err.ends_with("line 100") && err.contains("line 61\n"),
            "{err}"
        );
        assert!(
            !err.contains("line 60\n"),
            "only the last {STDERR_TAIL} lines"
        );
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo '{\"impl\": \"x\", \"s_per_step\": 1, \"images_per_s\": 2}'",
        ]);
        let report: StepReport = run_child(command, "a row").unwrap();
        assert_eq!(report.images_per_s, 2.0);
    }
}
