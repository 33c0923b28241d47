//! # virtex-text
//!
//! VirTex's textual heads: word + positional embedding, forward and backward
//! Transformer decoders (post-norm and pre-norm), the five pretraining models
//! (bicaptioning, captioning, token and multilabel classification, masked LM),
//! beam search / nucleus sampling, and loading official VirTex checkpoints.
//!
//! Built on `virtex-vision` and `virtex-data`; its contents arrive with issue #4.
