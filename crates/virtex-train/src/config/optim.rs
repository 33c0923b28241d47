//! `OPTIM.*`: the optimiser, its learning rates and schedule, Lookahead.

use serde::{Deserialize, Serialize};

/// `OPTIM.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct OptimConfig {
    /// `sgd` or `adamw`.
    pub optimizer_name: OptimizerName,
    /// SGD momentum (0.9).
    pub sgd_momentum: f64,
    /// Weight decay (1e-4).
    pub weight_decay: f64,
    /// Regex (`re.match`) over parameter names exempt from weight decay.
    pub no_decay: String,
    /// Global gradient-norm clip (10); 0 disables.
    pub clip_grad_norm: f64,
    /// `OPTIM.LOOKAHEAD.*`.
    pub lookahead: LookaheadConfig,
    /// Images per iteration, over all devices (256).
    pub batch_size: usize,
    /// Learning rate of the visual backbone (parameters named `*cnn*`), 0.2.
    pub cnn_lr: f64,
    /// Learning rate of everything else, 0.001.
    pub lr: f64,
    /// Iterations (500000).
    pub num_iterations: u64,
    /// Linear warm-up iterations (10000).
    pub warmup_steps: u64,
    /// `cosine`, `multistep`, `linear` or `none`.
    pub lr_decay_name: LrDecayName,
    /// Multistep milestones.
    pub lr_steps: Vec<u64>,
    /// Multistep factor (0.1).
    pub lr_gamma: f64,
}

/// `OPTIM.OPTIMIZER_NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// SGD with momentum.
    Sgd,
    /// AdamW.
    Adamw,
}

/// `OPTIM.LR_DECAY_NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecayName {
    /// Constant after warm-up.
    None,
    /// Cosine to zero.
    Cosine,
    /// Linear to zero.
    Linear,
    /// ×`LR_GAMMA` at each of `LR_STEPS`.
    Multistep,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer_name: OptimizerName::Sgd,
            sgd_momentum: 0.9,
            weight_decay: 1e-4,
            no_decay: ".*textual.(embedding|transformer).*(norm.*|bias)".into(),
            clip_grad_norm: 10.0,
            lookahead: LookaheadConfig::default(),
            batch_size: 256,
            cnn_lr: 0.2,
            lr: 0.001,
            num_iterations: 500_000,
            warmup_steps: 10_000,
            lr_decay_name: LrDecayName::Cosine,
            lr_steps: Vec::new(),
            lr_gamma: 0.1,
        }
    }
}

/// `OPTIM.LOOKAHEAD.*`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "SCREAMING_SNAKE_CASE")]
pub struct LookaheadConfig {
    /// Whether to wrap the optimiser (true).
    #[serde(rename = "USE")]
    pub enabled: bool,
    /// Slow-weight step (0.5).
    pub alpha: f64,
    /// Fast steps per slow step, k (5).
    pub steps: u64,
}

impl Default for LookaheadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            alpha: 0.5,
            steps: 5,
        }
    }
}
