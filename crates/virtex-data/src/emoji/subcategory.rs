//! The kind of emoji a caption names. The converter's fullest caption of an
//! image is `"<name>, a <subcategory> emoji"` (`emoji_images`): the
//! subcategory's words after the name's last `", a "`. A model trained on
//! that caption names a kind of emoji the same way, right or wrong.

/// What separates the name from the subcategory.
const BEFORE_KIND: &str = ", a ";
/// What follows the subcategory.
const AFTER_KIND: &str = " emoji";

/// The subcategory a caption of the form `"<name>, a <subcategory> emoji"`
/// names (`"face smiling"`), the text between its last `", a "` and its
/// closing `" emoji"`; `None` for a caption of another form.
pub fn caption_subcategory(caption: &str) -> Option<&str> {
    let (_, kind) = caption.rsplit_once(BEFORE_KIND)?;
    kind.strip_suffix(AFTER_KIND)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::super::{EmojiEntry, emoji_images};
    use super::*;
    use crate::coco::{CocoCaptions, read_json};

    #[test]
    fn the_converters_fullest_caption_names_its_subcategory() {
        let entry: EmojiEntry = serde_json::from_value(serde_json::json!({
            "name": "WOMAN IN LOTUS POSITION", "image": "1f9d8-200d-2640-fe0f.png",
            "short_names": ["woman_in_lotus_position"], "category": "People & Body",
            "subcategory": "person-activity", "sort_order": 501, "has_img_twitter": true,
            "skin_variations": {"1F3FD": {"image": "1f9d8-1f3fd-200d-2640-fe0f.png",
                                          "has_img_twitter": true}},
        }))
        .unwrap();
        let images = emoji_images(&[entry]).unwrap();
        assert_eq!(images.len(), 2);
        for image in &images {
            assert_eq!(
                caption_subcategory(&image.captions[0]),
                Some("person activity")
            );
            // The shorter captions name no kind.
            for caption in &image.captions[1..] {
                assert_eq!(caption_subcategory(caption), None, "{caption}");
            }
        }
        // The last ", a " counts: a name holding one stays the name's.
        assert_eq!(
            caption_subcategory("cat, a dog, a animal mammal emoji"),
            Some("animal mammal")
        );
        assert_eq!(caption_subcategory("cat, a animal mammal"), None);
        assert_eq!(caption_subcategory("a cat, a emoji"), None);
    }

    /// `categories_val2017.json`, the part read here.
    #[derive(serde::Deserialize)]
    struct Categories {
        labels: Vec<Label>,
        subcategories: Vec<Named>,
    }
    #[derive(serde::Deserialize)]
    struct Label {
        image_id: u64,
        subcategory_id: u64,
    }
    #[derive(serde::Deserialize)]
    struct Named {
        id: u64,
        name: String,
    }

    #[test]
    fn every_bundled_validation_image_has_one_caption_naming_its_label() {
        let emoji = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/emoji");
        let captions = CocoCaptions::load(&emoji, "val").unwrap();
        let categories: Categories =
            read_json(&emoji.join("annotations/categories_val2017.json")).unwrap();
        let names: BTreeMap<u64, String> = categories
            .subcategories
            .into_iter()
            .map(|s| (s.id, s.name.to_lowercase().replace('-', " ")))
            .collect();
        assert_eq!(categories.labels.len(), captions.images.len());
        for label in &categories.labels {
            let image = captions.image(label.image_id).unwrap();
            let kinds: Vec<&str> = image
                .captions
                .iter()
                .filter_map(|c| caption_subcategory(c))
                .collect();
            assert_eq!(
                kinds,
                [names[&label.subcategory_id].as_str()],
                "image {}: {:?}",
                label.image_id,
                image.captions
            );
        }
    }
}
