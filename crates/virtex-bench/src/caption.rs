//! `bench caption`: caption latency per image (backbone forward and
//! incremental decoding), beside the reference's beam search in PyTorch.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use burn_flex::Flex;
use rand::SeedableRng;
use virtex_data::caption::MAX_CAPTION_LENGTH;
use virtex_text::decoding::{BeamPrefix, CaptionDecoder, DecodingStrategy};
use virtex_text::{PretrainingModelConfig, PretrainingTask, TextualHeadName};
use virtex_train::device::DeviceSpec;
use virtex_vision::ResNetArch;

use crate::report::median;
use crate::{available_threads, pytorch};

/// `bench caption`.
#[derive(Debug, clap::Args)]
pub struct CaptionBench {
    /// Backbone architecture.
    #[arg(long, default_value = "resnet50")]
    pub arch: ResNetArch,
    /// Textual head.
    #[arg(long, default_value = "transdec_postnorm::L1_H2048_A32_F8192")]
    pub textual: String,
    /// Vocabulary size (the reference's coco_10k).
    #[arg(long, default_value_t = 10000)]
    pub vocab: usize,
    /// Images captioned together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Beams (1 = greedy).
    #[arg(long, default_value_t = 5)]
    pub beam: usize,
    /// Timed runs (after one untimed warm-up).
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
}

impl CaptionBench {
    /// Random weights never say `[EOS]` early, so every caption runs the full
    /// 30 steps: an upper bound on a trained model's latency.
    pub fn run(self, root: &Path) -> anyhow::Result<()> {
        let device = Default::default();
        let model = PretrainingModelConfig {
            task: PretrainingTask::Bicaptioning,
            visual: self.arch,
            textual: self.textual.parse()?,
            vocab_size: self.vocab,
            max_caption_length: MAX_CAPTION_LENGTH,
            dropout: 0.1,
        }
        .init::<Flex>(&device)?;
        let head = model
            .transformer_head()
            .expect("bicaptioning has a transformer head");
        let strategy = match self.beam {
            1 => DecodingStrategy::Greedy,
            beam_size => DecodingStrategy::Beam {
                beam_size,
                per_node_beam_size: 2,
                prefix: BeamPrefix::default(),
            },
        };
        let decoder = CaptionDecoder {
            strategy,
            ..CaptionDecoder::default()
        };
        let images = Tensor::<Flex, 4>::random(
            [self.batch, 3, self.size, self.size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut time = |decode: bool| {
            let start = Instant::now();
            let features = model.visual.forward(images.clone());
            let visual = start.elapsed().as_secs_f64();
            let tokens = if decode {
                decoder
                    .decode(head, features, &mut rng)
                    .iter()
                    .map(|c| c.tokens.len())
                    .sum::<usize>()
            } else {
                0
            };
            (visual, start.elapsed().as_secs_f64(), tokens)
        };
        time(true);
        let runs: Vec<(f64, f64, usize)> = (0..self.runs).map(|_| time(true)).collect();
        let per_image = median(runs.iter().map(|r| r.1 / self.batch as f64).collect());
        let visual = median(runs.iter().map(|r| r.0 / self.batch as f64).collect());
        let tokens = runs[0].2 as f64 / self.batch as f64;
        println!(
            "caption latency ({} + {}, vocab {}, beam {}, batch {}, {}x{}, flex CPU): \
             {per_image:.3} s/image ({visual:.3} s backbone, {:.3} s decoding {tokens:.0} tokens)",
            self.arch,
            self.textual,
            self.vocab,
            self.beam,
            self.batch,
            self.size,
            self.size,
            per_image - visual
        );
        // The reference's beam search in PyTorch (re-decoding every prefix).
        let TextualHeadName::Transformer { size, .. } = self.textual.parse()? else {
            anyhow::bail!("bench caption needs a transformer head");
        };
        let args = [
            "--arch",
            self.arch.name(),
            "--hidden",
            &size.hidden.to_string(),
            "--layers",
            &size.layers.to_string(),
            "--vocab",
            &self.vocab.to_string(),
            "--beam",
            &self.beam.to_string(),
        ]
        .map(String::from);
        let workload = pytorch::Workload {
            batch: self.batch,
            size: self.size,
            steps: self.runs,
            device: DeviceSpec::Cpu,
            threads: available_threads(),
        };
        match pytorch::script(root, "caption", &args, &workload) {
            Ok(torch) => {
                let torch_per_image = 1.0 / torch.images_per_s;
                println!(
                    "PyTorch (reference beam search, tools/bench/train_step.py): {torch_per_image:.3} s/image; \
                     virtex-rs speed ÷ PyTorch: {:.2}",
                    torch_per_image / per_image
                );
            }
            Err(e) => eprintln!("PyTorch caption row failed: {e:#}"),
        }
        Ok(())
    }
}
