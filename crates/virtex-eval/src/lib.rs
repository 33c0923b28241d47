//! # virtex-eval
//!
//! Evaluating VirTex backbones: feature extraction, VOC07 linear SVMs, linear
//! classification probes and fine-tuning, captioning metrics (CIDEr,
//! SPICE-style), Detectron2 export and attention maps.
//!
//! The top of the stack. Today: frozen-backbone feature extraction to `.npy`
//! ([`features`]); the probes and metrics arrive with the rest of issue #6.

pub mod attention_maps;
pub mod average_precision;
pub mod captioning;
pub mod classification;
pub mod features;
pub mod svm;
pub mod voc07;
