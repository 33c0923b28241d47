//! The reference's optimisation (`virtex/factories.py::OptimizerFactory`,
//! `virtex/optim/lookahead.py`): SGD with momentum (PyTorch semantics, no
//! dampening) or AdamW; weight decay except on parameters whose reference
//! name matches `OPTIM.NO_DECAY`; `CNN_LR` for the backbone and `LR` for the
//! rest; global gradient-norm clipping (`clip_grad_norm_`); Lookahead.
//!
//! burn's optimisers take one learning rate and one weight decay per model,
//! and burn has no Lookahead, so the update is written here as a
//! `ModuleMapper` over the parameters (as burn's own optimiser adaptor is).
//! State is keyed by parameter and stored flat (`[numel]`), which keeps it
//! backend- and rank-independent for checkpoints.

pub mod schedule;

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_store::ModuleSnapshot;
use regex::Regex;
use virtex_text::pytorch::official_name;

use crate::config::{OptimConfig, OptimizerName};

/// AdamW's β₁, β₂ and ε (PyTorch's defaults, which the reference keeps).
const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const ADAM_EPS: f64 = 1e-8;

/// How one trainable parameter is optimised.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// burn path, e.g. `textual.transformer.layers.0.norm1.gamma`.
    pub path: String,
    /// The reference's name, e.g. `textual.transformer.layers.0.norm1.weight`.
    pub name: String,
    /// Trained with `CNN_LR` (its name contains `cnn`).
    pub cnn: bool,
    /// Weight decay applies (its name does not match `NO_DECAY`).
    pub decay: bool,
}

/// The trainable parameters of a model by id (BatchNorm running statistics
/// are buffers, not parameters, and are left out).
#[derive(Clone, Debug)]
pub struct ParameterTable {
    /// Parameter id → how it is optimised.
    pub by_id: HashMap<ParamId, ParamInfo>,
}

impl ParameterTable {
    /// Names every parameter of `model`; `no_decay` is matched at the start
    /// of the reference name, as Python's `re.match`.
    pub fn new<B: Backend, M: ModuleSnapshot<B>>(
        model: &M,
        no_decay: &str,
    ) -> Result<Self, regex::Error> {
        let no_decay = Regex::new(&format!("^(?:{no_decay})"))?;
        let by_id = model
            .collect(None, None, true)
            .into_iter()
            .filter_map(|snapshot| {
                let path = snapshot.full_path();
                if path.ends_with("running_mean") || path.ends_with("running_var") {
                    return None;
                }
                let name = official_name(&path);
                let info = ParamInfo {
                    cnn: name.contains("cnn"),
                    decay: !no_decay.is_match(&name),
                    path,
                    name,
                };
                Some((snapshot.tensor_id?, info))
            })
            .collect();
        Ok(Self { by_id })
    }

    /// Parameter id of each burn path.
    pub fn ids_by_path(&self) -> HashMap<&str, ParamId> {
        self.by_id
            .iter()
            .map(|(id, info)| (info.path.as_str(), *id))
            .collect()
    }
}

/// Per-parameter optimiser state, each tensor flat `[numel]`.
#[derive(Clone, Debug)]
pub struct ParamState<B: Backend> {
    /// SGD momentum buffer, or AdamW's first moment.
    pub first: Option<Tensor<B, 1>>,
    /// AdamW's second moment.
    pub second: Option<Tensor<B, 1>>,
    /// Lookahead's slow weights.
    pub slow: Option<Tensor<B, 1>>,
}

impl<B: Backend> Default for ParamState<B> {
    fn default() -> Self {
        Self {
            first: None,
            second: None,
            slow: None,
        }
    }
}

/// Learning rates of one step (base rates × the schedule's multiplier).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepRates {
    /// For the backbone.
    pub cnn_lr: f64,
    /// For everything else.
    pub lr: f64,
}

/// SGD/AdamW with the reference's groups, clipping and Lookahead.
#[derive(Clone, Debug)]
pub struct VirtexOptimizer<B: AutodiffBackend> {
    config: OptimConfig,
    table: ParameterTable,
    /// State by parameter.
    pub state: HashMap<ParamId, ParamState<B::InnerBackend>>,
    /// Optimiser steps taken.
    pub steps: u64,
}

impl<B: AutodiffBackend> VirtexOptimizer<B> {
    /// An optimiser for `model`; with Lookahead, the slow weights start as
    /// the model's current parameters.
    pub fn new<M: AutodiffModule<B>>(
        model: &M,
        config: &OptimConfig,
    ) -> Result<Self, regex::Error> {
        let mut table = ParameterTable::new(model, &config.no_decay)?;
        // Parameters held out of training (`Module::no_grad`, a frozen
        // backbone) get neither updates nor state.
        let mut held_out = HeldOut(Vec::new());
        model.visit(&mut held_out);
        for id in held_out.0 {
            table.by_id.remove(&id);
        }
        let mut optimizer = Self {
            config: config.clone(),
            table,
            state: HashMap::new(),
            steps: 0,
        };
        if config.lookahead.enabled {
            model.visit(&mut SlowWeights {
                optimizer: &mut optimizer,
            });
        }
        Ok(optimizer)
    }

    /// The parameter table.
    pub fn table(&self) -> &ParameterTable {
        &self.table
    }

    /// The global L2 norm of the gradients, as `clip_grad_norm_` computes
    /// it, `[1]` on the gradients' device (`None` without gradients).
    fn grad_norm<M: AutodiffModule<B>>(
        &self,
        model: &M,
        grads: &GradientsParams,
    ) -> Option<Tensor<B::InnerBackend, 1>> {
        let mut norm = GradNorm {
            table: &self.table,
            grads,
            sum: None,
        };
        model.visit(&mut norm);
        norm.sum.map(Tensor::sqrt)
    }

    /// One optimiser step: clip, update, and every `k` steps pull the fast
    /// weights halfway (alpha) to the slow ones. Returns the model and the
    /// gradient norm before clipping (`[1]`, on the device: the clip factor
    /// is computed and applied there, so a step reads nothing back; `None`
    /// when no parameter has a gradient).
    pub fn step<M: AutodiffModule<B>>(
        &mut self,
        model: M,
        grads: GradientsParams,
        rates: StepRates,
    ) -> (M, Option<Tensor<B::InnerBackend, 1>>) {
        let norm = self.grad_norm(&model, &grads);
        let clip = self.config.clip_grad_norm;
        // min(clip / (norm + 1e-6), 1), as `clip_grad_norm_`.
        let scale = norm.as_ref().filter(|_| clip > 0.0).map(|norm| {
            norm.clone()
                .add_scalar(1e-6)
                .recip()
                .mul_scalar(clip)
                .clamp_max(1.0)
        });
        self.steps += 1;
        let lookahead = &self.config.lookahead;
        let sync = lookahead.enabled && self.steps.is_multiple_of(lookahead.steps);
        let model = model.map(&mut Update {
            optimizer: self,
            grads,
            scale,
            rates,
            sync,
        });
        (model, norm)
    }
}

/// The ids of the parameters that take no gradient.
struct HeldOut(Vec<ParamId>);

impl<B: AutodiffBackend> ModuleVisitor<B> for HeldOut {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.val().is_require_grad() {
            self.0.push(param.id);
        }
    }
}

/// Records each trainable parameter as its slow weight.
struct SlowWeights<'a, B: AutodiffBackend> {
    optimizer: &'a mut VirtexOptimizer<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SlowWeights<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.optimizer.table.by_id.contains_key(&param.id) {
            let flat = param.val().inner().flatten::<1>(0, D - 1);
            self.optimizer.state.entry(param.id).or_default().slow = Some(flat);
        }
    }
}

/// Sums the squared gradients of the trainable parameters.
struct GradNorm<'a, B: AutodiffBackend> {
    table: &'a ParameterTable,
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.table.by_id.contains_key(&param.id) {
            return;
        }
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = grad.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

/// Applies one update to every parameter that has a gradient.
struct Update<'a, B: AutodiffBackend> {
    optimizer: &'a mut VirtexOptimizer<B>,
    grads: GradientsParams,
    /// The clip factor, `[1]` (`None`: no clipping).
    scale: Option<Tensor<B::InnerBackend, 1>>,
    rates: StepRates,
    sync: bool,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Update<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(info) = self.optimizer.table.by_id.get(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let config = &self.optimizer.config;
        let lr = if info.cnn {
            self.rates.cnn_lr
        } else {
            self.rates.lr
        };
        let decay = if info.decay { config.weight_decay } else { 0.0 };
        let shape = tensor.shape();
        let require_grad = tensor.is_require_grad();
        let p = tensor.inner().flatten::<1>(0, D - 1);
        let mut g = grad.flatten::<1>(0, D - 1);
        if let Some(scale) = &self.scale {
            g = g * scale.clone();
        }
        let state = self.optimizer.state.entry(id).or_default();
        let mut p = match config.optimizer_name {
            OptimizerName::Sgd => {
                // torch.optim.SGD: d = g + λp; b = μb + d (b = d at first); p −= lr·b.
                let d = g + p.clone() * decay;
                let buffer = match state.first.take() {
                    Some(buffer) => buffer * config.sgd_momentum + d,
                    None => d,
                };
                let p = p - buffer.clone() * lr;
                state.first = Some(buffer);
                p
            }
            OptimizerName::Adamw => {
                // torch.optim.AdamW: p ·= 1 − lr·λ; Adam on g with bias correction.
                let (beta1, beta2) = ADAM_BETAS;
                let t = self.optimizer.steps as i32;
                let p = p.clone() * (1.0 - lr * decay);
                let m = match state.first.take() {
                    Some(m) => m * beta1 + g.clone() * (1.0 - beta1),
                    None => g.clone() * (1.0 - beta1),
                };
                let v = match state.second.take() {
                    Some(v) => v * beta2 + g.clone() * g * (1.0 - beta2),
                    None => g.clone() * g * (1.0 - beta2),
                };
                let denom = v.clone().sqrt() / (1.0 - beta2.powi(t)).sqrt() + ADAM_EPS;
                let p = p - m.clone() / denom * (lr / (1.0 - beta1.powi(t)));
                state.first = Some(m);
                state.second = Some(v);
                p
            }
        };
        if self.sync
            && let Some(slow) = state.slow.take()
        {
            // Lookahead: slow += α(fast − slow); fast = slow.
            let slow = slow.clone() + (p - slow) * config.lookahead.alpha;
            p = slow.clone();
            state.slow = Some(slow);
        }
        let mut tensor = Tensor::from_inner(p.reshape(shape));
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
