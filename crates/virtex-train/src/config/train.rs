//! `TRAIN.*` (virtex-rs's own section): what the reference's
//! `scripts/pretrain_virtex.py` takes as flags.

use serde::{Deserialize, Serialize};

/// `TRAIN.*` (virtex-rs): what the reference's script takes as flags.
///
/// The periods count completed iterations: `CHECKPOINT_EVERY: 100` saves
/// after iterations 100, 200, …. A period of 0 means none on the way: for
/// checkpoints, only the one after the last iteration; for validation, none
/// at all. `LOG_EVERY` must be at least 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct TrainConfig {
    /// Save a checkpoint every N iterations (2000), and after the last one
    /// (or a stop asked for on the dashboard) whatever N is; 0: only then.
    pub checkpoint_every: u64,
    /// Keep the newest K checkpoints; 0 keeps all. The last good checkpoint
    /// of the divergence guard (`DIVERGENCE_FACTOR`) is kept besides them
    /// while newer ones may be worse.
    pub keep_last: usize,
    /// Validation loss every N iterations (2000), and after the last one;
    /// 0: no validation at all.
    pub validate_every: u64,
    /// Validation batches per evaluation; 0 = the whole split.
    pub validation_batches: usize,
    /// Read the steps' losses back from the device, and print a progress
    /// line, every N iterations (20; at least 1). `metrics.jsonl` gets a
    /// record of every iteration whatever N is, written at these reads (and
    /// before each validation and checkpoint).
    pub log_every: u64,
    /// Batches the loader prepares ahead.
    pub prefetch: usize,
    /// The divergence guard (virtex-rs; the reference stops only on a
    /// non-finite loss): stop the run when the mean training loss of the
    /// last `DIVERGENCE_WINDOW` iterations exceeds this many times the
    /// lowest such mean so far (2; more than 1, or 0 to turn the guard off).
    /// The error names the last good checkpoint: the newest written at or
    /// before the end of that lowest window, which `KEEP_LAST` never
    /// prunes while newer ones may be worse. The bundled config's healthy
    /// runs reach 1.12 at most (docs/reproduction.md, "When a run goes
    /// wrong").
    pub divergence_factor: f64,
    /// Iterations whose losses the divergence guard averages (50; at least
    /// 1). A fresh run's windows grow from its first iteration to this
    /// length; a run resumed from a checkpoint that kept no guard state
    /// (written with the guard off) is judged from its first full window.
    pub divergence_window: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 2000,
            keep_last: 0,
            validate_every: 2000,
            validation_batches: 0,
            log_every: 20,
            prefetch: 2,
            divergence_factor: 2.0,
            divergence_window: 50,
        }
    }
}

/// What falls due after an iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// A log line (`LOG_EVERY`).
    pub log: bool,
    /// A validation (`VALIDATE_EVERY`, and the last iteration).
    pub validate: bool,
    /// A checkpoint (`CHECKPOINT_EVERY`, and the last iteration).
    pub checkpoint: bool,
}

impl TrainConfig {
    /// What falls due after iteration `done` (counted from 1) of `total`.
    pub(crate) fn due(&self, done: u64, total: u64) -> Due {
        let every = |period: u64| period > 0 && done.is_multiple_of(period);
        let last = done == total;
        Due {
            log: every(self.log_every),
            validate: self.validate_every > 0 && (every(self.validate_every) || last),
            checkpoint: every(self.checkpoint_every) || last,
        }
    }

    /// Checks what the types cannot, naming the key.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.log_every == 0 {
            return Err((
                "TRAIN.LOG_EVERY",
                "must be ≥ 1 (the losses are read back and logged every N iterations)".into(),
            ));
        }
        let factor = self.divergence_factor;
        if !(factor == 0.0 || (factor > 1.0 && factor.is_finite())) {
            return Err((
                "TRAIN.DIVERGENCE_FACTOR",
                format!(
                    "must be above 1 (the trip over the lowest mean loss so far), \
                     or 0 to turn the divergence guard off; got {factor}"
                ),
            ));
        }
        if self.divergence_window == 0 {
            return Err((
                "TRAIN.DIVERGENCE_WINDOW",
                "must be ≥ 1 (the iterations whose losses the divergence guard averages)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn due(config: &TrainConfig, total: u64) -> Vec<(u64, Due)> {
        (1..=total)
            .map(|done| (done, config.due(done, total)))
            .filter(|(_, due)| *due != Due::default())
            .collect()
    }

    #[test]
    fn periods_fall_due_every_n_iterations_and_at_the_end() {
        let config = TrainConfig {
            checkpoint_every: 4,
            validate_every: 3,
            log_every: 2,
            ..TrainConfig::default()
        };
        let at = |log, validate, checkpoint| Due {
            log,
            validate,
            checkpoint,
        };
        assert_eq!(
            due(&config, 7),
            [
                (2, at(true, false, false)),
                (3, at(false, true, false)),
                (4, at(true, false, true)),
                (6, at(true, true, false)),
                (7, at(false, true, true)),
            ]
        );
    }

    #[test]
    fn a_period_of_0_means_none_on_the_way() {
        let config = TrainConfig {
            checkpoint_every: 0,
            validate_every: 0,
            log_every: 10,
            ..TrainConfig::default()
        };
        // The last iteration still checkpoints; no validation at all.
        let last = Due {
            log: false,
            validate: false,
            checkpoint: true,
        };
        assert_eq!(due(&config, 5), [(5, last)]);
    }

    #[test]
    fn log_every_0_is_refused() {
        let err = Config::load(None, &["TRAIN.LOG_EVERY=0".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the default config: key TRAIN.LOG_EVERY: must be ≥ 1 \
             (the losses are read back and logged every N iterations)"
        );
        for zero_is_meaningful in ["TRAIN.CHECKPOINT_EVERY=0", "TRAIN.VALIDATE_EVERY=0"] {
            Config::load(None, &[zero_is_meaningful.into()]).unwrap();
        }
    }

    #[test]
    fn the_divergence_guard_is_on_by_default_and_checked() {
        let config = Config::load(None, &[]).unwrap();
        assert_eq!(
            (
                config.train.divergence_factor,
                config.train.divergence_window
            ),
            (2.0, 50)
        );
        let off = Config::load(None, &["TRAIN.DIVERGENCE_FACTOR=0".into()]).unwrap();
        assert_eq!(off.train.divergence_factor, 0.0);
        for (set, key) in [
            ("TRAIN.DIVERGENCE_FACTOR=1", "TRAIN.DIVERGENCE_FACTOR"),
            ("TRAIN.DIVERGENCE_FACTOR=0.5", "TRAIN.DIVERGENCE_FACTOR"),
            ("TRAIN.DIVERGENCE_FACTOR=-2", "TRAIN.DIVERGENCE_FACTOR"),
            ("TRAIN.DIVERGENCE_FACTOR=.inf", "TRAIN.DIVERGENCE_FACTOR"),
            ("TRAIN.DIVERGENCE_WINDOW=0", "TRAIN.DIVERGENCE_WINDOW"),
        ] {
            let err = Config::load(None, &[set.into()]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("the default config: key {key}: must be")),
                "{set}: {err}"
            );
        }
    }
}
