//! `bench first-run`: what a first run of the bundled pretraining gives,
//! seed by seed (docs/benchmarks.md, "How the figures are made"). Each seed
//! runs `cargo xtask pretrain`'s pretraining ([`Pretraining`]) with
//! `RANDOM_SEED` set to it, in a child process (`bench first-run-seed`)
//! whose wall time and peak resident memory are its own; then its final
//! checkpoint captions the chosen split and the captions are scored
//! ([`RunCaptioning`], which also rewrites the run's contact sheet), the
//! linear probe of its backbone is trained and tested on the same split
//! ([`EmojiExperiment::probe`], subcategories), and the divergence guard's
//! headroom is read from its training losses ([`peak_window_ratio`]). One
//! markdown row per seed, a min/mean/max summary, and the rows as JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use virtex_data::coco::CocoCaptions;
use virtex_eval::emoji::{EMOJI_PROBE_CONFIG, EmojiExperiment, LEVELS, build_emoji_folders};
use virtex_eval::run_captions::{CaptionFigures, RunCaptioning};
use virtex_eval::transfer::classifier::ClassificationResult;
use virtex_train::checkpoint::read_meta;
use virtex_train::config::Config;
use virtex_train::device::DeviceSpec;
use virtex_train::metrics::read_records;
use virtex_train::source::WeightsSource;
use virtex_train::trainer::{Pretraining, peak_window_ratio};

use crate::report::{bench_child, cpu_model, peak_rss_mb, run_child};

/// `bench first-run`.
#[derive(Debug, clap::Args)]
pub struct FirstRunBench {
    /// Seeds, one run each (`RANDOM_SEED`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    pub seeds: Vec<u64>,
    /// The pretraining config, relative to the repository root or absolute.
    #[arg(long, default_value = "data/configs/emoji_bicaptioning.yaml")]
    pub config: String,
    /// The split of the config's data the captions are scored and the probe
    /// tested on: `test` for the figures reported, `val` while tuning.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Where each seed's run goes (`seed-<s>`, replaced if there), with the
    /// probe's folders and the table as JSON (`first-run.json`); relative
    /// to the repository root or absolute.
    #[arg(long, default_value = "runs/first-run")]
    pub output: PathBuf,
    /// Override a key of every seed's config, e.g. `--set OPTIM.LR=0.003`
    /// (repeatable; each seed's `RANDOM_SEED` is set after these).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Override a key of the probe's config (repeatable; the config is
    /// data/configs/downstream/emoji_linear.yaml).
    #[arg(long = "probe-set", value_name = "KEY=VALUE")]
    pub probe_overrides: Vec<String>,
}

/// `bench first-run-seed`: one seed's pretraining in a process of its own
/// (prints a [`SeedRun`] as JSON).
#[derive(Debug, clap::Args)]
pub struct FirstRunSeedBench {
    /// The config, relative to the repository root or absolute.
    #[arg(long)]
    pub config: String,
    /// Override a config key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The run's output directory (must hold no checkpoint).
    #[arg(long)]
    pub output: PathBuf,
}

/// What a seed's pretraining process reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// Peak resident memory of the process.
    pub peak_rss_mb: Option<f64>,
    /// The last validation loss.
    pub val_loss: Option<f64>,
    /// The final checkpoint.
    pub checkpoint: Option<PathBuf>,
}

/// One seed's row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct SeedRow {
    /// `RANDOM_SEED`.
    pub seed: u64,
    /// Wall time of the pretraining process, in seconds.
    pub wall_s: f64,
    /// What the pretraining process reported.
    pub run: SeedRun,
    /// The final checkpoint's captions of the split, scored.
    pub captions: CaptionFigures,
    /// The linear probe of its backbone on the split's subcategories.
    pub probe: ClassificationResult,
    /// The largest ratio of a window mean of the training loss to the
    /// lowest before it, as the divergence guard sees them.
    pub guard_peak_ratio: Option<f64>,
}

/// The table with what it was measured on (`first-run.json`).
#[derive(Clone, Debug, Serialize)]
pub struct FirstRunReport {
    /// The CPU's model name.
    pub cpu: String,
    /// The pretraining config.
    pub config: String,
    /// The split scored.
    pub split: String,
    /// `--set` overrides.
    pub overrides: Vec<String>,
    /// `--probe-set` overrides.
    pub probe_overrides: Vec<String>,
    /// The day of the run (UTC).
    pub date: String,
    /// One row per seed, in order.
    pub rows: Vec<SeedRow>,
}

/// The JSON the table is written to in the output directory.
pub const REPORT_FILE: &str = "first-run.json";

impl FirstRunBench {
    /// Runs every seed on the CPU in the checkout at `root`, printing the
    /// table and writing [`REPORT_FILE`]; the first seed that fails stops
    /// it, named in the error.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let output = root.join(&self.output);
        let config = Config::load(Some(&root.join(&self.config)), &self.overrides)?;
        // The split's captions and labels are read before any seed trains.
        CocoCaptions::load(&config.data.root, &self.split)
            .with_context(|| format!("--split {}", self.split))?;
        let folders = output.join("emoji_folders");
        build_emoji_folders(&config.data.root, &folders, &self.split)
            .with_context(|| format!("--split {}", self.split))?;
        let probes = EmojiExperiment {
            emoji: config.data.root.clone(),
            folders,
            config: root.join(EMOJI_PROBE_CONFIG),
            overrides: self.probe_overrides.clone(),
            split: self.split.clone(),
        };
        let mut rows = Vec::new();
        for &seed in &self.seeds {
            let row = self
                .seed_row(seed, &output, &probes)
                .map_err(|e| anyhow::anyhow!("seed {seed}: {e:#}"))?;
            eprintln!(
                "seed {seed}: {:.0} s, {}; {} {}; probe {:.1}%",
                row.wall_s,
                row.run
                    .val_loss
                    .map_or("no validation".into(), |l| format!("val loss {l:.3}")),
                self.split,
                row.captions,
                100.0 * row.probe.top1
            );
            rows.push(row);
        }
        let report = FirstRunReport {
            cpu: cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            config: self.config,
            split: self.split,
            overrides: self.overrides,
            probe_overrides: self.probe_overrides,
            date: time::OffsetDateTime::now_utc().date().to_string(),
            rows,
        };
        println!("{}", report.markdown());
        let json = output.join(REPORT_FILE);
        virtex_data::atomic::write_bytes(&json, &serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", json.display()))?;
        println!("rows as JSON: {}", json.display());
        Ok(())
    }

    /// Pretrains seed `seed` into `output/seed-<seed>` in a child process,
    /// then scores its checkpoint.
    fn seed_row(
        &self,
        seed: u64,
        output: &Path,
        probes: &EmojiExperiment,
    ) -> anyhow::Result<SeedRow> {
        let dir = output.join(format!("seed-{seed}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("replacing {}", dir.display()))?;
        }
        let mut command = bench_child(&["first-run-seed", "--config", self.config.as_str()])?;
        for set in &self.overrides {
            command.args(["--set", set]);
        }
        command
            .args(["--set", &format!("RANDOM_SEED={seed}")])
            .arg("--output")
            .arg(&dir);
        eprintln!("seed {seed}: pretraining into {}", dir.display());
        let started = Instant::now();
        let run: SeedRun = run_child(command, "pretraining")?;
        let wall_s = started.elapsed().as_secs_f64();
        let checkpoint = run
            .checkpoint
            .clone()
            .with_context(|| format!("{}: the run wrote no checkpoint", dir.display()))?;
        let captioned = DeviceSpec::Cpu.dispatch(RunCaptioning {
            checkpoint: checkpoint.clone(),
            split: self.split.clone(),
        })??;
        let config = read_meta(&checkpoint)?.config;
        let probe = probes.probe(
            &WeightsSource::Native(checkpoint),
            config.model.visual.name,
            LEVELS[0],
        )?;
        let losses: Vec<f64> = read_records(&dir.join("metrics.jsonl"))?
            .iter()
            .filter_map(|record| record.get("loss")?.as_f64())
            .collect();
        Ok(SeedRow {
            seed,
            wall_s,
            run,
            captions: captioned.figures,
            probe,
            guard_peak_ratio: peak_window_ratio(&losses, config.train.divergence_window),
        })
    }
}

impl FirstRunSeedBench {
    /// Pretrains on the CPU and prints a [`SeedRun`] as one JSON line (the
    /// config relative to the checkout at `root`).
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let config = Config::load(Some(&root.join(&self.config)), &self.overrides)?;
        let device = DeviceSpec::Cpu;
        let precision = device.precision(config.amp)?;
        let summary = device
            .dispatch(Pretraining {
                config,
                output: self.output,
                resume: false,
                init_from: None,
                world: None,
                precision,
            })?
            .context("pretraining stopped")?;
        let run = SeedRun {
            peak_rss_mb: peak_rss_mb(),
            val_loss: summary.val_loss,
            checkpoint: summary.checkpoint,
        };
        println!("{}", serde_json::to_string(&run)?);
        Ok(())
    }
}

/// A numeric column of the table.
struct Column {
    /// Its heading.
    name: &'static str,
    /// Its value in a row, `None` where not measured.
    value: fn(&SeedRow) -> Option<f64>,
    /// Decimals shown.
    decimals: usize,
}

/// The table's numeric columns, in order.
fn columns() -> [Column; 10] {
    let column = |name: &'static str, value: fn(&SeedRow) -> Option<f64>, decimals| Column {
        name,
        value,
        decimals,
    };
    [
        column("wall s", |r| Some(r.wall_s), 0),
        column("peak RSS MB", |r| r.run.peak_rss_mb, 0),
        column("val loss", |r| r.run.val_loss, 3),
        column("CIDEr-D", |r| Some(100.0 * r.captions.cider), 1),
        column("BLEU-4", |r| Some(100.0 * r.captions.bleu4), 1),
        column("distinct", |r| Some(r.captions.distinct as f64), 0),
        column("top caption %", |r| Some(100.0 * r.captions.top_share), 1),
        column(
            "subcategory right %",
            |r| r.captions.subcategory_right.map(|s| 100.0 * s),
            1,
        ),
        column(
            "probe subcategory top-1 %",
            |r| Some(100.0 * r.probe.top1),
            1,
        ),
        column("guard peak ratio", |r| r.guard_peak_ratio, 3),
    ]
}

impl FirstRunReport {
    /// What was measured on, then the table: a row per seed (its top
    /// caption last), then the min, mean and max of each column.
    pub fn markdown(&self) -> String {
        let listed = |sets: &[String]| match sets {
            [] => "none".to_string(),
            sets => sets
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let columns = columns();
        let mut text = format!(
            "CPU: {}\nconfig: {}\nsplit: {}\noverrides: {}\nprobe overrides: {}\ndate: {} (UTC)\n\n",
            self.cpu,
            self.config,
            self.split,
            listed(&self.overrides),
            listed(&self.probe_overrides),
            self.date
        );
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        text.push_str(&format!("| seed | {} | top caption |\n", names.join(" | ")));
        text.push_str(&format!("|---|{}---|\n", "---|".repeat(columns.len())));
        let cell = |value: Option<f64>, decimals: usize| {
            value.map_or("—".to_string(), |v| format!("{v:.decimals$}"))
        };
        for row in &self.rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| cell((c.value)(row), c.decimals))
                .collect();
            text.push_str(&format!(
                "| {} | {} | {} |\n",
                row.seed,
                cells.join(" | "),
                row.captions.top_caption.replace('|', "\\|")
            ));
        }
        type Summary = fn(&[f64]) -> f64;
        let summaries: [(&str, Summary); 3] = [
            ("min", |v| v.iter().copied().fold(f64::INFINITY, f64::min)),
            ("mean", |v| v.iter().sum::<f64>() / v.len() as f64),
            ("max", |v| {
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            }),
        ];
        for (name, summary) in summaries {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| {
                    let values: Vec<f64> = self.rows.iter().filter_map(c.value).collect();
                    cell((!values.is_empty()).then(|| summary(&values)), c.decimals)
                })
                .collect();
            text.push_str(&format!("| {name} | {} | — |\n", cells.join(" | ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtex_eval::transfer::TransferMode;

    fn row(seed: u64, cider: f64, rss: Option<f64>) -> SeedRow {
        SeedRow {
            seed,
            wall_s: 120.4,
            run: SeedRun {
                peak_rss_mb: rss,
                val_loss: Some(3.5),
                checkpoint: None,
            },
            captions: CaptionFigures {
                images: 185,
                cider,
                bleu4: 0.25,
                distinct: 90 + 2 * seed as usize,
                top_caption: "bug, a animal | mammal emoji".into(),
                top_share: 0.1,
                subcategory_right: Some(0.45),
            },
            probe: ClassificationResult {
                mode: TransferMode::LinearProbe,
                top1: 0.5,
                top5: 0.8,
                loss_start_end: (4.0, 2.0),
                iterations: 400,
            },
            guard_peak_ratio: Some(1.118),
        }
    }

    #[test]
    fn the_table_has_a_row_per_seed_and_a_summary_of_each_column() {
        let report = FirstRunReport {
            cpu: "AMD EPYC".into(),
            config: "data/configs/emoji_bicaptioning.yaml".into(),
            split: "test".into(),
            overrides: vec!["OPTIM.LR=0.003".into()],
            probe_overrides: vec![],
            date: "2026-12-06".into(),
            rows: vec![row(0, 0.70, Some(640.0)), row(1, 0.80, None)],
        };
        let text = report.markdown();
        assert!(text.starts_with("CPU: AMD EPYC\nconfig: data/configs/emoji_bicaptioning.yaml\nsplit: test\noverrides: `OPTIM.LR=0.003`\nprobe overrides: none\ndate: 2026-12-06 (UTC)\n"), "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(lines.len(), 2 + 2 + 3, "{text}");
        assert_eq!(
            lines[0],
            "| seed | wall s | peak RSS MB | val loss | CIDEr-D | BLEU-4 | distinct | top caption % | subcategory right % | probe subcategory top-1 % | guard peak ratio | top caption |"
        );
        assert_eq!(lines[1].matches("---").count(), 12);
        assert_eq!(
            lines[2],
            "| 0 | 120 | 640 | 3.500 | 70.0 | 25.0 | 90 | 10.0 | 45.0 | 50.0 | 1.118 | bug, a animal \\| mammal emoji |"
        );
        assert!(
            lines[3].starts_with("| 1 | 120 | — | 3.500 | 80.0 |"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("| min | 120 | 640 | 3.500 | 70.0 |"),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].starts_with("| mean | 120 | 640 | 3.500 | 75.0 | 25.0 | 91 |"),
            "{}",
            lines[5]
        );
        assert!(
            lines[6].starts_with("| max | 120 | 640 | 3.500 | 80.0 | 25.0 | 92 |"),
            "{}",
            lines[6]
        );
        for line in lines.iter().filter(|l| !l.starts_with("|---")) {
            assert_eq!(line.matches(" | ").count(), 11, "{line}");
        }
    }
}
