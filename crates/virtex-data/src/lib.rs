//! # virtex-data
//!
//! VirTex's data pipeline: COCO Captions (and any dataset in its JSON format),
//! a SentencePiece-compatible tokenizer, caption-aware augmentation and
//! parallel batching for the five pretraining tasks.
//!
//! This crate is the bottom of the stack and depends on no other virtex crate.
//! Its contents arrive with issue #3.
