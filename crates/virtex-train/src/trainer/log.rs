//! What a run records, and where: a line of `metrics.jsonl` per iteration
//! and per validation, and the same readings on the live [`Progress`].
//! Rank 0 records; the other ranks' [`RunLog`] has neither sink.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::validation::Validation;
use crate::error::TrainError;
use crate::metrics::MetricsLog;
use crate::progress::Progress;
use crate::readings::StepReadings;

/// The sinks of a run's records: each record goes to every sink there is.
pub(super) struct RunLog {
    metrics: Option<MetricsLog>,
    progress: Option<Progress>,
}

impl RunLog {
    /// The log of a run into `output`, now at iteration `start` of `total`:
    /// on rank 0 (`leader`), `metrics.jsonl` (keeping the records up to
    /// `start`) and the progress, a line every `log_every` iterations; on
    /// the others, nothing.
    pub fn open(
        leader: bool,
        output: &Path,
        start: u64,
        total: u64,
        log_every: u64,
    ) -> Result<Self, TrainError> {
        if !leader {
            return Ok(Self {
                metrics: None,
                progress: None,
            });
        }
        Ok(Self {
            metrics: Some(MetricsLog::open(&output.join("metrics.jsonl"), start)?),
            progress: Some(Progress::new("iteration", start, total, log_every)),
        })
    }

    /// A training step, and the images per second of the steps read with it.
    pub fn step(&mut self, step: &StepReadings, images_per_s: f64) -> Result<(), TrainError> {
        let record = step_record(step, images_per_s);
        self.record(record, |progress| {
            let mut readings = vec![("loss", step.loss)];
            readings.extend(step.components.iter().copied());
            readings.extend([
                ("lr", step.host.lr),
                ("cnn_lr", step.host.cnn_lr),
                ("images/s", images_per_s),
            ]);
            progress.step(step.host.iteration, &readings);
        })
    }

    /// The validation after iteration `done`.
    pub fn validation(&mut self, done: u64, validation: &Validation) -> Result<(), TrainError> {
        let record = validation_record(done, validation);
        self.record(record, |progress| {
            let captions: Vec<String> = validation
                .captions
                .iter()
                .map(|(id, c)| format!("image {id}: {c}"))
                .collect();
            progress.validation(done, &[("loss", validation.loss)], &captions);
        })
    }

    /// Whether the user asked the dashboard to stop the run.
    pub fn stop_requested(&self) -> bool {
        self.progress.as_ref().is_some_and(Progress::stop_requested)
    }

    /// Closes the progress (restoring the terminal) and plots the metrics
    /// into `output`.
    pub fn finish(self, output: &Path) -> Result<(), TrainError> {
        if let Some(progress) = self.progress {
            progress.finish();
        }
        if let Some(metrics) = &self.metrics {
            metrics.plot(output)?;
        }
        Ok(())
    }

    /// `record` into `metrics.jsonl`, then `show` on the progress.
    fn record(
        &mut self,
        record: Map<String, Value>,
        show: impl FnOnce(&mut Progress),
    ) -> Result<(), TrainError> {
        if let Some(metrics) = &mut self.metrics {
            metrics.write(&Value::Object(record))?;
        }
        if let Some(progress) = &mut self.progress {
            show(progress);
        }
        Ok(())
    }
}

/// A step's line in `metrics.jsonl`.
fn step_record(step: &StepReadings, images_per_s: f64) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("iteration".into(), json!(step.host.iteration));
    record.insert("loss".into(), json!(step.loss));
    for &(name, value) in &step.components {
        record.insert(name.into(), json!(value));
    }
    record.insert("lr".into(), json!(step.host.lr));
    record.insert("cnn_lr".into(), json!(step.host.cnn_lr));
    record.insert("grad_norm".into(), json!(step.grad_norm));
    record.insert("images_per_s".into(), json!(images_per_s));
    record.insert("data_wait_s".into(), json!(step.host.data_wait_s));
    record
}

/// A validation's line in `metrics.jsonl`: the loss terms as `val_<name>`,
/// the loss as `val_loss`, and the captions.
fn validation_record(done: u64, validation: &Validation) -> Map<String, Value> {
    let mut record = validation.parts.clone();
    record.insert("iteration".into(), json!(done));
    record.insert("val_loss".into(), json!(validation.loss));
    record.insert(
        "captions".into(),
        json!(
            validation
                .captions
                .iter()
                .map(|(id, c)| json!({"image_id": id, "caption": c}))
                .collect::<Vec<_>>()
        ),
    );
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::HostReadings;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("virtex-run-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn records(dir: &Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn each_record_is_written_once_with_what_was_measured() {
        let dir = scratch("records");
        let mut log = RunLog {
            metrics: Some(MetricsLog::open(&dir.join("metrics.jsonl"), 0).unwrap()),
            progress: None,
        };
        let step = StepReadings {
            host: HostReadings {
                iteration: 3,
                lr: 0.25,
                cnn_lr: 0.5,
                data_wait_s: 0.125,
            },
            loss: 4.5,
            components: vec![("forward", 2.0), ("backward", 2.5)],
            grad_norm: 1.5,
        };
        log.step(&step, 64.0).unwrap();
        let mut parts = Map::new();
        parts.insert("val_forward".into(), json!(1.75));
        let validation = Validation {
            loss: 3.5,
            parts,
            captions: vec![(7, "a face".into())],
        };
        log.validation(3, &validation).unwrap();
        assert!(!log.stop_requested());
        drop(log);

        let [step_line, validation_line] = &records(&dir)[..] else {
            panic!("two records: {:?}", records(&dir));
        };
        assert_eq!(
            step_line,
            &json!({
                "iteration": 3, "loss": 4.5, "forward": 2.0, "backward": 2.5,
                "lr": 0.25, "cnn_lr": 0.5, "grad_norm": 1.5,
                "images_per_s": 64.0, "data_wait_s": 0.125,
            })
        );
        assert_eq!(
            validation_line,
            &json!({
                "iteration": 3, "val_loss": 3.5, "val_forward": 1.75,
                "captions": [{"image_id": 7, "caption": "a face"}],
            })
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn other_ranks_record_nothing() {
        let dir = scratch("silent");
        let mut log = RunLog::open(false, &dir, 0, 10, 1).unwrap();
        let step = StepReadings {
            host: HostReadings {
                iteration: 1,
                lr: 0.0,
                cnn_lr: 0.0,
                data_wait_s: 0.0,
            },
            loss: 1.0,
            components: Vec::new(),
            grad_norm: 0.0,
        };
        log.step(&step, 1.0).unwrap();
        log.finish(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
