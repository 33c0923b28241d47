//! The divergence guard (`TRAIN.DIVERGENCE_FACTOR`, `TRAIN.DIVERGENCE_WINDOW`):
//! stops a run whose training loss leaves its range, and says which
//! checkpoint is the last good one, which pruning must then keep.
//!
//! The rule: the mean loss of the last `window` iterations against the
//! lowest such mean so far, the best; the run has diverged at the first
//! iteration whose mean exceeds `factor` × the best. A single spike moves a
//! mean by a `window`th of itself, a run that climbs back moves them all.
//! The windows slide one iteration at a time, and in a fresh run they grow
//! from its first iteration until they hold `window` losses (the mean of
//! iterations 1 to 3 is the third window's): a learning rate too high
//! explodes the loss within the warm-up's first steps, long before a first
//! full window, which would then hold the explosion and be the best. A
//! fresh model's losses scatter little, so these short windows trip on no
//! healthy run; on the bundled config (`emoji_bicaptioning.yaml`, 900
//! iterations, seeds 0, 1, 2) the largest ratio of a window of 50 to the
//! best was 1.118, 1.055 and 1.058, against the trip at 2
//! (docs/reproduction.md, "When a run goes wrong").
//!
//! The last good checkpoint is the newest one written at or before the end
//! of the best window: the weights from which training still went on to its
//! lowest losses. A run that diverges slowly writes checkpoints between its
//! best window and the trip; those are not good, and however few
//! `TRAIN.KEEP_LAST` keeps, the good one is never pruned in their favour.
//!
//! Each checkpoint keeps the guard's state ([`GuardState`]), so a resumed
//! run's guard goes on as the uninterrupted run's would. A checkpoint without
//! one (written with the guard off) starts the guard afresh, with the
//! checkpoint as the good one and no judgement before a full window: losses
//! in mid-run scatter too much for the short windows of a fresh start.
//!
//! The guard is fed finite losses (the trainer stops at a non-finite one
//! first).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Watches a run's training losses for divergence.
#[derive(Clone, Debug)]
pub(super) struct DivergenceGuard {
    /// The trip threshold over the best mean; 0: the guard is off.
    factor: f64,
    /// Losses per window.
    window: usize,
    /// Losses a window needs before it is judged: 1, or `window` after a
    /// resume that found no state.
    judge_from: usize,
    /// The last `window` losses, oldest first.
    recent: VecDeque<f64>,
    /// The lowest window mean so far.
    best: Option<LossWindow>,
    /// The iteration of the last good checkpoint.
    good: Option<u64>,
    /// Checkpoints written after the best window's end, oldest first: good
    /// once a later window is the best.
    after_best: Vec<u64>,
    /// The largest ratio of a window mean to the best before it that this
    /// guard has seen (since it started: a resumed run's starts over).
    peak_ratio: Option<f64>,
}

/// A window of training losses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossWindow {
    /// The mean loss.
    pub mean: f64,
    /// Its last iteration (from 1).
    pub end: u64,
    /// The iterations it holds (`TRAIN.DIVERGENCE_WINDOW`, fewer at the
    /// start of a run).
    pub len: usize,
}

impl LossWindow {
    /// Its first iteration (from 1).
    pub fn start(&self) -> u64 {
        self.end + 1 - self.len as u64
    }

    /// Its iterations in words: `iterations 4-53`, `iteration 1`.
    pub fn iterations(&self) -> String {
        match self.start() {
            start if start == self.end => format!("iteration {start}"),
            start => format!("iterations {start}-{}", self.end),
        }
    }
}

/// What a checkpoint keeps of the divergence guard (in its metadata): what
/// a resumed run's guard goes on from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// `TRAIN.DIVERGENCE_WINDOW` of the run that wrote it.
    pub window: usize,
    /// The last losses, at most `window`, oldest first.
    pub recent: Vec<f64>,
    /// The lowest window mean so far.
    pub best: Option<LossWindow>,
    /// The iteration of the last good checkpoint.
    pub good: Option<u64>,
    /// Checkpoints written after the best window's end, oldest first.
    pub after_best: Vec<u64>,
}

/// A run whose window mean left its range.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Diverged {
    /// The window that tripped the guard; its end is the iteration the run
    /// stops at.
    pub window: LossWindow,
    /// The best window so far.
    pub best: LossWindow,
    /// The iteration of the last good checkpoint, if one was written.
    pub good_checkpoint: Option<u64>,
}

impl DivergenceGuard {
    /// A fresh run's guard, tripping at `factor` × the best mean of
    /// `window` iterations (`factor` 0: never).
    pub fn new(factor: f64, window: usize) -> Self {
        let window = window.max(1);
        Self {
            factor,
            window,
            judge_from: 1,
            recent: VecDeque::with_capacity(window),
            best: None,
            good: None,
            after_best: Vec::new(),
            peak_ratio: None,
        }
    }

    /// The guard of a run resumed from the checkpoint after `start`, which
    /// kept `state` (`None`: written with the guard off, or before it
    /// existed). The state's good checkpoint stays good if `exists` says
    /// its file is still there; otherwise the resumed one is good. After a
    /// change of `window` the state's losses are kept (the newest `window`
    /// of them) but not its best, a mean of windows of another length.
    pub fn resumed(
        factor: f64,
        window: usize,
        start: u64,
        state: Option<GuardState>,
        exists: impl Fn(u64) -> bool,
    ) -> Self {
        let mut guard = Self::new(factor, window);
        let Some(state) = state else {
            guard.judge_from = guard.window;
            guard.good = Some(start);
            return guard;
        };
        let skip = state.recent.len().saturating_sub(guard.window);
        guard.recent.extend(&state.recent[skip..]);
        if state.window == guard.window {
            guard.best = state.best;
            guard.after_best = state.after_best;
        }
        guard.good = state.good.filter(|&i| exists(i)).or(Some(start));
        guard
    }

    /// Whether the guard watches the run at all.
    pub fn is_on(&self) -> bool {
        self.factor > 0.0
    }

    /// Takes the (finite) loss of iteration `iteration` (from 1, in order):
    /// an error once the window ending there has diverged.
    pub fn observe(&mut self, iteration: u64, loss: f64) -> Result<(), Diverged> {
        if !self.is_on() {
            return Ok(());
        }
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
        if self.recent.len() < self.judge_from {
            return Ok(());
        }
        let window = LossWindow {
            mean: self.recent.iter().sum::<f64>() / self.recent.len() as f64,
            end: iteration,
            len: self.recent.len(),
        };
        if let Some(best) = self.best {
            let ratio = window.mean / best.mean;
            self.peak_ratio = Some(self.peak_ratio.map_or(ratio, |peak| peak.max(ratio)));
        }
        match self.best {
            Some(best) if window.mean.is_nan() || window.mean > self.factor * best.mean => {
                Err(Diverged {
                    window,
                    best,
                    good_checkpoint: self.good,
                })
            }
            Some(best) if window.mean >= best.mean => Ok(()),
            _ => {
                self.best = Some(window);
                // Every checkpoint so far was written at or before this
                // window's end: the newest is now the good one.
                if let Some(newest) = self.after_best.pop() {
                    self.good = Some(newest);
                }
                self.after_best.clear();
                Ok(())
            }
        }
    }

    /// Records the checkpoint written after iteration `iteration` (whose
    /// losses the guard has seen).
    pub fn checkpointed(&mut self, iteration: u64) {
        if !self.is_on() {
            return;
        }
        match self.best {
            Some(best) if best.end >= iteration => self.good = Some(iteration),
            _ => self.after_best.push(iteration),
        }
    }

    /// The iteration of the last good checkpoint, which pruning must keep
    /// (`None` with the guard off: pruning keeps the newest as it says).
    pub fn good_checkpoint(&self) -> Option<u64> {
        self.good.filter(|_| self.is_on())
    }

    /// What a checkpoint keeps of the guard (`None` with the guard off).
    pub fn state(&self) -> Option<GuardState> {
        self.is_on().then(|| GuardState {
            window: self.window,
            recent: self.recent.iter().copied().collect(),
            best: self.best,
            good: self.good,
            after_best: self.after_best.clone(),
        })
    }
}

/// A run's headroom under the guard: the largest ratio of a window mean of
/// `losses` (the training losses of iterations 1, 2, … of a fresh run) to
/// the lowest window mean before it, the windows of `window` iterations as
/// the guard makes them (`TRAIN.DIVERGENCE_WINDOW`); the guard trips where
/// this passes `TRAIN.DIVERGENCE_FACTOR`. `None` with fewer than two losses,
/// or where a loss is not finite.
pub fn peak_window_ratio(losses: &[f64], window: usize) -> Option<f64> {
    // An infinite factor: the guard's windows and best, never a trip.
    let mut guard = DivergenceGuard::new(f64::INFINITY, window);
    for (iteration, &loss) in (1..).zip(losses) {
        if !loss.is_finite() {
            return None;
        }
        guard.observe(iteration, loss).ok()?;
    }
    guard.peak_ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `losses` (of iterations `first`, `first + 1`, …), checkpointing
    /// every `checkpoint_every` iterations: where it tripped, if it did.
    fn feed_from(
        guard: &mut DivergenceGuard,
        first: u64,
        losses: &[f64],
        checkpoint_every: u64,
    ) -> Result<(), Diverged> {
        for (iteration, &loss) in (first..).zip(losses) {
            guard.observe(iteration, loss)?;
            if iteration.is_multiple_of(checkpoint_every) {
                guard.checkpointed(iteration);
            }
        }
        Ok(())
    }

    fn feed(
        guard: &mut DivergenceGuard,
        losses: &[f64],
        checkpoint_every: u64,
    ) -> Result<(), Diverged> {
        feed_from(guard, 1, losses, checkpoint_every)
    }

    /// A loss falling from 14 to 2 over `n` iterations, each up to `noise`
    /// (relative) off the curve, from a fixed pseudo-random sequence.
    fn healthy(n: usize, noise: f64) -> Vec<f64> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
                let clean = 2.0 + 12.0 * (-(i as f64) / 60.0).exp();
                // Quiet at first, as a fresh model's losses are.
                let noise = noise * (1.0 - (-(i as f64) / 20.0).exp());
                clean * (1.0 + noise * (2.0 * uniform - 1.0))
            })
            .collect()
    }

    #[test]
    fn a_healthy_noisy_curve_never_trips() {
        // Losses up to 60% off their curve, far noisier than the bundled
        // run's (a single iteration reaches 4.0 × the lowest before it, the
        // bundled run's 2.7): a window of 50 stays within 1.30 × the best,
        // one of 20 within 1.53.
        let losses = healthy(2000, 0.6);
        for window in [50, 20] {
            let mut guard = DivergenceGuard::new(2.0, window);
            feed(&mut guard, &losses, 100).unwrap();
            assert!(guard.good_checkpoint().is_some());
        }
    }

    #[test]
    fn a_jump_trips_at_the_first_window_past_the_factor() {
        // 100 iterations at 2, then 5 from iteration 101: the window of 10
        // ending at 100 + k holds k fives, a mean of 2 + 0.3 k, past 2 × 2
        // first at k = 7.
        let mut losses = vec![2.0; 100];
        losses.extend([5.0; 20]);
        let mut guard = DivergenceGuard::new(2.0, 10);
        let diverged = feed(&mut guard, &losses, 1000).unwrap_err();
        assert_eq!(diverged.window.end, 107);
        assert_eq!(diverged.window.len, 10);
        assert!((diverged.window.mean - 4.1).abs() < 1e-12, "{diverged:?}");
        // The first window, of one iteration, is the best (no later mean
        // is lower).
        let first = LossWindow {
            mean: 2.0,
            end: 1,
            len: 1,
        };
        assert_eq!(diverged.best, first);
        assert_eq!(diverged.best.start(), 1);
        assert_eq!(diverged.best.iterations(), "iteration 1");
        assert_eq!(diverged.window.iterations(), "iterations 98-107");
    }

    #[test]
    fn an_explosion_before_the_first_full_window_trips() {
        // A learning rate too high at the end of the warm-up's first step.
        let losses = [13.84, 13.81, 2.8e9, 1.3e9];
        let mut guard = DivergenceGuard::new(2.0, 50);
        let diverged = feed(&mut guard, &losses, 1).unwrap_err();
        assert_eq!(diverged.window.end, 3);
        assert_eq!(diverged.window.len, 3);
        assert_eq!((diverged.best.end, diverged.best.len), (2, 2));
        assert_eq!(diverged.good_checkpoint, Some(2));
    }

    #[test]
    fn a_spike_shorter_than_the_window_does_not_trip() {
        // One iteration at 6 × the loss moves a window of 10 to 1.5 × it.
        let mut losses = vec![2.0; 100];
        losses[50] = 12.0;
        let mut guard = DivergenceGuard::new(2.0, 10);
        feed(&mut guard, &losses, 10).unwrap();
    }

    /// Falling to iteration 40 (10, 9.8, …, 2.2), then climbing from 3.55
    /// by 0.1 an iteration: the best window of 5 is 36-40, mean 2.6; a
    /// window of the climb ending at t has the mean 3.55 + 0.1 (t - 43),
    /// past 2 × 2.6 first at t = 60.
    fn fall_then_climb() -> Vec<f64> {
        let mut losses: Vec<f64> = (0..40).map(|i| 10.0 - 0.2 * f64::from(i)).collect();
        losses.extend((0..60).map(|i| 3.55 + 0.1 * f64::from(i)));
        losses
    }

    #[test]
    fn the_good_checkpoint_is_the_newest_at_or_before_the_best_window() {
        let losses = fall_then_climb();
        // Checkpoints every 10: 40 is good, 50 (on the way up) is not.
        let mut guard = DivergenceGuard::new(2.0, 5);
        let diverged = feed(&mut guard, &losses, 10).unwrap_err();
        assert_eq!((diverged.best.start(), diverged.best.end), (36, 40));
        assert!((diverged.best.mean - 2.6).abs() < 1e-9, "{diverged:?}");
        assert_eq!(diverged.window.end, 60);
        assert_eq!(diverged.good_checkpoint, Some(40));
        assert_eq!(guard.good_checkpoint(), Some(40));

        // Every 15: the best window ends between 30 and 45; 30 is good.
        let mut guard = DivergenceGuard::new(2.0, 5);
        let diverged = feed(&mut guard, &losses, 15).unwrap_err();
        assert_eq!(diverged.good_checkpoint, Some(30));
    }

    #[test]
    fn a_resumed_run_trips_where_the_uninterrupted_run_did() {
        let losses = fall_then_climb();
        // Interrupted after the checkpoint at 50, resumed from it.
        let mut first = DivergenceGuard::new(2.0, 5);
        feed(&mut first, &losses[..50], 10).unwrap();
        let state = first.state().unwrap();
        assert_eq!(state.recent.len(), 5);
        assert_eq!(
            (state.good, state.after_best.as_slice()),
            (Some(40), &[50][..])
        );
        let mut resumed = DivergenceGuard::resumed(2.0, 5, 50, Some(state.clone()), |_| true);
        let diverged = feed_from(&mut resumed, 51, &losses[50..], 10).unwrap_err();
        assert_eq!(
            (diverged.window.end, diverged.good_checkpoint),
            (60, Some(40))
        );

        // The good checkpoint's file gone: the resumed one is good.
        let resumed = DivergenceGuard::resumed(2.0, 5, 50, Some(state.clone()), |i| i != 40);
        assert_eq!(resumed.good_checkpoint(), Some(50));
        // Another window: the losses go on, the best starts over.
        let mut resumed = DivergenceGuard::resumed(2.0, 3, 50, Some(state), |_| true);
        feed_from(&mut resumed, 51, &[5.0, 5.0], 10).unwrap();
        assert_eq!(resumed.best.map(|b| (b.end, b.len)), Some((51, 3)));
    }

    #[test]
    fn a_resume_without_state_waits_for_a_full_window() {
        let mut guard = DivergenceGuard::resumed(2.0, 5, 300, None, |_| true);
        // Noise that a window of one or two would take for divergence.
        feed_from(&mut guard, 301, &[1.0, 3.0, 2.0, 2.0], 1).unwrap();
        assert_eq!(guard.good_checkpoint(), Some(300));
        assert_eq!(guard.best, None);
        // The first full window: the newest checkpoint is good.
        guard.observe(305, 2.0).unwrap();
        assert_eq!(guard.good_checkpoint(), Some(304));
    }

    #[test]
    fn the_peak_ratio_is_the_window_that_trips_the_guard() {
        // The jump of `a_jump_trips_at_the_first_window_past_the_factor`:
        // its windows of 10 reach 2 + 0.3 k over the best of 2, 5 / 2 once
        // they hold only fives; the guard at 2 trips at the 7th, 4.1 / 2.
        let mut losses = vec![2.0; 100];
        losses.extend([5.0; 20]);
        let peak = peak_window_ratio(&losses, 10).unwrap();
        assert!((peak - 2.5).abs() < 1e-12, "{peak}");
        let mut guard = DivergenceGuard::new(2.0, 10);
        let diverged = feed(&mut guard, &losses, 1000).unwrap_err();
        let tripped = guard.peak_ratio.unwrap();
        assert!(tripped > 2.0 && tripped <= peak, "{tripped}");
        assert_eq!(tripped, diverged.window.mean / diverged.best.mean);

        // A falling curve: every window is the best so far, each a little
        // below the one before.
        let falling: Vec<f64> = (0..50).map(|i| 10.0 - 0.1 * f64::from(i)).collect();
        let peak = peak_window_ratio(&falling, 5).unwrap();
        assert!(peak < 1.0, "{peak}");
        // The bundled run's noise stays well under the trip at 2.
        let noisy = peak_window_ratio(&healthy(2000, 0.6), 50).unwrap();
        assert!((1.0..1.35).contains(&noisy), "{noisy}");

        assert_eq!(peak_window_ratio(&[3.0], 5), None);
        assert_eq!(peak_window_ratio(&[3.0, f64::NAN, 2.0], 5), None);
    }

    #[test]
    fn factor_0_turns_the_guard_off() {
        let mut losses = vec![2.0; 10];
        losses.extend([1e10; 10]);
        let mut guard = DivergenceGuard::new(0.0, 2);
        feed(&mut guard, &losses, 1).unwrap();
        assert_eq!(guard.good_checkpoint(), None, "nothing protected");
        assert_eq!(guard.state(), None, "nothing to keep");
    }
}
