//! Captions the images of a folder with a bicaptioning model (beam search
//! with the forward decoder) and prints one caption per image.
//!
//! ```sh
//! cargo run -p virtex-eval --example caption_folder
//! cargo run -p virtex-eval --example caption_folder -- runs/emoji_bicaptioning/checkpoint_800.safetensors
//! cargo run -p virtex-eval --example caption_folder -- runs/emoji_bicaptioning/checkpoint_800.safetensors my_photos/
//! ```
//!
//! The repository commits no trained captioner. Without arguments the model
//! is the bundled config's (`data/configs/emoji_bicaptioning.yaml`:
//! ResNet-18 at 32 px and a one-layer head) with freshly initialised,
//! untrained weights, so its captions are strings of emoji-vocabulary words
//! unrelated to the images; what matters is that the pipeline runs. Pass a
//! virtex-rs checkpoint (`cargo xtask pretrain` writes one to
//! `runs/emoji_bicaptioning/` in a few minutes; virtex-train's `ten_steps`
//! example writes an untrained one in seconds) for the captions it has
//! learnt; the checkpoint holds its own config and tokenizer path. The images
//! are the first eight of the bundled `data/emoji/val2017` unless a folder is
//! given.

use std::path::PathBuf;

use virtex_data::coco::ImageRef;
use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS};
use virtex_eval::captioning::{CaptionTask, ImageSet};
use virtex_train::config::Config;
use virtex_train::device::DeviceSpec;
use virtex_train::source::WeightsSource;

const BUNDLED_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/configs/emoji_bicaptioning.yaml"
);
const EMOJI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/emoji/val2017");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let source = match args.next() {
        Some(checkpoint) => WeightsSource::Native(PathBuf::from(checkpoint)),
        None => WeightsSource::Random,
    };
    let images = match args.next() {
        Some(folder) => ImageSet::folder(folder.as_ref())?,
        None => {
            let mut bundled = ImageSet::folder(EMOJI.as_ref())?;
            bundled.items.truncate(8);
            bundled
        }
    };

    let task = CaptionTask {
        source,
        // The architecture and tokenizer of `Random` (a checkpoint has its own).
        config: Config::load(Some(BUNDLED_CONFIG.as_ref()), &[])?,
        tokenizer: None,
        decoder: None,
        beam_prefix: None,
        prior_penalty: None,
        backward_weight: None,
        images,
        batch: 8,
        attention_dir: None,
        on_bad_image: BadImagePolicy::Skip,
        max_image_pixels: DEFAULT_MAX_PIXELS,
    };
    let captions = DeviceSpec::Cpu.dispatch(task)??;
    for result in &captions.results {
        let name = match &result.image {
            ImageRef::File { file_name } => file_name.clone(),
            ImageRef::Id { image_id } => format!("image {image_id}"),
        };
        println!("{name:>24}: {}", result.caption);
    }
    for skipped in &captions.skipped {
        eprintln!("skipped {skipped}");
    }
    Ok(())
}
