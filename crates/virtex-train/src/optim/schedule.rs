//! Learning-rate multipliers per iteration (`virtex/optim/lr_scheduler.py`):
//! linear warm-up from 0, then cosine, linear or multistep decay (or none).
//!
//! The reference steps its `LambdaLR` after each optimiser step, so iteration
//! `t` (0-based) trains with `multiplier(t)` and the first step's is 0.

use serde::{Deserialize, Serialize};

use crate::config::{LrDecayName, OptimConfig};

/// A warm-up + decay schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Warm-up iterations `w`.
    pub warmup_steps: u64,
    /// Total iterations `T`.
    pub total_steps: u64,
    /// The decay after warm-up.
    pub decay: LrDecayName,
    /// Multistep milestones.
    pub milestones: Vec<u64>,
    /// Multistep factor.
    pub gamma: f64,
}

impl LrSchedule {
    /// The schedule of `OPTIM.*`.
    pub fn new(optim: &OptimConfig) -> Self {
        Self {
            warmup_steps: optim.warmup_steps,
            total_steps: optim.num_iterations,
            decay: optim.lr_decay_name,
            milestones: optim.lr_steps.clone(),
            gamma: optim.lr_gamma,
        }
    }

    /// The multiplier of the base learning rates at iteration `t`.
    pub fn multiplier(&self, t: u64) -> f64 {
        let (w, total) = (self.warmup_steps, self.total_steps);
        if t < w {
            return t as f64 / w as f64;
        }
        let progress = (t - w) as f64 / (total - w).max(1) as f64;
        match self.decay {
            LrDecayName::None => 1.0,
            LrDecayName::Cosine => (std::f64::consts::FRAC_PI_2 * progress.min(1.0))
                .cos()
                .powi(2),
            LrDecayName::Linear => (1.0 - progress).max(0.0),
            LrDecayName::Multistep => {
                let passed = self.milestones.iter().filter(|&&m| m <= t).count();
                self.gamma.powi(passed as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: LrDecayName) -> LrSchedule {
        LrSchedule {
            warmup_steps: 10_000,
            total_steps: 500_000,
            decay,
            milestones: vec![119_700, 153_900],
            gamma: 0.1,
        }
    }

    #[test]
    fn warmup_is_linear_from_zero() {
        let s = schedule(LrDecayName::Cosine);
        assert_eq!(s.multiplier(0), 0.0);
        assert_eq!(s.multiplier(2_500), 0.25);
        assert_eq!(s.multiplier(10_000), 1.0);
    }

    #[test]
    fn cosine_matches_the_reference_formula() {
        // LinearWarmupCosineAnnealingLR: 0.5 · (1 + cos(π · (t − w) / (T − w))).
        let s = schedule(LrDecayName::Cosine);
        for t in [10_000u64, 57_321, 255_000, 499_999, 500_000] {
            let progress = (t - 10_000) as f64 / 490_000.0;
            let want = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            assert!((s.multiplier(t) - want).abs() < 1e-12, "t = {t}");
        }
        assert!((s.multiplier(255_000) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn multistep_and_linear_decay() {
        let s = schedule(LrDecayName::Multistep);
        assert_eq!(s.multiplier(119_699), 1.0);
        assert!((s.multiplier(119_700) - 0.1).abs() < 1e-12);
        assert!((s.multiplier(200_000) - 0.01).abs() < 1e-12);
        let s = schedule(LrDecayName::Linear);
        assert!((s.multiplier(255_000) - 0.5).abs() < 1e-12);
        assert_eq!(s.multiplier(500_000), 0.0);
    }
}
