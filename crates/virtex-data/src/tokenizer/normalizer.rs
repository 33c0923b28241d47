//! SentencePiece's text normaliser (`normalizer.cc`): the model's precompiled
//! character map (NFKC and friends, longest match first), then whitespace
//! handling: leading/trailing/repeated spaces removed, a dummy-prefix space
//! added, spaces escaped as `▁` (U+2581).

/// SentencePiece's escaped space, `▁`.
pub const SPACE_SYMBOL: char = '\u{2581}';

/// The normaliser of one model.
#[derive(Clone, Debug)]
pub struct Normalizer {
    charsmap: Option<CharsMap>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

/// Longest key of the character map searched at one position, in bytes.
const MAX_MATCH_BYTES: usize = 64;

impl Normalizer {
    /// A normaliser with the given character map (`None`: identity) and flags.
    pub fn new(
        charsmap: Option<CharsMap>,
        add_dummy_prefix: bool,
        remove_extra_whitespaces: bool,
        escape_whitespaces: bool,
    ) -> Self {
        Self {
            charsmap,
            add_dummy_prefix,
            remove_extra_whitespaces,
            escape_whitespaces,
        }
    }

    /// Normalises the prefix of `input`: returns the replacement and how many
    /// bytes of `input` it consumes (SentencePiece's `NormalizePrefix`).
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (&'a str, usize) {
        let first_char = input.chars().next().map_or(0, char::len_utf8);
        let Some(map) = &self.charsmap else {
            return (&input[..first_char], first_char);
        };
        let window = &input.as_bytes()[..input.len().min(MAX_MATCH_BYTES)];
        let all = map.trie_matches(window);
        let Some(&longest) = all.last() else {
            return (&input[..first_char], first_char);
        };
        // The longest matching key is the shortest prefix holding every match.
        let length = (1..=window.len())
            .find(|&n| map.trie_matches(&window[..n]).len() == all.len())
            .unwrap_or(window.len());
        (map.replacement(longest), length)
    }

    /// Normalises `text` as SentencePiece does before segmenting it.
    pub fn normalize(&self, text: &str) -> String {
        let mut input = text;
        if self.remove_extra_whitespaces {
            loop {
                let (replacement, consumed) = self.normalize_prefix(input);
                if input.is_empty() || replacement != " " {
                    break;
                }
                input = &input[consumed..];
            }
        }
        let mut out = String::with_capacity(text.len() + 3);
        if input.is_empty() {
            return out;
        }
        let space = if self.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            ' '
        };
        if self.add_dummy_prefix {
            out.push(space);
        }
        let mut prev_is_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (replacement, consumed) = self.normalize_prefix(input);
            let mut piece = replacement;
            if prev_is_space {
                piece = piece.trim_start_matches(' ');
            }
            if !piece.is_empty() {
                for c in piece.chars() {
                    out.push(if c == ' ' { space } else { c });
                }
                prev_is_space = piece.ends_with(' ');
            }
            input = &input[consumed..];
            prev_is_space = prev_is_space && self.remove_extra_whitespaces;
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.pop();
            }
        }
        out
    }
}

/// A compiled character map (`NormalizerSpec.precompiled_charsmap`): a Darts
/// double-array trie over UTF-8 keys whose values index a blob of
/// NUL-terminated replacement strings. `spm_precompiled` parses the same
/// format but only exposes shortest-match lookups; SentencePiece takes the
/// longest match, so the lookup is written here.
#[derive(Clone, Debug)]
pub struct CharsMap {
    units: Vec<u32>,
    replacements: Vec<u8>,
}

impl CharsMap {
    /// Parses `[u32 trie size in bytes][trie units][replacement strings]`.
    pub fn parse(blob: &[u8]) -> Option<Self> {
        let size = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let trie = blob.get(4..4 + size)?;
        let units = trie
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some(Self {
            units,
            replacements: blob[4 + size..].to_vec(),
        })
    }

    /// Values of every key that is a prefix of `bytes`, shortest first
    /// (Darts' `commonPrefixSearch`).
    fn trie_matches(&self, bytes: &[u8]) -> Vec<u32> {
        let offset = |unit: u32| ((unit >> 10) << ((unit & (1 << 9)) >> 6)) as usize;
        let label = |unit: u32| unit & ((1 << 31) | 0xFF);
        let mut results = Vec::new();
        let Some(&root) = self.units.first() else {
            return results;
        };
        let mut node = offset(root);
        for &byte in bytes {
            if byte == 0 {
                break;
            }
            node ^= usize::from(byte);
            let Some(&unit) = self.units.get(node) else {
                break;
            };
            if label(unit) != u32::from(byte) {
                break;
            }
            node ^= offset(unit);
            if (unit >> 8) & 1 == 1
                && let Some(&leaf) = self.units.get(node)
            {
                results.push(leaf & ((1 << 31) - 1));
            }
        }
        results
    }

    /// The replacement string stored at `value`.
    fn replacement(&self, value: u32) -> &str {
        let start = (value as usize).min(self.replacements.len());
        let rest = &self.replacements[start..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("\u{FFFD}")
    }
}
