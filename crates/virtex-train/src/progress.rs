//! Live progress: an indicatif bar with loss, learning rate, images/s and ETA
//! on a terminal; a plain line every `TRAIN.LOG_EVERY` iterations otherwise
//! (logs, CI).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports training progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    log_every: u64,
}

impl Progress {
    /// Progress from iteration `start` of `total`.
    pub fn new(start: u64, total: u64, log_every: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total).with_position(start);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
                )
                .expect("a valid template"),
            );
            bar
        });
        Self {
            bar,
            total,
            log_every: log_every.max(1),
        }
    }

    /// After iteration `done`.
    pub fn step(&mut self, done: u64, loss: f64, lr: f64, images_per_s: f64) {
        let status = format!("loss {loss:.4}  lr {lr:.3e}  {images_per_s:.1} img/s");
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(status);
            }
            None if done.is_multiple_of(self.log_every) || done == self.total => {
                eprintln!("iteration {done}/{}: {status}", self.total);
            }
            None => {}
        }
    }

    /// A message above the bar (validation results).
    pub fn message(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
