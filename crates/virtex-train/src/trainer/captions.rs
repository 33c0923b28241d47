//! The last validation's captions beside the dataset's, and the contact
//! sheet ([`CONTACT_SHEET`]) a run leaves to show them with their images.

use std::path::{Path, PathBuf};

use virtex_data::coco::CocoCaptions;

use crate::config::Config;
use crate::contact_sheet::{SheetEntry, write_contact_sheet};
use crate::data::dataset_error;
use crate::error::TrainError;

/// The contact sheet a captioning run leaves in its output directory.
pub const CONTACT_SHEET: &str = "captions.html";

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

/// `captions` with each image's reference captions.
fn with_references(captions: &[(u64, String)], dataset: &CocoCaptions) -> Vec<SampleCaption> {
    captions
        .iter()
        .map(|(id, caption)| SampleCaption {
            image_id: *id,
            caption: caption.clone(),
            references: dataset
                .image(*id)
                .map(|image| image.captions.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// `captions` (by val image id) with all their references, whatever
/// `DATA.USE_SINGLE_CAPTION` kept for training, written with their images
/// as [`CONTACT_SHEET`] in `output` after `iterations`: the captions and
/// the sheet's path.
pub(super) fn contact_sheet(
    config: &Config,
    output: &Path,
    captions: &[(u64, String)],
    iterations: u64,
) -> Result<(Vec<SampleCaption>, PathBuf), TrainError> {
    let val = CocoCaptions::load(&config.data.root, "val").map_err(dataset_error(config))?;
    let captions = with_references(captions, &val);
    let path = output.join(CONTACT_SHEET);
    let entries: Vec<SheetEntry> = captions
        .iter()
        .filter_map(|sample| {
            let image = val.image(sample.image_id)?;
            Some(SheetEntry {
                image: image.path.clone(),
                caption: sample.caption.clone(),
                references: sample.references.clone(),
            })
        })
        .collect();
    let title = format!(
        "{}: validation captions after {iterations} iterations",
        output.display()
    );
    write_contact_sheet(&path, &title, &entries).map_err(|source| TrainError::ContactSheet {
        path: path.clone(),
        source,
    })?;
    Ok((captions, path))
}
