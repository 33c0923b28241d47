//! A SentencePiece-compatible tokenizer: reads `.model` files (BPE and
//! unigram) and produces the ids the SentencePiece library produces.
//!
//! Pipeline, as `sentencepiece_processor.cc`: [`Normalizer`] (the model's
//! character map and whitespace rules) → segmentation (`bpe` merges by
//! piece score, or `unigram` Viterbi) → ids, with characters the vocabulary
//! lacks mapped to `<unk>`.
//!
//! VirTex's conventions (`virtex/data/tokenizers.py`): `<unk>` = 0 doubles as
//! padding, and `[SOS]` = 1, `[EOS]` = 2, `[MASK]` = 3 are control symbols,
//! never produced from text; look them up with [`SentencePieceTokenizer::piece_to_id`].

mod bpe;
mod normalizer;
pub mod train;
mod unigram;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sentencepiece_model::{ModelType, SentencePieceModel, Type};

pub use normalizer::{CharsMap, Normalizer, SPACE_SYMBOL};

/// A tokenizer that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read tokenizer model {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a SentencePiece model, or one this crate cannot use.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// How a model segments normalised text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Byte-pair encoding: merge the adjacent pair whose union scores highest.
    Bpe,
    /// Unigram language model: the segmentation with the highest total score.
    Unigram,
}

/// A vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Its text, with `▁` for spaces.
    pub text: String,
    /// Its score (log-probability for unigram, merge priority for BPE).
    pub score: f32,
    /// Whether text can produce it (normal and user-defined pieces).
    pub segmentable: bool,
}

/// A loaded SentencePiece model.
#[derive(Clone, Debug)]
pub struct SentencePieceTokenizer {
    algorithm: Algorithm,
    normalizer: Normalizer,
    pieces: Vec<Piece>,
    /// Every piece by text, control symbols included.
    ids: HashMap<String, u32>,
    unk_id: u32,
    /// Unigram search constants, derived from `pieces`.
    lattice: unigram::Lattice,
}

impl SentencePieceTokenizer {
    /// Loads a SentencePiece `.model` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|message| TokenizerError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Loads a serialised SentencePiece `ModelProto`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let model = SentencePieceModel::from_slice(bytes)
            .map_err(|e| format!("not a SentencePiece model ({e})"))?;
        let algorithm = match model.trainer().map(|t| t.model_type()) {
            Some(ModelType::Bpe) => Algorithm::Bpe,
            Some(ModelType::Unigram) | None => Algorithm::Unigram,
            Some(other) => {
                return Err(format!(
                    "model type {other:?} is not supported (BPE and unigram are)"
                ));
            }
        };
        let spec = model.normalizer();
        let charsmap = match spec.and_then(|s| s.precompiled_charsmap.as_deref()) {
            Some(blob) if !blob.is_empty() => {
                Some(CharsMap::parse(blob).ok_or("malformed precompiled_charsmap")?)
            }
            _ => None,
        };
        let normalizer = Normalizer::new(
            charsmap,
            spec.and_then(|s| s.add_dummy_prefix).unwrap_or(true),
            spec.and_then(|s| s.remove_extra_whitespaces)
                .unwrap_or(true),
            spec.and_then(|s| s.escape_whitespaces).unwrap_or(true),
        );

        let mut pieces = Vec::with_capacity(model.pieces().len());
        let mut ids = HashMap::new();
        let mut unk_id = None;
        for (id, piece) in model.pieces().iter().enumerate() {
            let text = piece.piece().to_string();
            let kind = piece.r#type();
            if kind == Type::Unknown {
                unk_id = Some(id as u32);
            }
            if kind == Type::Byte {
                return Err("byte-fallback models are not supported".into());
            }
            ids.insert(text.clone(), id as u32);
            pieces.push(Piece {
                text,
                score: piece.score(),
                segmentable: matches!(kind, Type::Normal | Type::UserDefined),
            });
        }
        let unk_id = unk_id.ok_or("the model has no <unk> piece")?;
        Ok(Self {
            algorithm,
            normalizer,
            lattice: unigram::Lattice::new(&pieces),
            pieces,
            ids,
            unk_id,
        })
    }

    /// BPE or unigram.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Number of pieces, control symbols included.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The id of `<unk>` (0 in VirTex's vocabularies, where it is also padding).
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// The id of any piece, control symbols (`[SOS]`) included.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }

    /// The text of piece `id`.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(|p| p.text.as_str())
    }

    /// The normaliser this model applies before segmentation.
    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// The id of a piece text can produce, if there is one.
    fn segmentable_id(&self, text: &str) -> Option<u32> {
        let id = *self.ids.get(text)?;
        self.pieces[id as usize].segmentable.then_some(id)
    }

    /// Token ids of `text`, exactly as SentencePiece's `EncodeAsIds`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalizer.normalize(text);
        let mut ids = match self.algorithm {
            Algorithm::Bpe => bpe::encode(self, &normalized),
            Algorithm::Unigram => unigram::encode(self, &normalized),
        };
        // A run of unknown pieces becomes one `<unk>`, as the processor does.
        ids.dedup_by(|next, prev| *next == self.unk_id && *prev == self.unk_id);
        ids
    }

    /// Text of `ids`: pieces joined, `▁` turned back into spaces, control
    /// symbols dropped and `<unk>` shown as ` ⁇ ` (SentencePiece's `DecodeIds`).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut text = String::new();
        for &id in ids {
            let Some(piece) = self.pieces.get(id as usize) else {
                continue;
            };
            if id == self.unk_id {
                text.push_str(" \u{2047} ");
            } else if piece.segmentable {
                text.push_str(&piece.text);
            }
        }
        let text = text.replace(SPACE_SYMBOL, " ");
        text.strip_prefix(' ').unwrap_or(&text).to_string()
    }
}
