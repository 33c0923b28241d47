//! `TRAIN.*` (virtex-rs's own section): what the reference's
//! `scripts/pretrain_virtex.py` takes as flags.

use serde::{Deserialize, Serialize};

/// `TRAIN.*` (virtex-rs): what the reference's script takes as flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct TrainConfig {
    /// Save a checkpoint every N iterations (2000).
    pub checkpoint_every: u64,
    /// Keep the newest K checkpoints; 0 keeps all.
    pub keep_last: usize,
    /// Validation loss every N iterations (2000).
    pub validate_every: u64,
    /// Validation batches per evaluation; 0 = the whole split.
    pub validation_batches: usize,
    /// Log metrics every N iterations (20).
    pub log_every: u64,
    /// Batches the loader prepares ahead.
    pub prefetch: usize,
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
        }
    }
}
