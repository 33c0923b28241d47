//! Textual head names as the reference writes them
//! (`virtex/factories.py::TextualHeadFactory`): `transdec_postnorm::L1_H2048_A32_F8192`,
//! `transdec_prenorm::L2_H1024_A16_F4096`, or `none` for a linear head.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where each decoder layer normalises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormPosition {
    /// `x = norm(x + sublayer(x))`, the reference's default and every config's.
    Post,
    /// `x = x + sublayer(norm(x))`, with a final LayerNorm after the last layer.
    Pre,
}

/// The size of a Transformer textual head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformerSize {
    /// Decoder layers `L`.
    pub layers: usize,
    /// Hidden size `H`.
    pub hidden: usize,
    /// Attention heads `A`.
    pub heads: usize,
    /// Feed-forward size `F`.
    pub feedforward: usize,
}

/// A textual head, as named in the reference's `MODEL.TEXTUAL.NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TextualHeadName {
    /// A Transformer decoder head.
    Transformer {
        /// Post- or pre-norm layers.
        norm: NormPosition,
        /// Its size.
        size: TransformerSize,
    },
    /// `none`: global average pooling then one linear layer (token and
    /// multilabel classification).
    Linear,
}

/// A textual head name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid textual head {name:?}: {reason} (expected e.g. \"transdec_postnorm::L1_H2048_A32_F8192\" or \"none\")"
)]
pub struct TextualHeadNameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for TextualHeadName {
    type Err = TextualHeadNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| TextualHeadNameError {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if name == "none" {
            return Ok(Self::Linear);
        }
        let (kind, size) = name
            .split_once("::")
            .ok_or_else(|| error("no `::` between kind and size"))?;
        let norm = match kind {
            "transdec_postnorm" => NormPosition::Post,
            "transdec_prenorm" => NormPosition::Pre,
            _ => return Err(error("kind must be transdec_postnorm or transdec_prenorm")),
        };
        let mut fields = [0usize; 4];
        let parts: Vec<&str> = size.split('_').collect();
        if parts.len() != 4 {
            return Err(error(
                "size must be L<layers>_H<hidden>_A<heads>_F<feedforward>",
            ));
        }
        for ((part, letter), field) in parts.iter().zip(['L', 'H', 'A', 'F']).zip(&mut fields) {
            *field = part
                .strip_prefix(letter)
                .and_then(|n| n.parse().ok())
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| error(&format!("`{part}` is not {letter}<positive number>")))?;
        }
        let [layers, hidden, heads, feedforward] = fields;
        if hidden % heads != 0 {
            return Err(error("hidden size must be a multiple of the head count"));
        }
        Ok(Self::Transformer {
            norm,
            size: TransformerSize {
                layers,
                hidden,
                heads,
                feedforward,
            },
        })
    }
}

impl fmt::Display for TextualHeadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Linear => f.write_str("none"),
            Self::Transformer { norm, size } => {
                let kind = match norm {
                    NormPosition::Post => "transdec_postnorm",
                    NormPosition::Pre => "transdec_prenorm",
                };
                write!(
                    f,
                    "{kind}::L{}_H{}_A{}_F{}",
                    size.layers, size.hidden, size.heads, size.feedforward
                )
            }
        }
    }
}

impl TryFrom<String> for TextualHeadName {
    type Error = TextualHeadNameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<TextualHeadName> for String {
    fn from(name: TextualHeadName) -> Self {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_names_parse_and_print_back() {
        for name in [
            "transdec_postnorm::L1_H2048_A32_F8192",
            "transdec_prenorm::L2_H1024_A16_F4096",
            "none",
        ] {
            assert_eq!(name.parse::<TextualHeadName>().unwrap().to_string(), name);
        }
        assert_eq!(
            "transdec_postnorm::L1_H1024_A16_F4096".parse::<TextualHeadName>(),
            Ok(TextualHeadName::Transformer {
                norm: NormPosition::Post,
                size: TransformerSize {
                    layers: 1,
                    hidden: 1024,
                    heads: 16,
                    feedforward: 4096
                }
            })
        );
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        for (name, reason) in [
            ("transdec::L1_H2048_A32_F8192", "kind"),
            ("transdec_postnorm::L1_H2048_A32", "size must be"),
            ("transdec_postnorm::L1_H2048_X32_F8192", "`X32`"),
            ("transdec_postnorm::L1_H100_A3_F400", "multiple"),
            ("linear", "no `::`"),
        ] {
            let err = name.parse::<TextualHeadName>().unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains(name), "{err}");
        }
    }
}
