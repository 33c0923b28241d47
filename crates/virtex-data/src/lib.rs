//! # virtex-data
//!
//! VirTex's data pipeline: COCO Captions (and any dataset in its JSON format),
//! a SentencePiece-compatible tokenizer, caption-aware augmentation and
//! parallel batching for the five pretraining tasks.
//!
//! This crate is the bottom of the stack and depends on no other virtex crate.
//! It holds the tokenizer ([`tokenizer`]) and caption preparation
//! ([`caption`]: normalisation, the flip's word swap, `[SOS]`/`[EOS]` framing
//! and backward tokens), the COCO captions index ([`coco`]) and image decoding
//! with the evaluation preprocessing and the bad-image policy ([`images`]),
//! caption-aware training augmentation ([`augment`]), the instance categories
//! of multilabel classification ([`instances`]) and the five tasks' targets
//! ([`tasks`]). Batches are made of them by the sample pipeline
//! ([`pipeline`]: caption choice, preprocessing, tokenisation, targets) into
//! a [`batch::PretrainingBatch`] ([`batch`], with the ranks' shares of it),
//! each sample's randomness derived by the seed rules of [`seed`]; a parallel
//! prefetching loader produces them from a COCO-format dataset ([`loader`]),
//! and WebDataset tar shards, for datasets past COCO's size, are written and
//! streamed with the same pipeline ([`shards`]). With the `emoji` feature,
//! `emoji` builds the bundled emoji dataset from the Twemoji npm package
//! (`cargo xtask prepare-data emoji`). [`atomic`] writes files that
//! a crash never leaves half-written (shards here; weights, checkpoints and
//! metrics in the crates above).
//!
//! ```
//! use virtex_data::tokenizer::SentencePieceTokenizer;
//!
//! // Any SentencePiece model, e.g. the reference's coco_10k.model.
//! let tokenizer = SentencePieceTokenizer::from_file("../../data/fixtures/tokenizer/emoji_bpe.model")?;
//! let ids = tokenizer.encode("a dog surfing");
//! assert_eq!(tokenizer.decode(&ids), "a dog surfing");
//! assert_eq!(tokenizer.piece_to_id("[SOS]"), Some(1));
//! # Ok::<(), virtex_data::tokenizer::TokenizerError>(())
//! ```

pub mod atomic;
pub mod augment;
pub mod batch;
pub mod caption;
pub mod coco;
#[cfg(feature = "emoji")]
pub mod emoji;
pub mod images;
pub mod instances;
pub mod loader;
pub mod pipeline;
mod prefetch;
pub mod seed;
pub mod shards;
pub mod tasks;
pub mod tokenizer;
