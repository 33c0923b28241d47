//! Multi-head attention with PyTorch's `nn.MultiheadAttention` semantics:
//! dropout on the attention weights after the softmax, an additive float mask,
//! and parameters that map one-to-one onto `in_proj_weight` (rows q; k; v) and
//! `out_proj`. burn's own `MultiHeadAttention` drops out the scores before the
//! softmax and fills masks with −10⁴, so the reference's training behaviour
//! needs this small module instead.

use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use virtex_vision::Precision;

/// How a fresh linear layer's bias starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BiasInit {
    /// Zero, PyTorch's default for `nn.MultiheadAttention`'s projections.
    Zero,
    /// `U(±1/√fan_in)`, PyTorch's `nn.Linear` default, which the reference keeps.
    FanIn,
}

/// A `Linear(d_in → d_out)` initialised as the reference's `_init_weights`:
/// weight `N(0, 0.02)`, bias per `bias`.
pub(crate) fn reference_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: BiasInit,
    device: &B::Device,
) -> Linear<B> {
    let weight = Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
    .init_with([d_in, d_out], Some(d_in), Some(d_out), device);
    let bias = match bias {
        BiasInit::Zero => Initializer::Zeros.init([d_out], device),
        BiasInit::FanIn => {
            let bound = 1.0 / (d_in as f64).sqrt();
            Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([d_out], device)
        }
    };
    Linear {
        weight,
        bias: Some(bias),
    }
}

/// Multi-head scaled dot-product attention.
#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    /// Query projection (`in_proj_weight[0:H]`).
    pub query: Linear<B>,
    /// Key projection (`in_proj_weight[H:2H]`).
    pub key: Linear<B>,
    /// Value projection (`in_proj_weight[2H:3H]`).
    pub value: Linear<B>,
    /// Output projection (`out_proj`).
    pub out_proj: Linear<B>,
    /// Dropout on the attention weights.
    pub dropout: Dropout,
    /// Number of heads.
    pub heads: usize,
    /// What the projections and products compute in (not saved).
    #[module(skip)]
    pub precision: Precision,
}

/// Projected keys and values, `[batch, heads, positions, head_dim]` each.
#[derive(Clone, Debug)]
pub struct KeysValues<B: Backend> {
    /// Keys.
    pub keys: Tensor<B, 4>,
    /// Values.
    pub values: Tensor<B, 4>,
}

impl<B: Backend> KeysValues<B> {
    /// Appends `new` along the position axis (incremental decoding).
    pub fn append(self, new: Self) -> Self {
        Self {
            keys: Tensor::cat(vec![self.keys, new.keys], 2),
            values: Tensor::cat(vec![self.values, new.values], 2),
        }
    }

    /// Keeps the batch rows `rows` (reordering beams).
    pub fn select(self, rows: Tensor<B, 1, burn::tensor::Int>) -> Self {
        Self {
            keys: self.keys.select(0, rows.clone()),
            values: self.values.select(0, rows),
        }
    }
}

impl<B: Backend> MultiHeadAttention<B> {
    /// `hidden` wide with `heads` heads, initialised as the reference (weights
    /// `N(0, 0.02)`, biases 0).
    pub fn new(hidden: usize, heads: usize, dropout: f64, device: &B::Device) -> Self {
        let linear = || reference_linear(hidden, hidden, BiasInit::Zero, device);
        Self {
            query: linear(),
            key: linear(),
            value: linear(),
            out_proj: linear(),
            dropout: DropoutConfig::new(dropout).init(),
            heads,
            precision: Precision::F32,
        }
    }

    /// `[batch, positions, H]` → `[batch, heads, positions, H / heads]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [batch, positions, hidden] = x.dims();
        x.reshape([batch, positions, self.heads, hidden / self.heads])
            .swap_dims(1, 2)
    }

    /// Projects `source` `[batch, positions, H]` into keys and values.
    pub fn keys_values(&self, source: Tensor<B, 3>) -> KeysValues<B> {
        KeysValues {
            keys: self.split_heads(self.precision.linear(&self.key, source.clone())),
            values: self.split_heads(self.precision.linear(&self.value, source)),
        }
    }

    /// Attends from `query` `[batch, Tq, H]` over projected `keys_values`
    /// (`Tk` positions). `mask` is added to the scores, broadcastable to
    /// `[batch, heads, Tq, Tk]` (0 to keep, −∞ to block).
    ///
    /// Returns the context `[batch, Tq, H]` and the attention weights
    /// `[batch, heads, Tq, Tk]` (before dropout).
    pub fn attend(
        &self,
        query: Tensor<B, 3>,
        keys_values: &KeysValues<B>,
        mask: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let [batch, positions, hidden] = query.dims();
        let head_dim = hidden / self.heads;
        let query = self.split_heads(self.precision.linear(&self.query, query));
        let mut scores = self
            .precision
            .matmul(query, keys_values.keys.clone().swap_dims(2, 3))
            .div_scalar((head_dim as f32).sqrt());
        if let Some(mask) = mask {
            scores = scores + mask;
        }
        // In f32 whatever the precision, as autocast runs softmax.
        let weights = softmax(scores, 3);
        let context = self
            .precision
            .matmul(
                self.dropout.forward(weights.clone()),
                keys_values.values.clone(),
            )
            .swap_dims(1, 2)
            .reshape([batch, positions, hidden]);
        (self.precision.linear(&self.out_proj, context), weights)
    }
}
