//! `cargo xtask bench first-run` end to end on the tiny test config: two
//! seeds of a few iterations, each pretrained in a child process, captioned,
//! scored, probed and read for the divergence guard's headroom.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `xtask bench first-run` of the tiny config (4 iterations, a probe of 2)
/// on `split` into `output`, with `extra` flags.
fn first_run(split: &str, output: &Path, extra: &[&str]) -> Output {
    let root = root();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "first-run", "--seeds", "0,1", "--split", split])
        .arg("--config")
        .arg(root.join("data/configs/tests/emoji_tiny.yaml"))
        .arg("--set")
        .arg(format!("DATA.ROOT={}", root.join("data/emoji").display()))
        .arg("--set")
        .arg(format!(
            "DATA.TOKENIZER_MODEL={}",
            root.join("data/vocab/emoji_1k.model").display()
        ))
        .args(["--set", "OPTIM.NUM_ITERATIONS=4"])
        .args(["--probe-set", "OPTIM.NUM_ITERATIONS=2"])
        .args(["--probe-set", "OPTIM.BATCH_SIZE=8"])
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn two_seeds_give_a_row_each_with_every_column_and_a_summary() {
    let output = scratch("first-run");
    let out = first_run("val", &output, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("\nsplit: val\n"), "{stdout}");
    assert!(stdout.contains("overrides: `DATA.ROOT="), "{stdout}");
    assert!(stdout.contains("`OPTIM.NUM_ITERATIONS=4`"), "{stdout}");
    assert!(
        stdout.contains("probe overrides: `OPTIM.NUM_ITERATIONS=2`, `OPTIM.BATCH_SIZE=8`"),
        "{stdout}"
    );
    assert!(stdout.contains("\nCPU: ") || stdout.starts_with("CPU: "));
    assert!(stdout.contains(" (UTC)\n"), "{stdout}");
    let table: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(
        table[0],
        [
            "seed",
            "wall s",
            "peak RSS MB",
            "val loss",
            "CIDEr-D",
            "BLEU-4",
            "distinct",
            "top caption %",
            "subcategory right %",
            "probe subcategory top-1 %",
            "guard peak ratio",
            "top caption"
        ]
    );
    let firsts: Vec<&str> = table[2..].iter().map(|row| row[0]).collect();
    assert_eq!(firsts, ["0", "1", "min", "mean", "max"]);
    for row in &table[2..] {
        assert_eq!(row.len(), 12, "{row:?}");
        // Every figure measured: a number in each numeric column.
        for cell in &row[1..11] {
            assert!(cell.parse::<f64>().is_ok(), "{cell} in {row:?}");
        }
    }
    for row in &table[2..4] {
        let ratio: f64 = row[10].parse().unwrap();
        assert!(ratio > 0.0 && ratio < 2.0, "{row:?}");
        assert!(!row[11].is_empty(), "the top caption: {row:?}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join("first-run.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["seed"], 1);
    assert_eq!(report["split"], "val");
    for (seed, row) in rows.iter().enumerate() {
        let dir = output.join(format!("seed-{seed}"));
        assert!(dir.join("checkpoint_4.safetensors").exists());
        assert_eq!(
            row["run"]["checkpoint"],
            dir.join("checkpoint_4.safetensors").display().to_string()
        );
        // The sheet rewritten with the split's figures and marks.
        let sheet = std::fs::read_to_string(dir.join("captions.html")).unwrap();
        assert!(sheet.matches("<img ").count() >= 24);
        assert_eq!(
            sheet.matches("class=\"mark ").count(),
            sheet.matches("<img ").count()
        );
        for figure in ["CIDEr-D", "top caption", "subcategory right"] {
            assert!(sheet.contains(&format!("<th>{figure}</th>")), "{figure}");
        }
    }
    std::fs::remove_dir_all(output).unwrap();
}

#[test]
fn a_seed_that_fails_stops_the_run_naming_it() {
    let output = scratch("first-run-failing");
    // A batch larger than the validation split: the run cannot start.
    let out = first_run("val", &output, &["--set", "OPTIM.BATCH_SIZE=100000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Error: seed 0: pretraining failed (exit status: 1)"),
        "{stderr}"
    );
    // The child's own reason, from the end of its stderr.
    assert!(
        stderr.contains("fewer than OPTIM.BATCH_SIZE 100000"),
        "{stderr}"
    );
    assert!(!output.join("seed-1").exists(), "no seed after the failure");
    let _ = std::fs::remove_dir_all(output);
}

#[test]
fn a_split_the_data_lacks_is_refused_before_any_seed_trains() {
    let output = scratch("first-run-nosplit");
    let out = first_run("nosuch", &output, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--split nosuch") && stderr.contains("captions_nosuch2017.json"),
        "{stderr}"
    );
    assert!(!output.join("seed-0").exists());
    let _ = std::fs::remove_dir_all(output);
}
