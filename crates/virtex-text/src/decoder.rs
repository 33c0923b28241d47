//! The Transformer decoder (`nn.TransformerDecoder` of
//! `nn.TransformerDecoderLayer(H, A, F, dropout, activation="gelu",
//! batch_first=True, norm_first=…)`), with an incremental mode that caches each
//! layer's self-attention keys and values so decoding step `t` costs one
//! position, not `t`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use virtex_vision::Precision;

use crate::attention::{BiasInit, KeysValues, MultiHeadAttention, reference_linear};
use crate::head_name::{NormPosition, TransformerSize};

/// LayerNorm epsilon inside the Transformer (PyTorch's default).
const TRANSFORMER_LAYER_NORM_EPS: f64 = 1e-5;

/// One decoder layer: self-attention, cross-attention over the visual memory,
/// GELU feed-forward; each with dropout and a residual, normalised after
/// (post-norm) or before (pre-norm).
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Masked self-attention over the caption.
    pub self_attn: MultiHeadAttention<B>,
    /// Cross-attention over the visual memory.
    pub multihead_attn: MultiHeadAttention<B>,
    /// Feed-forward in, `H → F`.
    pub linear1: Linear<B>,
    /// Feed-forward out, `F → H`.
    pub linear2: Linear<B>,
    /// Norm of the self-attention block.
    pub norm1: LayerNorm<B>,
    /// Norm of the cross-attention block.
    pub norm2: LayerNorm<B>,
    /// Norm of the feed-forward block.
    pub norm3: LayerNorm<B>,
    /// Dropout on each block's output and inside the feed-forward.
    pub dropout: Dropout,
    /// Whether the norms come first (pre-norm).
    pub pre_norm: bool,
    /// What the feed-forward computes in (not saved).
    #[module(skip)]
    pub precision: Precision,
}

/// What one layer needs to decode the next position: its self-attention keys
/// and values so far and the cross-attention keys and values of the memory.
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    past: Option<KeysValues<B>>,
    memory: KeysValues<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn new(size: &TransformerSize, pre_norm: bool, dropout: f64, device: &B::Device) -> Self {
        let norm = || {
            LayerNormConfig::new(size.hidden)
                .with_epsilon(TRANSFORMER_LAYER_NORM_EPS)
                .init(device)
        };
        Self {
            self_attn: MultiHeadAttention::new(size.hidden, size.heads, dropout, device),
            multihead_attn: MultiHeadAttention::new(size.hidden, size.heads, dropout, device),
            linear1: reference_linear(size.hidden, size.feedforward, BiasInit::FanIn, device),
            linear2: reference_linear(size.feedforward, size.hidden, BiasInit::FanIn, device),
            norm1: norm(),
            norm2: norm(),
            norm3: norm(),
            dropout: DropoutConfig::new(dropout).init(),
            pre_norm,
            precision: Precision::F32,
        }
    }

    /// Computes this layer's products (attention and feed-forward) in `precision`.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.self_attn.precision = precision;
        self.multihead_attn.precision = precision;
    }

    fn feed_forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self
            .dropout
            .forward(gelu(self.precision.linear(&self.linear1, x)));
        self.dropout
            .forward(self.precision.linear(&self.linear2, hidden))
    }

    /// Runs the three blocks given how to attend: `self_attend` maps the
    /// (normed) input to the self-attention context, `cross_attend` the
    /// (normed) running state to the cross-attention context and weights.
    fn blocks(
        &self,
        x: Tensor<B, 3>,
        self_attend: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
        cross_attend: impl FnOnce(Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 4>),
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        if self.pre_norm {
            let x = x.clone() + self.dropout.forward(self_attend(self.norm1.forward(x)));
            let (context, weights) = cross_attend(self.norm2.forward(x.clone()));
            let x = x + self.dropout.forward(context);
            let x = x.clone() + self.feed_forward(self.norm3.forward(x));
            (x, weights)
        } else {
            let x = self
                .norm1
                .forward(x.clone() + self.dropout.forward(self_attend(x)));
            let (context, weights) = cross_attend(x.clone());
            let x = self.norm2.forward(x + self.dropout.forward(context));
            let x = self.norm3.forward(x.clone() + self.feed_forward(x));
            (x, weights)
        }
    }

    /// Full-sequence forward.
    ///
    /// # Shapes
    /// - `x`: `[batch, T, H]`, `memory`: `[batch, S, H]`
    /// - `self_mask`: additive, broadcastable to `[batch, heads, T, T]`
    /// - returns `[batch, T, H]` and the cross-attention weights `[batch, heads, T, S]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        self_mask: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let memory_kv = self.multihead_attn.keys_values(memory);
        self.blocks(
            x,
            |h| {
                let kv = self.self_attn.keys_values(h.clone());
                self.self_attn.attend(h, &kv, self_mask).0
            },
            |h| self.multihead_attn.attend(h, &memory_kv, None),
        )
    }

    /// A cache holding the memory's keys and values and no past positions.
    pub fn start(&self, memory: Tensor<B, 3>) -> LayerCache<B> {
        LayerCache {
            past: None,
            memory: self.multihead_attn.keys_values(memory),
        }
    }

    /// Decodes one new position `x` `[batch, 1, H]` after those in `cache`,
    /// which it extends.
    pub fn step(&self, x: Tensor<B, 3>, cache: &mut LayerCache<B>) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let memory = &cache.memory;
        let past = &mut cache.past;
        self.blocks(
            x,
            |h| {
                let new = self.self_attn.keys_values(h.clone());
                let kv = match past.take() {
                    Some(previous) => previous.append(new),
                    None => new,
                };
                let context = self.self_attn.attend(h, &kv, None).0;
                *past = Some(kv);
                context
            },
            |h| self.multihead_attn.attend(h, memory, None),
        )
    }
}

impl<B: Backend> LayerCache<B> {
    /// Keeps the batch rows `rows` (beam reordering or expansion).
    pub fn select(self, rows: Tensor<B, 1, Int>) -> Self {
        Self {
            past: self.past.map(|kv| kv.select(rows.clone())),
            memory: self.memory.select(rows),
        }
    }
}

/// A stack of decoder layers (and, for pre-norm, a final LayerNorm).
#[derive(Module, Debug)]
pub struct TransformerDecoder<B: Backend> {
    /// The layers, `transformer.layers.{i}` in the reference.
    pub layers: Vec<DecoderLayer<B>>,
    /// The final norm of pre-norm decoders (`transformer.norm`).
    pub norm: Option<LayerNorm<B>>,
}

/// Per-layer caches of an incremental decode.
#[derive(Clone, Debug)]
pub struct DecoderCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

impl<B: Backend> DecoderCache<B> {
    /// Keeps the batch rows `rows` of every layer's cache.
    pub fn select(self, rows: Tensor<B, 1, Int>) -> Self {
        Self {
            layers: self
                .layers
                .into_iter()
                .map(|layer| layer.select(rows.clone()))
                .collect(),
        }
    }
}

impl<B: Backend> TransformerDecoder<B> {
    /// A decoder of `size` with `norm` placement, initialised as the reference.
    pub fn new(
        size: &TransformerSize,
        norm: NormPosition,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        let pre_norm = norm == NormPosition::Pre;
        Self {
            layers: (0..size.layers)
                .map(|_| DecoderLayer::new(size, pre_norm, dropout, device))
                .collect(),
            norm: pre_norm.then(|| {
                LayerNormConfig::new(size.hidden)
                    .with_epsilon(TRANSFORMER_LAYER_NORM_EPS)
                    .init(device)
            }),
        }
    }

    /// Computes every layer's products in `precision`.
    pub fn set_precision(&mut self, precision: Precision) {
        for layer in &mut self.layers {
            layer.set_precision(precision);
        }
    }

    /// Full-sequence forward; also returns the last layer's cross-attention
    /// weights `[batch, heads, T, S]`.
    ///
    /// # Shapes
    /// - `x`: `[batch, T, H]`, `memory`: `[batch, S, H]` → `[batch, T, H]`
    pub fn forward(
        &self,
        mut x: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        self_mask: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let mut weights = None;
        for layer in &self.layers {
            let (out, w) = layer.forward(x, memory.clone(), self_mask.clone());
            x = out;
            weights = Some(w);
        }
        (
            self.final_norm(x),
            weights.expect("a decoder has at least one layer"),
        )
    }

    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// Starts an incremental decode over `memory` `[batch, S, H]`.
    pub fn start(&self, memory: Tensor<B, 3>) -> DecoderCache<B> {
        DecoderCache {
            layers: self
                .layers
                .iter()
                .map(|layer| layer.start(memory.clone()))
                .collect(),
        }
    }

    /// Decodes the next position `x` `[batch, 1, H]`, extending `cache`;
    /// returns `[batch, 1, H]` and the last layer's cross-attention weights
    /// `[batch, heads, 1, S]`. Equal to the last position of [`Self::forward`]
    /// with a causal mask over the whole prefix.
    pub fn step(
        &self,
        mut x: Tensor<B, 3>,
        cache: &mut DecoderCache<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let mut weights = None;
        for (layer, layer_cache) in self.layers.iter().zip(&mut cache.layers) {
            let (out, w) = layer.step(x, layer_cache);
            x = out;
            weights = Some(w);
        }
        (
            self.final_norm(x),
            weights.expect("a decoder has at least one layer"),
        )
    }
}
