//! # virtex-text
//!
//! VirTex's textual heads: word + positional embedding, forward and backward
//! Transformer decoders (post-norm and pre-norm), the five pretraining models
//! (bicaptioning, captioning, token and multilabel classification, masked LM),
//! beam search / nucleus sampling / greedy decoding, and loading official
//! VirTex checkpoints.
//!
//! - [`head_name`]: `MODEL.TEXTUAL.NAME` parsed ([`TextualHeadName`]).
//! - [`embedding`], [`attention`], [`decoder`]: the layers of a head;
//!   [`head`] the heads themselves.
//! - [`models`]: the pretraining models ([`PretrainingModelConfig`],
//!   [`PretrainingModel`]) and [`losses`] their losses.
//! - [`decoding`]: caption decoding with the forward head (and, to rank beam
//!   search's final beams, bicaptioning's backward decoder).
//! - `pytorch` (feature `pytorch`, default): the reference's layout, official
//!   `.pth` checkpoints into a model and its parameter names.
//!
//! Built on `virtex-vision` (the backbone) alone: the model takes tensors
//! (`models::PretrainingInput`); turning loader batches into them is
//! virtex-train's job.
//!
//! ```
//! use burn_flex::Flex;
//! use burn::tensor::Tensor;
//! use rand::SeedableRng;
//! use virtex_text::decoding::CaptionDecoder;
//! use virtex_text::{PretrainingModelConfig, PretrainingTask};
//!
//! let device = Default::default();
//! let model = PretrainingModelConfig {
//!     task: PretrainingTask::Bicaptioning,
//!     visual: "resnet18".parse().unwrap(),
//!     textual: "transdec_postnorm::L1_H64_A1_F256".parse().unwrap(),
//!     vocab_size: 100,
//!     max_caption_length: 30,
//!     dropout: 0.1,
//! }
//! .init::<Flex>(&device)
//! .unwrap();
//! let features = model.visual.forward(Tensor::zeros([1, 3, 64, 64], &device));
//! assert_eq!(features.dims(), [1, 512, 2, 2]);
//! // Beam search (beam 5) with the forward head, at most 30 tokens.
//! let head = model.transformer_head().unwrap();
//! let captions = CaptionDecoder::default().decode(head, features, &mut rand::rngs::StdRng::seed_from_u64(0));
//! assert!(captions[0].tokens.len() <= 30);
//! ```

pub mod attention;
pub mod decoder;
pub mod decoding;
pub mod embedding;
pub mod head;
pub mod head_name;
pub mod losses;
pub mod models;
#[cfg(feature = "pytorch")]
pub mod pytorch;

pub use head::{LinearTextualHead, TransformerTextualHead};
pub use head_name::{NormPosition, TextualHeadName, TransformerSize};
pub use models::{PretrainingModel, PretrainingModelConfig, PretrainingTask};
