//! Textual heads over the visual backbone's layer4 grid
//! (`virtex/modules/textual_heads.py`).

use burn::module::{Initializer, Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use virtex_vision::{Precision, global_average_pool};

use crate::attention::{BiasInit, reference_linear};
use crate::decoder::{DecoderCache, TransformerDecoder};
use crate::embedding::WordAndPositionalEmbedding;
use crate::head_name::{NormPosition, TransformerSize};

/// The output layer tied to the word embedding: only its bias is its own.
#[derive(Module, Debug)]
pub struct TiedOutput<B: Backend> {
    /// Bias `[V]` (the reference's `output.bias`, `U(±1/√H)` at start).
    pub bias: Param<Tensor<B, 1>>,
}

/// Flattens a layer4 grid `[batch, C, h, w]` into `[batch, h·w, C]`, cells
/// in row-major order as the reference's `view(B, C, -1).permute(0, 2, 1)`.
pub fn flatten_grid<B: Backend>(features: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, channels, height, width] = features.dims();
    features
        .reshape([batch, channels, height * width])
        .swap_dims(1, 2)
}

/// `TransformerDecoderTextualHead`: visual projection, embedding, decoder,
/// tied output.
#[derive(Module, Debug)]
pub struct TransformerTextualHead<B: Backend> {
    /// `Linear(C_visual → H)` applied to every grid cell.
    pub visual_projection: Linear<B>,
    /// Word + position embedding; its word table is also the output weight.
    pub embedding: WordAndPositionalEmbedding<B>,
    /// The (forward) decoder.
    pub transformer: TransformerDecoder<B>,
    /// Tied output layer's bias.
    pub output: TiedOutput<B>,
    /// What the projection and output compute in (not saved).
    #[module(skip)]
    pub precision: Precision,
}

/// Additive self-attention mask `[batch, 1, T, T]`: −∞ on future positions
/// (when `causal`) and on padded keys (position ≥ the caption's length).
pub fn self_attention_mask<B: Backend>(
    lengths: &[usize],
    length: usize,
    causal: bool,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut mask = vec![0f32; lengths.len() * length * length];
    for (row, &caption_length) in lengths.iter().enumerate() {
        for query in 0..length {
            for key in 0..length {
                if (causal && key > query) || key >= caption_length {
                    mask[(row * length + query) * length + key] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Tensor::from_data(
        TensorData::new(mask, [lengths.len(), 1, length, length]),
        device,
    )
}

impl<B: Backend> TransformerTextualHead<B> {
    /// A head reading `visual_channels`-deep grids over a `vocab_size`
    /// vocabulary, with `max_caption_length` learned positions (the
    /// reference's `DATA.MAX_CAPTION_LENGTH`), initialised as the reference.
    pub fn new(
        visual_channels: usize,
        vocab_size: usize,
        max_caption_length: usize,
        size: &TransformerSize,
        norm: NormPosition,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        let bound = 1.0 / (size.hidden as f64).sqrt();
        Self {
            visual_projection: reference_linear(
                visual_channels,
                size.hidden,
                BiasInit::FanIn,
                device,
            ),
            embedding: WordAndPositionalEmbedding::new(
                vocab_size,
                size.hidden,
                max_caption_length,
                dropout,
                device,
            ),
            transformer: TransformerDecoder::new(size, norm, dropout, device),
            output: TiedOutput {
                bias: Initializer::Uniform {
                    min: -bound,
                    max: bound,
                }
                .init([vocab_size], device),
            },
            precision: Precision::F32,
        }
    }

    /// Vocabulary size `V`.
    pub fn vocab_size(&self) -> usize {
        self.output.bias.dims()[0]
    }

    /// The decoder memory: projected grid cells `[batch, h·w, H]` from layer4
    /// features `[batch, C, h, w]`.
    pub fn memory(&self, visual_features: Tensor<B, 4>) -> Tensor<B, 3> {
        self.precision
            .linear(&self.visual_projection, flatten_grid(visual_features))
    }

    /// Computes the projection, the decoder's products and the output in
    /// `precision`.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.transformer.set_precision(precision);
    }

    /// Scores over the vocabulary: `x · wordsᵀ + bias`, `[batch, T, H]` → `[batch, T, V]`.
    ///
    /// A linear layer with the (tied) word embeddings as its weight, so the
    /// backend runs it as one `[batch·T, H] × [H, V]` product and its weight
    /// gradient as one more, not one per caption.
    pub fn logits(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let words = self.embedding.words.weight.val();
        self.precision
            .linear_weights(x, words.transpose(), Some(self.output.bias.val()))
    }

    /// Decodes whole captions with `transformer` (the forward one, or a
    /// bicaptioning model's backward one, sharing everything else).
    ///
    /// # Shapes
    /// - `memory`: `[batch, S, H]`; `tokens`: `[batch, T]`; `lengths`: `batch` values
    /// - returns logits `[batch, T, V]`
    pub fn decode_with(
        &self,
        transformer: &TransformerDecoder<B>,
        memory: Tensor<B, 3>,
        tokens: Tensor<B, 2, Int>,
        lengths: &[usize],
        causal: bool,
    ) -> Tensor<B, 3> {
        let [_, length] = tokens.dims();
        let mask = self_attention_mask(lengths, length, causal, &tokens.device());
        let x = self.embedding.forward(tokens);
        let (x, _) = transformer.forward(x, memory, Some(mask));
        self.logits(x)
    }

    /// Forward-direction logits `[batch, T, V]` of captions `[batch, T]`
    /// given layer4 features `[batch, C, h, w]` (causal, as for captioning).
    pub fn forward(
        &self,
        visual_features: Tensor<B, 4>,
        tokens: Tensor<B, 2, Int>,
        lengths: &[usize],
    ) -> Tensor<B, 3> {
        let memory = self.memory(visual_features);
        self.decode_with(&self.transformer, memory, tokens, lengths, true)
    }

    /// Starts an incremental decode of the forward direction over layer4
    /// features `[batch, C, h, w]`.
    pub fn start(&self, visual_features: Tensor<B, 4>) -> DecoderCache<B> {
        self.transformer.start(self.memory(visual_features))
    }

    /// Logits `[batch, V]` for the position after `position`, given the token
    /// `[batch]` at `position`; extends `cache`. Also returns the last layer's
    /// cross-attention weights `[batch, heads, S]` for that token.
    pub fn step(
        &self,
        tokens: Tensor<B, 1, Int>,
        position: usize,
        cache: &mut DecoderCache<B>,
    ) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let x = self.embedding.forward_at(tokens.unsqueeze_dim(1), position);
        let (x, weights) = self.transformer.step(x, cache);
        let [batch, heads, _, cells] = weights.dims();
        (
            self.logits(x).squeeze_dim(1),
            weights.reshape([batch, heads, cells]),
        )
    }
}

/// `LinearTextualHead` (`none`): global average pooling of the grid then one
/// linear layer, for token and multilabel classification.
#[derive(Module, Debug)]
pub struct LinearTextualHead<B: Backend> {
    /// `Linear(C_visual → V)`.
    pub output: Linear<B>,
}

impl<B: Backend> LinearTextualHead<B> {
    /// `Linear(visual_channels → outputs)` with PyTorch's default init.
    pub fn new(visual_channels: usize, outputs: usize, device: &B::Device) -> Self {
        let bound = 1.0 / (visual_channels as f64).sqrt();
        let uniform = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        Self {
            output: Linear {
                weight: uniform.init_with(
                    [visual_channels, outputs],
                    Some(visual_channels),
                    Some(outputs),
                    device,
                ),
                bias: Some(uniform.init([outputs], device)),
            },
        }
    }

    /// Logits `[batch, V]` from layer4 features `[batch, C, h, w]`.
    pub fn forward(&self, visual_features: Tensor<B, 4>) -> Tensor<B, 2> {
        // Through `Precision` for its single-row guard (a batch of one).
        Precision::F32.linear(&self.output, global_average_pool(visual_features))
    }
}
