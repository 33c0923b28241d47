//! An iteration's training step, and reading the steps' results back.
//!
//! A step waits for its batch (the wait is recorded as `data_wait_s`),
//! reseeds the backend, runs forward and backward on the worker thread
//! ([`crate::worker`]), averages the gradients over the ranks and steps the
//! optimiser. Its loss stays on the device ([`crate::readings`]) until the
//! loop reads the steps since the last read back, all at once.

use std::time::Instant;

use burn::tensor::Tensor;
use virtex_text::PretrainingModel;
use virtex_vision::AutodiffVisionBackend;

use crate::config::Config;
use crate::data::Batches;
use crate::distributed::Replicas;
use crate::error::TrainError;
use crate::optim::schedule::LrSchedule;
use crate::optim::{StepRates, VirtexOptimizer};
use crate::readings::{HostReadings, PendingReadings, StepReadings};
use crate::step::{StepGradients, forward_backward};
use crate::worker::on_worker_thread;

/// The training steps of a run, and their readings not yet read back.
pub(super) struct Steps<'a, B: AutodiffVisionBackend> {
    config: &'a Config,
    device: &'a B::Device,
    schedule: LrSchedule,
    pending: PendingReadings<B::InnerBackend>,
    window: Window,
}

/// The steps since the last read: when they started, how many images.
struct Window {
    started: Instant,
    images: usize,
}

impl Window {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            images: 0,
        }
    }
}

impl<'a, B: AutodiffVisionBackend> Steps<'a, B> {
    /// The steps of a run of `config` on `device`; the first throughput
    /// window starts now.
    pub fn new(config: &'a Config, device: &'a B::Device) -> Self {
        Self {
            config,
            device,
            schedule: LrSchedule::new(&config.optim),
            pending: PendingReadings::default(),
            window: Window::start(),
        }
    }

    /// The step of iteration `iteration` (from 0) on `model`, with the next
    /// of `batches`: the stepped model. Its readings wait for
    /// [`Self::read`].
    pub fn step(
        &mut self,
        model: PretrainingModel<B>,
        optimizer: &mut VirtexOptimizer<B>,
        batches: &mut Batches,
        replicas: &mut Replicas,
        iteration: u64,
    ) -> Result<PretrainingModel<B>, TrainError> {
        // Time spent waiting for the loader: near 0 while its prefetch keeps
        // up, most of the step in a data-bound run.
        let (batch, data_wait_s) = timed(|| batches.next());
        let batch = batch?;
        let (config, device) = (self.config, self.device);
        B::seed(
            device,
            step_seed(config.random_seed, iteration, replicas.rank()),
        );
        let frozen = config.model.visual.frozen;
        let step = on_worker_thread(|| forward_backward(&model, &batch, device, frozen))?;
        let StepGradients {
            loss,
            components,
            grads,
        } = replicas.average(step, &model, device)?;
        let multiplier = self.schedule.multiplier(iteration);
        let rates = StepRates {
            cnn_lr: config.optim.cnn_lr * multiplier,
            lr: config.optim.lr * multiplier,
        };
        let (model, grad_norm) = on_worker_thread(|| optimizer.step(model, grads, rates));
        let host = HostReadings {
            iteration: iteration + 1,
            lr: rates.lr,
            cnn_lr: rates.cnn_lr,
            data_wait_s,
        };
        let grad_norm = grad_norm.unwrap_or_else(|| Tensor::zeros([1], &loss.device()));
        self.pending.push(host, loss, components, grad_norm);
        self.window.images += batch.len() * replicas.world_size();
        Ok(model)
    }

    /// The readings of the steps since the last read, averaged over the
    /// ranks (one transfer from the device, one collective), and the images
    /// per second of those steps.
    pub fn read(
        &mut self,
        replicas: &mut Replicas,
    ) -> Result<(Vec<StepReadings>, f64), TrainError> {
        let mut values = self.pending.read();
        replicas.mean(&mut values)?;
        let steps = self.pending.take(&values);
        // Images of the global batches, all ranks together, over the
        // window's wall time (a GPU runs ahead of the host within it).
        let images_per_s = self.window.images as f64 / self.window.started.elapsed().as_secs_f64();
        Ok((steps, images_per_s))
    }

    /// Starts a new throughput window if the readings of this one are out
    /// (called once an iteration's validation and checkpoint are done:
    /// those are not training throughput, as they are no step's time).
    pub fn next_window(&mut self) {
        if self.pending.is_empty() {
            self.window = Window::start();
        }
    }
}

/// The backend's seed for the step of iteration `iteration` (from 0) on
/// `rank`: `seed + iteration + 1`, mixed with the rank so that each rank
/// draws its own dropout masks (rank 0 keeps it as it is, and so draws those
/// of a single process).
pub(super) fn step_seed(seed: u64, iteration: u64, rank: usize) -> u64 {
    virtex_data::seed::mix(seed.wrapping_add(iteration + 1), rank as u64)
}

/// What `wait` returns, and the seconds it took.
fn timed<T>(wait: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let value = wait();
    (value, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn each_rank_reseeds_from_the_seed_and_the_iteration() {
        for (seed, iteration, rank) in [(0, 0, 0), (7, 41, 0), (7, 41, 3), (u64::MAX, 5, 1)] {
            // The formula every released run used: resumed runs repeat it.
            let written_out = seed.wrapping_add(iteration + 1)
                ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(step_seed(seed, iteration, rank), written_out);
        }
        assert_eq!(
            step_seed(7, 41, 0),
            49,
            "rank 0: the seed plus the iteration from 1"
        );
        assert_ne!(step_seed(7, 41, 1), step_seed(7, 41, 2));
        assert_ne!(step_seed(7, 41, 1), step_seed(7, 42, 1));
    }

    #[test]
    fn the_wait_for_a_batch_covers_the_time_it_was_held_back() {
        let (send, receive) = mpsc::channel();
        let (go, started) = mpsc::channel();
        let held = Duration::from_millis(50);
        let loader = std::thread::spawn(move || {
            started.recv().unwrap();
            std::thread::sleep(held);
            send.send("batch").unwrap();
        });
        // The loader holds the batch back only once the clock runs.
        let (batch, waited) = timed(|| {
            go.send(()).unwrap();
            receive.recv()
        });
        loader.join().unwrap();
        assert_eq!(batch, Ok("batch"));
        // A sleep never ends early: the wait is at least what was held back.
        assert!(waited >= held.as_secs_f64(), "{waited} s");
    }
}
