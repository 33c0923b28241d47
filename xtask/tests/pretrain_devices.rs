//! `cargo xtask pretrain --device cpu,cpu`: one process per device, started
//! and supervised by the command itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `xtask pretrain` of the tiny test config for 2 iterations over
/// `devices`, into `output`, with `extra` flags.
fn pretrain(devices: &str, output: &Path, extra: &[&str]) -> Output {
    let root = root();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("pretrain")
        .arg("--config")
        .arg(root.join("data/configs/tests/emoji_tiny.yaml"))
        .arg("--set")
        .arg(format!("DATA.ROOT={}", root.join("data/emoji").display()))
        .arg("--set")
        .arg(format!(
            "DATA.TOKENIZER_MODEL={}",
            root.join("data/vocab/emoji_1k.model").display()
        ))
        .args(["--set", "OPTIM.NUM_ITERATIONS=2", "--device", devices])
        .arg("--output")
        .arg(output)
        .args(extra)
        .env_remove("WORLD_SIZE")
        .env_remove("RANK")
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn two_cpu_devices_train_as_two_ranks() {
    let output = scratch("devices");
    let out = pretrain("cpu,cpu", &output, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("starting ranks 0..2 of 2 on cpu,cpu"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rank 0 of 2 (local rank 0) on cpu"),
        "{stdout}"
    );
    // Rank 1's lines come through the launcher, marked.
    assert!(
        stdout.contains("[rank 1] rank 1 of 2 (local rank 1) on cpu"),
        "{stdout}"
    );
    assert!(stdout.contains("done: iterations 0..2"), "{stdout}");
    assert!(output.join("checkpoint_2.safetensors").exists());
    std::fs::remove_dir_all(output).unwrap();
}

#[test]
fn a_rank_that_fails_stops_the_run_naming_it() {
    let output = scratch("failing");
    // A global batch of 5 has no equal share for each of 2 ranks.
    let out = pretrain("cpu,cpu", &output, &["--set", "OPTIM.BATCH_SIZE=5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Error: rank "), "{stderr}");
    assert!(stderr.contains("failed first (exit status: 1)"), "{stderr}");
    // The rank's own reason, through its prefixed output.
    assert!(stderr.contains("[rank 1] Error:"), "{stderr}");
    let _ = std::fs::remove_dir_all(output);
}
