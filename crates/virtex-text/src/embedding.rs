//! Word + learned positional embedding (`virtex/modules/embedding.py::WordAndPositionalEmbedding`).

use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

/// The reference's embedding LayerNorm epsilon (the Transformer's is 1e-5).
const EMBEDDING_LAYER_NORM_EPS: f64 = 1e-8;

/// Id 0: `<unk>`, doubling as padding.
pub const PADDING_ID: u32 = 0;

/// `LayerNorm(words[token] + positions[t])` → dropout, zeroed where the token
/// is padding (0).
#[derive(Module, Debug)]
pub struct WordAndPositionalEmbedding<B: Backend> {
    /// Word embedding `[V, H]`, row 0 starting at zero; also the tied output
    /// layer's weight.
    pub words: Embedding<B>,
    /// Learned positions `[max_length, H]`.
    pub positions: Embedding<B>,
    /// LayerNorm with eps 1e-8.
    pub layer_norm: LayerNorm<B>,
    /// Dropout after the norm.
    pub dropout: Dropout,
}

fn embedding_table<B: Backend>(rows: usize, hidden: usize, device: &B::Device) -> Embedding<B> {
    Embedding {
        weight: Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        }
        .init([rows, hidden], device),
    }
}

impl<B: Backend> WordAndPositionalEmbedding<B> {
    /// `vocab_size × hidden` words and `max_length` positions, `N(0, 0.02)`
    /// with the padding row zero.
    pub fn new(
        vocab_size: usize,
        hidden: usize,
        max_length: usize,
        dropout: f64,
        device: &B::Device,
    ) -> Self {
        let table = Tensor::<B, 2>::random(
            [vocab_size, hidden],
            Distribution::Normal(0.0, 0.02),
            device,
        )
        .slice_assign([0..1, 0..hidden], Tensor::zeros([1, hidden], device));
        // Detached so the parameter is a leaf of any autodiff graph.
        let words = Embedding {
            weight: Param::from_tensor(table.detach()),
        };
        Self {
            words,
            positions: embedding_table(max_length, hidden, device),
            layer_norm: LayerNormConfig::new(hidden)
                .with_epsilon(EMBEDDING_LAYER_NORM_EPS)
                .init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Longest caption the positions cover.
    pub fn max_length(&self) -> usize {
        self.positions.weight.dims()[0]
    }

    /// Embeds `tokens` `[batch, T]` placed at positions `first..first + T`
    /// → `[batch, T, H]`.
    pub fn forward_at(&self, tokens: Tensor<B, 2, Int>, first: usize) -> Tensor<B, 3> {
        let [_, length] = tokens.dims();
        assert!(
            first + length <= self.max_length(),
            "caption positions {first}..{} exceed the {} learned positions",
            first + length,
            self.max_length()
        );
        let positions = self
            .positions
            .weight
            .val()
            .slice(first..first + length)
            .unsqueeze::<3>();
        let not_padding = tokens
            .clone()
            .not_equal_elem(PADDING_ID as i64)
            .float()
            .unsqueeze_dim::<3>(2);
        let embedded = self.words.forward(tokens) + positions;
        self.dropout.forward(self.layer_norm.forward(embedded)) * not_padding
    }

    /// Embeds a whole caption `[batch, T]` → `[batch, T, H]`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_at(tokens, 0)
    }
}
