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
//! with the evaluation preprocessing ([`images`]) and caption-aware training
//! augmentation ([`augment`]), the instance categories of multilabel
//! classification ([`instances`]), the five tasks' targets ([`tasks`]), a
//! parallel prefetching loader that produces them ([`loader`]), and
//! WebDataset tar shards for datasets past COCO's size, streamed with the
//! same sample pipeline ([`shards`]).
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

pub mod augment;
pub mod caption;
pub mod coco;
#[cfg(feature = "emoji")]
pub mod emoji;
pub mod images;
pub mod instances;
pub mod loader;
pub mod shards;
pub mod tasks;
pub mod tokenizer;
