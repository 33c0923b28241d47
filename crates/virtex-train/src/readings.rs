//! The readings of training steps, kept on the device until they are needed.
//!
//! Reading a scalar back from a GPU waits for every kernel queued before it,
//! so a loop that reads its loss each step stalls the device each step. The
//! loop hands each step's loss, loss terms and gradient norm (`[1]`-shaped
//! device tensors) to a [`PendingReadings`] instead, and reads them all at
//! once, in one transfer, when it logs, validates, checkpoints or stops
//! ([`PendingReadings::take`]). On the CPU backend this changes nothing but
//! when the values are looked at.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// What the host knows about a step without reading the device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostReadings {
    /// The iteration, from 1.
    pub iteration: u64,
    /// Learning rate of the textual head (after the schedule).
    pub lr: f64,
    /// Learning rate of the backbone (after the schedule).
    pub cnn_lr: f64,
    /// Seconds the step waited for its batch.
    pub data_wait_s: f64,
}

/// One step's readings, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReadings {
    /// What the host knew.
    pub host: HostReadings,
    /// The loss.
    pub loss: f64,
    /// Each loss term, by name.
    pub components: Vec<(&'static str, f64)>,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// The device-side readings of the steps since the last [`take`](Self::take).
pub struct PendingReadings<B: Backend> {
    names: Vec<&'static str>,
    host: Vec<HostReadings>,
    /// Per step: the loss, the terms in `names` order, the gradient norm.
    values: Vec<Tensor<B, 1>>,
}

impl<B: Backend> Default for PendingReadings<B> {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            host: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<B: Backend> PendingReadings<B> {
    /// Adds a step: `loss`, `components` and `grad_norm` are `[1]` tensors on
    /// one device, the terms named the same way every step.
    ///
    /// # Panics
    /// If a step's terms differ from the first step's (the model decides
    /// them, so this is a bug, not bad input).
    pub fn push(
        &mut self,
        host: HostReadings,
        loss: Tensor<B, 1>,
        components: Vec<(&'static str, Tensor<B, 1>)>,
        grad_norm: Tensor<B, 1>,
    ) {
        let names: Vec<&'static str> = components.iter().map(|(name, _)| *name).collect();
        if self.host.is_empty() {
            self.names = names;
        } else {
            assert_eq!(names, self.names, "every step reports the same loss terms");
        }
        self.host.push(host);
        self.values.push(loss);
        self.values
            .extend(components.into_iter().map(|(_, term)| term));
        self.values.push(grad_norm);
    }

    /// Steps waiting to be read.
    pub fn len(&self) -> usize {
        self.host.len()
    }

    /// Whether no step waits.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// Every value of the pending steps, read in one transfer, in step order:
    /// loss, terms, gradient norm.
    pub fn read(&self) -> Vec<f64> {
        if self.values.is_empty() {
            return Vec::new();
        }
        let data: TensorData = Tensor::cat(self.values.clone(), 0).into_data();
        data.iter::<f64>().collect()
    }

    /// The pending steps with `values` (as [`read`](Self::read) returns
    /// them, possibly averaged over ranks since), leaving none pending.
    ///
    /// # Panics
    /// If `values` does not hold one value per pending reading.
    pub fn take(&mut self, values: &[f64]) -> Vec<StepReadings> {
        let width = self.names.len() + 2;
        assert_eq!(
            values.len(),
            self.host.len() * width,
            "one value per reading"
        );
        self.values.clear();
        self.host
            .drain(..)
            .zip(values.chunks_exact(width))
            .map(|(host, step)| StepReadings {
                host,
                loss: step[0],
                components: self
                    .names
                    .iter()
                    .copied()
                    .zip(step[1..width - 1].iter().copied())
                    .collect(),
                grad_norm: step[width - 1],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::Flex;

    fn scalar(value: f32) -> Tensor<Flex, 1> {
        Tensor::from_floats([value], &Default::default())
    }

    fn host(iteration: u64) -> HostReadings {
        HostReadings {
            iteration,
            lr: 0.1 * iteration as f64,
            cnn_lr: 0.2,
            data_wait_s: 0.0,
        }
    }

    #[test]
    fn reads_every_pending_step_in_order_and_empties() {
        let mut pending = PendingReadings::<Flex>::default();
        assert!(pending.read().is_empty());
        for step in 1..=3u64 {
            let s = step as f32;
            pending.push(
                host(step),
                scalar(s),
                vec![
                    ("forward", scalar(10.0 * s)),
                    ("backward", scalar(20.0 * s)),
                ],
                scalar(-s),
            );
        }
        assert_eq!(pending.len(), 3);
        let values = pending.read();
        assert_eq!(
            values,
            [
                1.0, 10.0, 20.0, -1.0, 2.0, 20.0, 40.0, -2.0, 3.0, 30.0, 60.0, -3.0
            ]
        );
        let steps = pending.take(&values);
        assert!(pending.is_empty() && pending.read().is_empty());
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[2].host, host(3));
        assert_eq!(steps[2].loss, 3.0);
        assert_eq!(steps[2].components, [("forward", 30.0), ("backward", 60.0)]);
        assert_eq!(steps[2].grad_norm, -3.0);
    }

    #[test]
    #[should_panic(expected = "same loss terms")]
    fn refuses_a_step_with_other_terms() {
        let mut pending = PendingReadings::<Flex>::default();
        pending.push(
            host(1),
            scalar(1.0),
            vec![("forward", scalar(1.0))],
            scalar(0.0),
        );
        pending.push(host(2), scalar(1.0), vec![], scalar(0.0));
    }
}
