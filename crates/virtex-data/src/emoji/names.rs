//! The emoji package's entries and the captions and labels made from them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::PrepareError;

/// One entry of the package's `emoji.json`.
#[derive(Debug, Deserialize)]
pub struct EmojiEntry {
    name: Option<String>,
    image: String,
    short_names: Vec<String>,
    category: String,
    subcategory: String,
    sort_order: u32,
    has_img_twitter: bool,
    #[serde(default)]
    skin_variations: BTreeMap<String, SkinVariation>,
}

/// A skin-tone variant of an entry.
#[derive(Debug, Deserialize)]
pub struct SkinVariation {
    image: String,
    has_img_twitter: bool,
}

/// An image of the dataset before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct EmojiImage {
    /// Image file name in the package (`1f385-1f3fb.png`).
    pub source: String,
    /// Captions, most specific first.
    pub captions: Vec<String>,
    /// Category name (10 in all).
    pub category: String,
    /// Subcategory name (99 in all).
    pub subcategory: String,
    /// The split it belongs to.
    pub split: Split,
}

/// The three splits of the dataset, each a `{name}2017` folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// `train2017`: every emoji whose `sort_order` is not a multiple of 10.
    Train,
    /// `val2017`: `sort_order` a multiple of 10 with `sort_order / 10` even
    /// (20, 40, …): the split to tune on.
    Val,
    /// `test2017`: `sort_order` a multiple of 10 with `sort_order / 10` odd
    /// (10, 30, …): the split to report on.
    Test,
}

impl Split {
    /// All splits, in the order [`Summary`](super::Summary) counts them.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split of an emoji (and all its skin-tone variants) by its
    /// `sort_order`: a tenth is held out, alternately for validation and test.
    pub fn of(sort_order: u32) -> Split {
        match (sort_order % 10, (sort_order / 10) % 2) {
            (0, 0) => Split::Val,
            (0, _) => Split::Test,
            _ => Split::Train,
        }
    }

    /// `train`, `val` or `test`, as in `captions_{name}2017.json`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Skin-tone modifiers by code point, as Unicode names them.
fn skin_tone(code: &str) -> Option<&'static str> {
    Some(match code {
        "1F3FB" => "light",
        "1F3FC" => "medium-light",
        "1F3FD" => "medium",
        "1F3FE" => "medium-dark",
        "1F3FF" => "dark",
        _ => return None,
    })
}

/// "light skin tone" or, for two-person emoji, "light and dark skin tones".
fn describe_tones(key: &str) -> Result<String, String> {
    let tones = key
        .split('-')
        .map(|code| skin_tone(code).ok_or_else(|| format!("unknown skin-tone code '{code}'")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match tones.as_slice() {
        [one] => format!("{one} skin tone"),
        [a, b] if a == b => format!("{a} skin tone"),
        [a, b] => format!("{a} and {b} skin tones"),
        _ => return Err(format!("unexpected skin-tone combination '{key}'")),
    })
}

/// Lower-cased words of a name or short name (`woman-surfing` → `woman surfing`).
fn words(s: &str) -> String {
    s.to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Captions of one emoji (with an optional skin-tone description), deduplicated.
fn captions(entry: &EmojiEntry, tone: Option<&str>) -> Vec<String> {
    let name = entry
        .name
        .as_deref()
        .map(|n| n.to_lowercase())
        .unwrap_or_else(|| words(&entry.short_names[0]));
    let with_tone = |s: &str| match tone {
        Some(t) => format!("{s} with {t}"),
        None => s.to_string(),
    };
    let kind = words(&entry.subcategory);
    // The fullest description first: with `DATA.USE_SINGLE_CAPTION` (the
    // bundled config) it is the one trained on, and it names the subcategory,
    // which an emoji unseen in training shares with those that were.
    let mut out = vec![
        format!("{}, a {kind} emoji", with_tone(&name)),
        with_tone(&name),
        format!("an emoji of {}", with_tone(&name)),
    ];
    out.extend(entry.short_names.iter().map(|s| with_tone(&words(s))));
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    out
}

/// The dataset's images in a fixed order (by `sort_order`, base emoji first).
pub fn emoji_images(entries: &[EmojiEntry]) -> Result<Vec<EmojiImage>, PrepareError> {
    let mut sorted: Vec<&EmojiEntry> = entries.iter().filter(|e| e.has_img_twitter).collect();
    sorted.sort_by_key(|e| e.sort_order);
    // Image ids and splits follow `sort_order`: two emoji sharing one would
    // make both depend on the order of emoji.json.
    if let Some(pair) = sorted
        .windows(2)
        .find(|w| w[0].sort_order == w[1].sort_order)
    {
        return Err(PrepareError::Entry(format!(
            "emoji.json: sort_order {} is shared by '{}' and '{}'",
            pair[0].sort_order, pair[0].image, pair[1].image
        )));
    }
    let mut images = Vec::new();
    for entry in sorted {
        let split = Split::of(entry.sort_order);
        let image = |source: &str, tone: Option<&str>| EmojiImage {
            source: source.to_string(),
            captions: captions(entry, tone),
            category: entry.category.clone(),
            subcategory: entry.subcategory.clone(),
            split,
        };
        images.push(image(&entry.image, None));
        for (key, variation) in &entry.skin_variations {
            if variation.has_img_twitter {
                let tone = describe_tones(key).map_err(|e| {
                    PrepareError::Entry(format!("skin variation of '{}': {e}", entry.image))
                })?;
                images.push(image(&variation.image, Some(&tone)));
            }
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, short: &[&str], tones: &[&str]) -> EmojiEntry {
        EmojiEntry {
            name: Some(name.to_string()),
            image: "1f385.png".into(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            category: "People & Body".into(),
            subcategory: "person-fantasy".into(),
            sort_order: 20,
            has_img_twitter: true,
            skin_variations: tones
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        SkinVariation {
                            image: format!("1f385-{}.png", t.to_lowercase()),
                            has_img_twitter: true,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn captions_come_from_names_short_names_and_tones() {
        let santa = entry("FATHER CHRISTMAS", &["santa"], &["1F3FB", "1F3FB-1F3FF"]);
        let images = emoji_images(std::slice::from_ref(&santa)).unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(
            images[0].captions,
            [
                "father christmas, a person fantasy emoji",
                "father christmas",
                "an emoji of father christmas",
                "santa"
            ]
        );
        assert_eq!(
            images[1].captions[1],
            "father christmas with light skin tone"
        );
        assert_eq!(
            images[2].captions[1],
            "father christmas with light and dark skin tones"
        );
        assert!(
            images.iter().all(|i| i.split == Split::Val),
            "sort_order 20 is a validation emoji, and so are its variants"
        );
    }

    #[test]
    fn a_tenth_is_held_out_alternately_for_val_and_test() {
        let splits: Vec<Split> = (1..=40).map(Split::of).collect();
        for (i, split) in splits.iter().enumerate() {
            let sort_order = i + 1;
            let expected = match sort_order {
                20 | 40 => Split::Val,
                10 | 30 => Split::Test,
                _ => Split::Train,
            };
            assert_eq!(*split, expected, "sort_order {sort_order}");
        }
        let names: Vec<_> = Split::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["train", "val", "test"]);
    }

    #[test]
    fn a_shared_sort_order_is_an_error_naming_both() {
        let santa = entry("FATHER CHRISTMAS", &["santa"], &[]);
        let mut wave = entry("WAVING HAND", &["wave"], &[]);
        wave.image = "1f44b.png".into();
        let err = emoji_images(&[santa, wave]).unwrap_err().to_string();
        assert!(err.contains("sort_order 20"), "{err}");
        assert!(
            err.contains("1f385.png") && err.contains("1f44b.png"),
            "{err}"
        );
    }

    #[test]
    fn unknown_skin_tone_is_an_error_naming_it() {
        let bad = entry("WAVING HAND", &["wave"], &["1F3FA"]);
        let err = emoji_images(&[bad]).unwrap_err();
        assert!(format!("{err:#}").contains("1F3FA"), "{err:#}");
    }
}
