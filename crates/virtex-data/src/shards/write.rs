//! Writing a COCO-format dataset as WebDataset shards.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::ShardError;
use crate::atomic;
use crate::coco::CocoCaptions;

/// What [`write_shards`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardsWritten {
    /// The shard files, in order.
    pub shards: Vec<PathBuf>,
    /// Samples written.
    pub samples: usize,
    /// The brace pattern naming them all (for `DATA.SHARDS`).
    pub pattern: String,
}

/// Writes `dataset` into `output` as `{prefix}-000000.tar`, … with
/// `per_shard` samples each (the last may hold fewer). A sample is
/// `<id>.<ext>` (the image file's bytes, unchanged) and `<id>.json`
/// (`{"image_id": …, "captions": […]}`, all of its captions), its key the
/// image id padded to 12 digits as COCO names files. The samples are dealt
/// in an order shuffled with `seed`, so each shard is a mix of the dataset;
/// each shard is written atomically ([`atomic::write_file`]).
pub fn write_shards(
    dataset: &CocoCaptions,
    output: &Path,
    prefix: &str,
    per_shard: usize,
    seed: u64,
) -> Result<ShardsWritten, ShardError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShardError::Write { path, source }
    };
    if per_shard == 0 {
        return Err(ShardError::Write {
            path: output.to_path_buf(),
            source: std::io::Error::other("--per-shard must be at least 1"),
        });
    }
    std::fs::create_dir_all(output).map_err(write_error(output))?;
    let mut order: Vec<usize> = (0..dataset.images.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut shards = Vec::new();
    for (number, chunk) in order.chunks(per_shard).enumerate() {
        let path = output.join(format!("{prefix}-{number:06}.tar"));
        atomic::write_file(&path, |file| {
            let mut builder = tar::Builder::new(BufWriter::new(file));
            for &index in chunk {
                let image = &dataset.images[index];
                let key = format!("{:012}", image.id);
                let extension = image
                    .path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("jpg")
                    .to_ascii_lowercase();
                let bytes = std::fs::read(&image.path).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", image.path.display()))
                })?;
                let json = serde_json::json!({"image_id": image.id, "captions": image.captions});
                append(&mut builder, &format!("{key}.{extension}"), &bytes)?;
                append(
                    &mut builder,
                    &format!("{key}.json"),
                    json.to_string().as_bytes(),
                )?;
            }
            let mut writer = builder.into_inner()?;
            writer.flush()?;
            writer.into_inner().map_err(|e| e.into_error())
        })
        .map_err(write_error(&path))?;
        shards.push(path);
    }
    let last = shards.len().saturating_sub(1);
    Ok(ShardsWritten {
        samples: dataset.images.len(),
        pattern: output
            .join(format!("{prefix}-{{{:06}..{last:06}}}.tar", 0))
            .to_string_lossy()
            .into_owned(),
        shards,
    })
}

/// Appends a regular file with fixed metadata (so shards are reproducible).
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, name, bytes)
}
