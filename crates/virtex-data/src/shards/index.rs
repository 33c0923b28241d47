//! One shard's samples, read in place: member headers (the tar reader seeks
//! over image data) and the small caption members, grouped by key.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::ShardError;

/// Where a member's bytes lie in its shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpan {
    /// The member's name in the archive (`000000391895.jpg`).
    pub name: String,
    /// Offset of its data from the start of the file.
    pub offset: u64,
    /// Its size in bytes.
    pub len: u64,
}

/// A usable sample: an image member and at least one caption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSample {
    /// The members' shared key.
    pub key: String,
    /// The sample's id: the JSON's `image_id`, else the key if it is a
    /// number, else a hash of the key.
    pub id: u64,
    /// The image member.
    pub image: MemberSpan,
    /// Its captions (one per line of the `.txt`, or the JSON's).
    pub captions: Vec<String>,
}

/// A key whose members do not make a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPair {
    /// The key.
    pub key: String,
    /// Why it is unusable ("no image", "no caption", …).
    pub reason: String,
}

/// The samples of one shard, in archive order, and the keys left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardIndex {
    /// Usable samples.
    pub samples: Vec<ShardSample>,
    /// Keys without an image or a caption.
    pub bad: Vec<BadPair>,
    /// Why the archive could not be read to its end (a shard cut short by
    /// an interrupted copy, say); the samples before that point are kept.
    pub corrupt: Option<String>,
}

/// The members of one key, as they are read.
#[derive(Default)]
struct Group {
    key: String,
    image: Option<MemberSpan>,
    text: Option<Result<String, String>>,
    json: Option<Result<serde_json::Value, String>>,
}

impl Group {
    fn finish(self, index: &mut ShardIndex) {
        let bad = |reason: &str| BadPair {
            key: self.key.clone(),
            reason: reason.into(),
        };
        let captions = match (&self.text, &self.json) {
            (Some(Err(reason)), _) | (None, Some(Err(reason))) => {
                index.bad.push(bad(reason));
                return;
            }
            (Some(Ok(text)), _) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            (None, Some(Ok(json))) => json_captions(json),
            (None, None) => Vec::new(),
        };
        let Some(image) = self.image else {
            index.bad.push(bad(if captions.is_empty() {
                "no image and no caption"
            } else {
                "a caption without its image"
            }));
            return;
        };
        if captions.is_empty() {
            index
                .bad
                .push(bad(if self.text.is_some() || self.json.is_some() {
                    "empty caption"
                } else {
                    "an image without its caption (.txt or .json)"
                }));
            return;
        }
        let id = self
            .json
            .as_ref()
            .and_then(|json| json.as_ref().ok()?.get("image_id")?.as_u64())
            .or_else(|| self.key.rsplit('/').next()?.parse().ok())
            .unwrap_or_else(|| fnv1a(&self.key));
        index.samples.push(ShardSample {
            key: self.key,
            id,
            image,
            captions,
        });
    }
}

/// `"captions": [...]` or `"caption": "..."`, non-empty ones.
fn json_captions(json: &serde_json::Value) -> Vec<String> {
    let list = match (json.get("captions"), json.get("caption")) {
        (Some(serde_json::Value::Array(items)), _) => items.iter().collect(),
        (_, Some(caption)) => vec![caption],
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|c| c.as_str())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// FNV-1a, 64 bits: a stable id for a non-numeric key.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// WebDataset's split of a member name: the key is everything before the
/// first dot of the file name, the extension (lower-cased) the rest.
fn split_key(name: &str) -> Option<(&str, String)> {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = file_start + name[file_start..].find('.')?;
    Some((&name[..dot], name[dot + 1..].to_ascii_lowercase()))
}

/// Indexes `path`: image spans and captions by key. Members of one key must
/// be adjacent, as WebDataset requires; other extensions are ignored.
pub fn index_shard(path: &Path) -> Result<ShardIndex, ShardError> {
    let read_error = |message: String| ShardError::Read {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| read_error(format!("cannot open: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| read_error(format!("cannot read its size: {e}")))?
        .len();
    let mut archive = tar::Archive::new(BufReader::new(file));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| read_error(format!("not a tar archive: {e}")))?;
    let mut index = ShardIndex::default();
    let mut group: Option<Group> = None;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                index.corrupt = Some(format!("corrupt tar archive: {e}"));
                break;
            }
        };
        // The reader seeks over the data it does not read, so a file cut
        // inside a member's data reads as a clean end: check where it ends.
        let end = entry.raw_file_position() + entry.size();
        if end > file_len {
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            index.corrupt = Some(format!(
                "corrupt tar archive: member {name} ends at byte {end}, past the end of the \
                 file ({file_len} bytes)"
            ));
            // Its key's members are incomplete: neither a sample nor a bad pair.
            if let (Some(current), Some((key, _))) = (&group, split_key(&name))
                && current.key == key
            {
                group = None;
            }
            break;
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| read_error(format!("bad member name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let Some((key, extension)) = split_key(&name) else {
            continue;
        };
        if group.as_ref().is_none_or(|g| g.key != key) {
            if let Some(done) = group.take() {
                done.finish(&mut index);
            }
            group = Some(Group {
                key: key.to_string(),
                ..Group::default()
            });
        }
        let current = group.as_mut().expect("set above");
        match extension.as_str() {
            "jpg" | "jpeg" | "png" if current.image.is_none() => {
                current.image = Some(MemberSpan {
                    name: name.clone(),
                    offset: entry.raw_file_position(),
                    len: entry.size(),
                });
            }
            "txt" => current.text = Some(read_text(&mut entry)),
            "json" => {
                current.json = Some(read_text(&mut entry).and_then(|text| {
                    serde_json::from_str(&text).map_err(|e| format!("malformed {name}: {e}"))
                }));
            }
            _ => {}
        }
    }
    if let Some(done) = group.take() {
        done.finish(&mut index);
    }
    Ok(index)
}

/// A caption member's text.
fn read_text(entry: &mut impl Read) -> Result<String, String> {
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the caption: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the caption is not UTF-8".into())
}

/// The bytes of `member` of shard `path`.
pub(crate) fn read_member(path: &Path, member: &MemberSpan) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(member.offset))?;
    let mut bytes = vec![0; member.len as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The name a member goes by in messages: `shard.tar/member`.
pub(crate) fn member_path(shard: &Path, member: &MemberSpan) -> PathBuf {
    shard.join(&member.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_end_at_the_first_dot_of_the_file_name() {
        assert_eq!(
            split_key("a/b.c/000001.jpg"),
            Some(("a/b.c/000001", "jpg".into()))
        );
        assert_eq!(split_key("x.seg.PNG"), Some(("x", "seg.png".into())));
        assert_eq!(split_key("README"), None);
    }

    #[test]
    fn json_captions_take_either_key() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"captions": ["a dog", " ", "a cat"]}"#).unwrap();
        assert_eq!(json_captions(&json), ["a dog", "a cat"]);
        let json: serde_json::Value = serde_json::from_str(r#"{"caption": "a bird"}"#).unwrap();
        assert_eq!(json_captions(&json), ["a bird"]);
        assert!(json_captions(&serde_json::json!({"url": "x"})).is_empty());
    }
}
