//! `bench data`: images/s of the captioning data pipeline (decode, the
//! reference's training augmentation, tokenize) on the bundled emoji data or
//! on COCO-sized photographs ([`crate::photos`]), beside its Python twin
//! (`tools/bench/data_pipeline.py`) in the same run, and the same images
//! streamed from WebDataset shards against the folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use virtex_data::augment::TrainAugmentation;
use virtex_data::batch::PretrainingBatch;
use virtex_data::coco::CocoCaptions;
use virtex_data::loader::PretrainingLoader;
use virtex_data::pipeline::{Preprocessing, SamplePipeline};
use virtex_data::shards::{ShardStream, StreamPosition, write_shards};
use virtex_data::tokenizer::SentencePieceTokenizer;

use crate::photos::{COCO_SIZE, photos_in, skimage_photos, write_coco_sized_split};
use crate::{available_threads, pytorch};

/// The images `bench data` decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchImages {
    /// The bundled emoji dataset's training split (64 px JPEGs).
    Emoji,
    /// Photographs re-encoded as 640×480 JPEGs, COCO's size.
    Photos,
}

/// `bench data`.
#[derive(Debug, clap::Args)]
pub struct DataBench {
    /// Output image side (the emoji images are 64 px; 224 upsamples).
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Batches to time (after one untimed batch).
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Which images.
    #[arg(long, value_enum, default_value = "emoji")]
    pub images: BenchImages,
    /// With `--images photos`: a folder of photographs (.jpg, .png) [default:
    /// scikit-image's sample photographs, found through python3].
    #[arg(long)]
    pub photo_dir: Option<PathBuf>,
    /// With `--images photos`: how many 640×480 JPEGs to write (cycling
    /// through the photographs).
    #[arg(long, default_value_t = 1536)]
    pub photo_count: usize,
}

impl DataBench {
    /// Prints virtex-rs's and Python's images/s and their per-thread ratio.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let scratch =
            std::env::temp_dir().join(format!("virtex-bench-data-{}", std::process::id()));
        let (split_root, description) = match self.images {
            BenchImages::Emoji => (
                root.join("data/emoji"),
                "emoji train, 64 px JPEGs".to_string(),
            ),
            BenchImages::Photos => {
                let sources = match &self.photo_dir {
                    Some(dir) => photos_in(dir)?,
                    None => skimage_photos()?,
                };
                write_coco_sized_split(&sources, &scratch, self.photo_count)?;
                let (width, height) = COCO_SIZE;
                let description = format!(
                    "{} photographs as {} {width}x{height} JPEGs",
                    sources.len(),
                    self.photo_count
                );
                (scratch.clone(), description)
            }
        };
        let result = self.run_on(root, &split_root, &description);
        if self.images == BenchImages::Photos {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        result
    }

    /// The measurements on the COCO-format split at `split_root`.
    fn run_on(&self, root: &Path, split_root: &Path, description: &str) -> anyhow::Result<()> {
        let dataset = CocoCaptions::load(split_root, "train")?;
        let tokenizer = SentencePieceTokenizer::from_file(
            root.join("data/fixtures/tokenizer/emoji_bpe.model"),
        )?;
        let dataset = Arc::new(dataset);
        let pipeline = SamplePipeline::new(
            Arc::new(tokenizer),
            Preprocessing::Train(TrainAugmentation::new(self.size)),
        );
        let loader =
            PretrainingLoader::with_pipeline(dataset.clone(), pipeline.clone(), self.batch, 0);
        let threads = self.threads.unwrap_or_else(available_threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let per_epoch = loader.batches_per_epoch();
        let elapsed = pool.install(|| -> anyhow::Result<f64> {
            loader.batch(0, 0)?;
            let start = Instant::now();
            for i in 1..=self.batches {
                loader.batch((i / per_epoch) as u64, i % per_epoch)?;
            }
            Ok(start.elapsed().as_secs_f64())
        })?;
        let images = (self.batches * self.batch) as f64;
        println!(
            "data pipeline ({description}: decode + random resized crop to {0}x{0} + flip + jitter + normalise + tokenize), batch {1}, {2} threads:",
            self.size, self.batch, threads
        );
        let per_thread = images / elapsed / threads as f64;
        println!(
            "{:.0} images/s, {per_thread:.0} images/s per thread",
            images / elapsed
        );
        // The Python twin (PIL + torchvision + SentencePiece), one thread.
        match pytorch::data_pipeline(root, split_root, self.size, self.batch, self.batches) {
            Ok(python) => println!(
                "Python (tools/bench/data_pipeline.py, 1 thread): {python:.0} images/s; \
                 virtex-rs per thread ÷ Python: {:.2}",
                per_thread / python
            ),
            Err(e) => eprintln!("Python data pipeline failed: {e:#}"),
        }
        self.shards_against_folder(&dataset, loader, pipeline)
    }

    /// The same images streamed, with prefetching, from the folder and from
    /// shards of 256 (written to a temporary folder first), both on rayon's
    /// global pool.
    fn shards_against_folder(
        &self,
        dataset: &CocoCaptions,
        loader: PretrainingLoader,
        pipeline: SamplePipeline,
    ) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("virtex-bench-shards-{}", std::process::id()));
        let written = write_shards(dataset, &dir, "train", 256, 0)?;
        let count = written.shards.len();
        let stream = ShardStream::new(written.shards, pipeline, self.batch, 0)?;
        // One epoch of the folder at most: its stream ends there.
        let batches = self
            .batches
            .min(loader.batches_per_epoch().saturating_sub(1))
            .max(1);
        let time = |mut next: Box<dyn FnMut() -> anyhow::Result<PretrainingBatch>>| {
            next()?;
            let start = Instant::now();
            let mut images = 0;
            for _ in 0..batches {
                images += next()?.len();
            }
            anyhow::Ok(images as f64 / start.elapsed().as_secs_f64())
        };
        let folder_batches = loader.epoch(0, 2);
        let folder = time(Box::new(move || Ok(folder_batches.recv()??)))?;
        let shard_batches = stream.batches_from(StreamPosition::START, 2);
        let shards = time(Box::new(move || Ok(shard_batches.recv()??.0)))?;
        std::fs::remove_dir_all(&dir)?;
        println!(
            "streamed with prefetch on {} threads: JPEG folder {folder:.0} images/s, \
             {} shards of 256 {shards:.0} images/s; shards ÷ folder: {:.2}",
            rayon::current_num_threads(),
            count,
            shards / folder
        );
        Ok(())
    }
}
