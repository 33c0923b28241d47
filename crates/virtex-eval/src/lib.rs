//! # virtex-eval
//!
//! Evaluating VirTex backbones: feature extraction, VOC07 linear SVMs, linear
//! classification probes and fine-tuning, captioning metrics (CIDEr,
//! SPICE-style), Detectron2 export and attention maps.
//!
//! The top of the stack; its contents arrive with issue #6.
