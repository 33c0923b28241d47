//! The images a run shows its captions of ([`sheet_sample`]), their
//! captions beside the dataset's, and the contact sheet ([`CONTACT_SHEET`])
//! a run leaves to show them with their images.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use virtex_data::coco::CocoCaptions;
use virtex_data::seed::epoch_rng;

use crate::contact_sheet::{SheetEntry, write_contact_sheet};
use crate::error::TrainError;

/// The contact sheet a captioning run leaves in its output directory.
pub const CONTACT_SHEET: &str = "captions.html";

/// Images on a run's contact sheet: each validation captions them.
pub const SHEET_IMAGES: usize = 24;

/// A validation image's caption beside the dataset's.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleCaption {
    /// COCO image id.
    pub image_id: u64,
    /// The model's caption.
    pub caption: String,
    /// The dataset's captions.
    pub references: Vec<String>,
}

/// The positions, among a split's `len` images, of those a run of
/// `RANDOM_SEED` `seed` shows on its contact sheet: the first
/// [`SHEET_IMAGES`] of a shuffle seeded by `seed` (the order in which the
/// validation loader visits a captioning split), the same at every
/// validation of the run and wherever the sheet is rewritten.
pub fn sheet_sample(len: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut epoch_rng(seed, 0));
    order.truncate(SHEET_IMAGES);
    order
}

/// The sheet's row of image `image_id` of `dataset` captioned `caption`,
/// with all its references, whatever `DATA.USE_SINGLE_CAPTION` kept for
/// training; `None` for an id the dataset does not hold.
pub fn sheet_entry(
    dataset: &CocoCaptions,
    image_id: u64,
    caption: &str,
    mark: Option<bool>,
) -> Option<SheetEntry> {
    let image = dataset.image(image_id)?;
    Some(SheetEntry {
        image: image.path.clone(),
        caption: caption.to_string(),
        references: image.captions.clone(),
        mark,
    })
}

/// Writes the contact sheet of the run in `output`, [`CONTACT_SHEET`] there
/// (replacing one written before): its path.
pub fn write_run_sheet(
    output: &Path,
    title: &str,
    header: &[(String, String)],
    entries: &[SheetEntry],
) -> Result<PathBuf, TrainError> {
    let path = output.join(CONTACT_SHEET);
    write_contact_sheet(&path, title, header, entries).map_err(|source| {
        TrainError::ContactSheet {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

/// `captions` (by image id of the validation split `val`) with their
/// references, written with their images as the sheet of the run in
/// `output` after `iterations`: the captions and the sheet's path.
pub(super) fn contact_sheet(
    val: &CocoCaptions,
    output: &Path,
    captions: &[(u64, String)],
    iterations: u64,
) -> Result<(Vec<SampleCaption>, PathBuf), TrainError> {
    let entries: Vec<SheetEntry> = captions
        .iter()
        .filter_map(|(id, caption)| sheet_entry(val, *id, caption, None))
        .collect();
    let title = format!(
        "{}: validation captions after {iterations} iterations",
        output.display()
    );
    let path = write_run_sheet(output, &title, &[], &entries)?;
    let captions = captions
        .iter()
        .map(|(id, caption)| SampleCaption {
            image_id: *id,
            caption: caption.clone(),
            references: val
                .image(*id)
                .map(|image| image.captions.clone())
                .unwrap_or_default(),
        })
        .collect();
    Ok((captions, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sheet_shows_a_seeded_shuffle_of_the_split() {
        let sample = sheet_sample(371, 0);
        assert_eq!(sample.len(), SHEET_IMAGES);
        assert_eq!(sample, sheet_sample(371, 0), "the same every time");
        assert_ne!(sample, sheet_sample(371, 1), "another seed, other images");
        assert_ne!(sample, (0..SHEET_IMAGES).collect::<Vec<_>>());
        let mut distinct = sample.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), SHEET_IMAGES);
        assert!(sample.iter().all(|&p| p < 371));
        // A split smaller than the sheet shows all of it.
        assert_eq!(sheet_sample(5, 0).len(), 5);
    }
}
