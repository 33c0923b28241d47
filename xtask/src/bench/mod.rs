//! `cargo xtask bench`: speed measurements recorded in docs/.

use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor};
use clap::Parser;
use virtex_text::TextualHeadName;
use virtex_train::device::{BackendTask, DeviceSpec};
use virtex_vision::ResNetConfig;

use crate::flags::{BackboneBench, Bench, BenchKind, CaptionBench, CpuBackendName, DataBench};

mod extract;
mod pytorch;
mod train;

/// What `cargo xtask bench` runs without a subcommand.
const ALL_COMPARISONS: [&str; 4] = ["train", "extract", "caption", "data"];

impl Bench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let Some(what) = self.what else {
            // Every comparison with PyTorch, with each command's own defaults.
            for name in ALL_COMPARISONS {
                println!("\n## cargo xtask bench {name}\n");
                let parsed = crate::flags::Xtask::try_parse_from(["cargo xtask", "bench", name])?;
                parsed.command.run()?;
            }
            return Ok(());
        };
        match what {
            BenchKind::Backbone(bench) => bench.run(),
            BenchKind::Data(bench) => bench.run(),
            BenchKind::Caption(bench) => bench.run(),
            BenchKind::Train(bench) => bench.run(),
            BenchKind::TrainRow(bench) => bench.run(),
            BenchKind::Extract(bench) => bench.run(),
        }
    }
}

/// Timings of one backend.
struct StepTimes {
    train_s: Vec<f64>,
    eval_s: Vec<f64>,
}

/// Peak resident memory of this process (`VmHWM`), Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

impl BackboneBench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        println!(
            "{} training step (SGD m=0.9, CE over fc-1000), batch {}, {}x{}, {} timed steps after 1 warm-up",
            self.arch, self.batch, self.size, self.size, self.steps
        );
        println!("| backend | train s/step (median) | train images/s | eval fwd s (median) |");
        println!("|---|---|---|---|");
        let rows: Vec<(String, StepTimes)> = match self.device {
            Some(device) => vec![(device.to_string(), device.dispatch(self.task())?)],
            None => self
                .backends
                .iter()
                .map(|backend| {
                    let times = match backend {
                        CpuBackendName::Flex => {
                            self.task().run::<Autodiff<Flex>>(Default::default())
                        }
                        CpuBackendName::Ndarray => {
                            self.task().run::<Autodiff<NdArray>>(Default::default())
                        }
                    };
                    (format!("{backend:?}"), times)
                })
                .collect(),
        };
        for (name, times) in rows {
            let train = median(times.train_s);
            println!(
                "| {name} | {train:.2} | {:.2} | {:.2} |",
                self.batch as f64 / train,
                median(times.eval_s)
            );
        }
        Ok(())
    }

    fn task(&self) -> BackboneStep {
        BackboneStep {
            config: ResNetConfig::virtex(self.arch).with_num_classes(Some(1000)),
            batch: self.batch,
            size: self.size,
            steps: self.steps,
        }
    }
}

/// One training step and one eval forward of a ResNet, timed.
struct BackboneStep {
    config: ResNetConfig,
    batch: usize,
    size: usize,
    steps: usize,
}

impl BackendTask for BackboneStep {
    type Output = StepTimes;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> StepTimes {
        let mut model = self.config.init::<B>(&device);
        let mut optim = SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let images = Tensor::<B, 4>::random(
            [self.batch, 3, self.size, self.size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let labels = Tensor::<B, 1, Int>::from_ints(
            (0..self.batch as i32)
                .map(|i| i * 37 % 1000)
                .collect::<Vec<_>>()
                .as_slice(),
            &device,
        );

        let mut times = StepTimes {
            train_s: Vec::new(),
            eval_s: Vec::new(),
        };
        for step in 0..=self.steps {
            let start = Instant::now();
            let logits = model.forward_logits(images.clone()).expect("built with fc");
            let loss = loss_fn.forward(logits, labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.01, model, grads);
            // Wait for the device to finish before stopping the clock.
            let _ = B::sync(&device);
            if step > 0 {
                times.train_s.push(start.elapsed().as_secs_f64());
            }

            let eval_model = model.valid();
            let start = Instant::now();
            let features = eval_model.forward_pooled(images.clone().inner());
            let _ = features.into_data();
            if step > 0 {
                times.eval_s.push(start.elapsed().as_secs_f64());
            }
        }
        times
    }
}

impl DataBench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        use std::sync::Arc;
        use virtex_data::augment::TrainAugmentation;
        use virtex_data::coco::CocoCaptions;
        use virtex_data::loader::{Preprocessing, PretrainingLoader};
        use virtex_data::tokenizer::SentencePieceTokenizer;

        let root = crate::project_root();
        let dataset = CocoCaptions::load(&root.join("data/emoji"), "train")?;
        let tokenizer = SentencePieceTokenizer::from_file(
            root.join("data/fixtures/tokenizer/emoji_bpe.model"),
        )?;
        let loader = PretrainingLoader::new(
            Arc::new(dataset),
            Arc::new(tokenizer),
            Preprocessing::Train(TrainAugmentation::new(self.size)),
            self.batch,
            0,
        );
        let threads = self.threads.unwrap_or_else(rayon_threads);
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
            "data pipeline (emoji train, decode 64 px JPEG + random resized crop to {0}x{0} + flip + jitter + normalise + tokenize), batch {1}, {2} threads:",
            self.size, self.batch, threads
        );
        let per_thread = images / elapsed / threads as f64;
        println!(
            "{:.0} images/s, {per_thread:.0} images/s per thread",
            images / elapsed
        );
        // The Python twin (PIL + torchvision + SentencePiece), one thread.
        match pytorch::data_pipeline(self.size, self.batch, self.batches) {
            Ok(python) => println!(
                "Python (tools/bench/data_pipeline.py, 1 thread): {python:.0} images/s; \
                 virtex-rs per thread ÷ Python: {:.2}",
                per_thread / python
            ),
            Err(e) => eprintln!("Python data pipeline failed: {e:#}"),
        }
        Ok(())
    }
}

impl CaptionBench {
    /// Random weights never say `[EOS]` early, so every caption runs the full
    /// 30 steps: an upper bound on a trained model's latency.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        use rand::SeedableRng;
        use virtex_text::decoding::{CaptionDecoder, DecodingStrategy};
        use virtex_text::{PretrainingModelConfig, PretrainingTask};

        let device = Default::default();
        let model = PretrainingModelConfig {
            task: PretrainingTask::Bicaptioning,
            visual: self.arch,
            textual: self.textual.parse()?,
            vocab_size: self.vocab,
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
            threads: rayon_threads(),
        };
        match pytorch::script("caption", &args, &workload) {
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

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn every_default_comparison_is_a_bench_command() {
        for name in super::ALL_COMPARISONS {
            let parsed = crate::flags::Xtask::try_parse_from(["cargo xtask", "bench", name]);
            assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
        }
    }
}
