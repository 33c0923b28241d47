//! Live progress of an iteration loop (pretraining, the downstream probes):
//! burn-train's terminal dashboard (loss terms, learning rates, images/s,
//! validation loss, ETA; `q` then `s` stops at the next iteration) when the
//! program has asked for it with [`enable_dashboard`] (feature `dashboard`)
//! and stdout is a terminal; a plain line every `log_every` iterations
//! otherwise (logs, CI, `nohup`, libraries and tests by default).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "dashboard")]
mod dashboard;

static DASHBOARD: AtomicBool = AtomicBool::new(false);

/// Lets the loops of this process show the dashboard when stdout is a
/// terminal (a command-line program calls it once; without the `dashboard`
/// feature it changes nothing).
pub fn enable_dashboard() {
    DASHBOARD.store(true, Ordering::Relaxed);
}

/// One named reading of an iteration, e.g. `("loss", 4.93)`.
pub type Reading<'a> = (&'a str, f64);

/// Reports the progress of one loop.
pub struct Progress {
    #[cfg(feature = "dashboard")]
    dashboard: Option<dashboard::Dashboard>,
    total: u64,
    log_every: u64,
}

impl Progress {
    /// Progress of a loop now at iteration `start` of `total`, named `title`:
    /// the dashboard if enabled ([`enable_dashboard`]) and stdout is a
    /// terminal, plain lines otherwise.
    pub fn new(title: &str, start: u64, total: u64, log_every: u64) -> Self {
        let wanted = DASHBOARD.load(Ordering::Relaxed) && std::io::stdout().is_terminal();
        #[cfg(feature = "dashboard")]
        {
            let mut progress = Self::plain(total, log_every);
            if wanted {
                progress.dashboard = Some(dashboard::Dashboard::open(title, start, total));
            }
            progress
        }
        #[cfg(not(feature = "dashboard"))]
        {
            let _ = (title, start, wanted);
            Self::plain(total, log_every)
        }
    }

    /// Plain lines, whatever stdout is.
    pub fn plain(total: u64, log_every: u64) -> Self {
        Self {
            #[cfg(feature = "dashboard")]
            dashboard: None,
            total,
            log_every: log_every.max(1),
        }
    }

    /// Whether the dashboard is showing.
    pub fn is_dashboard(&self) -> bool {
        #[cfg(feature = "dashboard")]
        return self.dashboard.is_some();
        #[cfg(not(feature = "dashboard"))]
        false
    }

    /// After iteration `done` (1-based): its readings, the loss first.
    pub fn step(&mut self, done: u64, readings: &[Reading]) {
        #[cfg(feature = "dashboard")]
        if let Some(dashboard) = &mut self.dashboard {
            dashboard.train(done, readings);
            return;
        }
        if done.is_multiple_of(self.log_every) || done == self.total {
            eprintln!("iteration {done}/{}: {}", self.total, line(readings));
        }
    }

    /// A validation after iteration `done`: its readings and a few lines of
    /// text (captions).
    pub fn validation(&mut self, done: u64, readings: &[Reading], text: &[String]) {
        #[cfg(feature = "dashboard")]
        if let Some(dashboard) = &mut self.dashboard {
            dashboard.valid(done, readings, text);
            return;
        }
        let text: String = text.iter().map(|line| format!("\n  {line}")).collect();
        eprintln!("iteration {done}: validation {}{text}", line(readings));
    }

    /// Whether the user asked the dashboard to stop the loop.
    pub fn stop_requested(&self) -> bool {
        #[cfg(feature = "dashboard")]
        if let Some(dashboard) = &self.dashboard {
            return dashboard.stop_requested();
        }
        false
    }

    /// Closes the dashboard (restoring the terminal).
    pub fn finish(self) {}
}

/// `loss 4.4005  lr 7.747e-4  images/s 40.9`.
fn line(readings: &[Reading]) -> String {
    readings
        .iter()
        .map(|&(name, value)| format!("{name} {}", format_value(value)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Four decimals, scientific notation below 0.01, one decimal from 100 on.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && magnitude < 0.01 {
        format!("{value:.3e}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_format_each_reading_by_its_size() {
        let readings = [("loss", 4.40051), ("lr", 7.747e-4), ("images/s", 140.93)];
        assert_eq!(line(&readings), "loss 4.4005  lr 7.747e-4  images/s 140.9");
        assert_eq!(format_value(0.0), "0.0000");
    }
}
