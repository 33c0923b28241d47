//! burn-train's terminal dashboard ([`TuiMetricsRendererWrapper`]) driven by
//! an iteration loop that is not burn-train's Learner.
//!
//! The Learner thinks in epochs; a virtex-rs run is one "epoch" of `total`
//! iterations, so the dashboard's progress bar and ETA follow iterations.
//! Every reading becomes a numeric metric (plotted, train or valid split);
//! validation captions a text metric.

use std::collections::HashMap;
use std::sync::Arc;

use burn_train::Interrupter;
use burn_train::metric::{
    MetricAttributes, MetricDefinition, MetricEntry, MetricId, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use burn_train::renderer::tui::TuiMetricsRendererWrapper;
use burn_train::renderer::{
    MetricState, MetricsRenderer, MetricsRendererTraining, ProgressType, TrainingProgress,
};

use super::Reading;

/// The dashboard of one loop.
pub(super) struct Dashboard {
    renderer: TuiMetricsRendererWrapper,
    interrupter: Interrupter,
    metrics: HashMap<String, MetricId>,
    title: String,
    total: u64,
}

impl Dashboard {
    /// Takes over the terminal for a loop at iteration `start` of `total`.
    pub(super) fn open(title: &str, start: u64, total: u64) -> Self {
        let interrupter = Interrupter::new();
        let renderer = open_renderer(interrupter.clone());
        let mut dashboard = Self {
            renderer,
            interrupter,
            metrics: HashMap::new(),
            title: title.to_string(),
            total,
        };
        dashboard.show_progress(start, false);
        dashboard
    }

    /// The readings of training iteration `done`.
    pub(super) fn train(&mut self, done: u64, readings: &[Reading]) {
        for &(name, value) in readings {
            let state = self.numeric(name, value);
            self.renderer.update_train(state);
        }
        self.show_progress(done, false);
    }

    /// A validation after iteration `done`.
    pub(super) fn valid(&mut self, done: u64, readings: &[Reading], text: &[String]) {
        for &(name, value) in readings {
            let state = self.numeric(name, value);
            self.renderer.update_valid(state);
        }
        if !text.is_empty() {
            let id = self.metric_id("captions", MetricAttributes::None);
            let joined = text.join(" | ");
            let entry = MetricEntry::new(
                id,
                SerializedEntry {
                    formatted: joined.clone(),
                    serialized: joined,
                },
            );
            self.renderer.update_valid(MetricState::Generic(entry));
        }
        self.show_progress(done, true);
    }

    /// Whether the user chose "stop" on the dashboard (`q`, then `s`).
    pub(super) fn stop_requested(&self) -> bool {
        self.interrupter.should_stop()
    }

    fn numeric(&mut self, name: &str, value: f64) -> MetricState {
        let attributes = NumericAttributes {
            unit: None,
            higher_is_better: name.contains("/s"),
        };
        let id = self.metric_id(name, attributes.into());
        let entry = MetricEntry::new(
            id,
            SerializedEntry {
                formatted: format!("{name}: {}", super::format_value(value)),
                serialized: value.to_string(),
            },
        );
        MetricState::Numeric(entry, NumericEntry::Value(value))
    }

    /// The id of metric `name`, registering it on first use.
    fn metric_id(&mut self, name: &str, attributes: MetricAttributes) -> MetricId {
        if let Some(id) = self.metrics.get(name) {
            return id.clone();
        }
        let id = MetricId::new(Arc::new(name.to_string()));
        self.renderer.register_metric(MetricDefinition {
            metric_id: id.clone(),
            name: name.to_string(),
            description: None,
            attributes,
        });
        self.metrics.insert(name.to_string(), id.clone());
        id
    }

    fn show_progress(&mut self, done: u64, validation: bool) {
        let progress = TrainingProgress {
            progress: Some(burn::data::dataloader::Progress {
                items_processed: done as usize,
                items_total: self.total.max(1) as usize,
            }),
            global_progress: burn::data::dataloader::Progress {
                items_processed: 1,
                items_total: 1,
            },
            iteration: Some(done as usize),
        };
        let indicators = vec![ProgressType::Detailed {
            tag: self.title.clone(),
            progress: burn::data::dataloader::Progress {
                items_processed: done as usize,
                items_total: self.total as usize,
            },
        }];
        if validation {
            self.renderer.render_valid(progress, indicators);
        } else {
            self.renderer.render_train(progress, indicators);
        }
    }
}

/// burn-train's renderer thread redraws ten times a second (upstream 0.21 also
/// polled its channel without sleeping in between, which took a core from
/// training on a 2-core machine: crates/vendor/README.md). It is created from
/// a helper thread at the lowest priority (nice 19), which Linux threads pass
/// to the threads they spawn, so its redraws only take cycles nothing else
/// wants.
fn open_renderer(interrupter: Interrupter) -> TuiMetricsRendererWrapper {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                #[cfg(target_os = "linux")]
                let _ = rustix::process::setpriority_process(None, 19);
                TuiMetricsRendererWrapper::new(interrupter, None)
            })
            .join()
            .expect("the dashboard opens")
    })
}
