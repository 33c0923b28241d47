//! # virtex-text
//!
//! VirTex's textual heads: word + positional embedding, forward and backward
//! Transformer decoders (post-norm and pre-norm), the five pretraining models
//! (bicaptioning, captioning, token and multilabel classification, masked LM),
//! beam search / nucleus sampling / greedy decoding, and loading official
//! VirTex checkpoints.
//!
//! Built on `virtex-vision` (the backbone) and `virtex-data` (token ids and
//! batches).

pub mod attention;
#[cfg(feature = "pytorch")]
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod decoding;
pub mod embedding;
pub mod head;
pub mod losses;
pub mod models;
#[cfg(feature = "pytorch")]
pub mod names;

pub use config::{NormPosition, TextualHeadName, TransformerSize};
pub use head::{LinearTextualHead, TransformerTextualHead};
pub use models::{PretrainingModel, PretrainingModelConfig, PretrainingTask};
