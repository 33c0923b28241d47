//! The command tree of `cargo xtask`. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use virtex_data::images::{BadImagePolicy, DEFAULT_MAX_PIXELS};
use virtex_train::config::{BeamPrefix, DecoderName};
use virtex_train::device::{DeviceList, DeviceSpec};
use virtex_train::source::PthLayout;
use virtex_vision::ResNetArch;
use virtex_vision::pytorch::ExportNaming;

/// virtex-rs: VirTex (Desai & Johnson, CVPR 2021) in Rust on burn.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
pub struct Xtask {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pretrain a visual backbone from captions (bicaptioning and the other
    /// four tasks), by default on the bundled emoji dataset on the CPU.
    Pretrain(Pretrain),
    /// Evaluate a backbone or a captioner: VOC07 SVMs, linear probes,
    /// fine-tuning, captioning metrics, features, Detectron2 export.
    Evaluate(Evaluate),
    /// Caption images with a pretrained model's forward decoder.
    Caption(Caption),
    /// Build a SentencePiece BPE vocabulary from COCO-format captions.
    BuildVocab(BuildVocab),
    /// Convert a public dataset into the COCO captions layout.
    PrepareData(PrepareData),
    /// Convert ResNet weights between torchvision, VirTex and Detectron2 layouts.
    ExportBackbone(ExportBackbone),
    /// Measure training and inference speed.
    Bench(virtex_bench::Bench),
    /// The prepared GPU check: 50 pretraining steps of the reference's
    /// R-50 + L1_H1024 bicaptioning at batch 64, beside PyTorch (f32 and
    /// AMP); images/s and peak GPU memory. Build with `--features cuda` (or
    /// `wgpu`, to rehearse it on a software GPU).
    GpuCheck(virtex_bench::gpu_check::GpuCheck),
}

/// `cargo xtask evaluate`.
#[derive(Debug, clap::Args)]
pub struct Evaluate {
    /// Which evaluation [default: `emoji`, the miniature VirTex experiment on
    /// the newest checkpoint of `cargo xtask pretrain`'s default output].
    #[command(subcommand)]
    pub what: Option<Evaluation>,
}

/// The evaluations.
#[derive(Debug, Subcommand)]
pub enum Evaluation {
    /// Global-average-pooled layer4 features of a frozen backbone, as `.npy`
    /// (plus `<output>.txt` listing the images, one per row).
    Features(ExtractFeatures),
    /// The reference's VOC07 protocol: per-class linear SVMs on L2-normalised
    /// pooled features, C by 3-fold CV, test AP and mAP.
    Voc07(Voc07),
    /// Linear probe on a frozen backbone (ImageNet protocol) over an
    /// ImageFolder dataset; top-1/top-5.
    Linear(Transfer),
    /// End-to-end fine-tuning (iNaturalist protocol) over an ImageFolder
    /// dataset; top-1/top-5.
    Finetune(Transfer),
    /// The miniature VirTex experiment: linear probes on the bundled emoji
    /// data's subcategories and categories, pretrained backbones against a
    /// random one.
    Emoji(EmojiProbe),
    /// Caption a COCO-format split (or read captions already made) and score
    /// them against its references: BLEU-1..4, ROUGE-L, CIDEr-D.
    Captioning(CaptioningEval),
    /// Write the backbone under Detectron2's names (`res2.0.conv1.weight`,
    /// under `["model"]`) in a `.pth` that `torch.load` reads.
    #[command(name = "detectron2-export")]
    Detectron2Export(Detectron2Export),
}

/// `cargo xtask evaluate captioning`.
#[derive(Debug, clap::Args)]
pub struct CaptioningEval {
    /// COCO captions JSON: the references, and the images to caption.
    #[arg(long)]
    pub annotations: PathBuf,
    /// Captions to score, as `cargo xtask caption` writes them
    /// (`[{"image_id", "caption"}]`). Without it, `--checkpoint` captions
    /// the split first.
    #[arg(
        long,
        conflicts_with = "checkpoint",
        required_unless_present = "checkpoint"
    )]
    pub predictions: Option<PathBuf>,
    /// A virtex-rs checkpoint or an official VirTex `.pth` to caption with.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Image directory [default: `ROOT/{split}2017` beside `ROOT/annotations/`].
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    #[command(flatten)]
    pub captioner: Captioner,
    /// Where to write the scores (and, when captioning, `<output>.captions.json`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// `cargo xtask evaluate detectron2-export`.
#[derive(Debug, clap::Args)]
pub struct Detectron2Export {
    /// The backbone.
    #[command(flatten)]
    pub backbone: BackboneSource,
    /// The `.pth` to write.
    #[arg(long)]
    pub output: PathBuf,
}

/// `cargo xtask evaluate linear|finetune`.
#[derive(Debug, clap::Args)]
pub struct Transfer {
    /// The backbone (`--checkpoint random` for a freshly initialised one).
    #[command(flatten)]
    pub backbone: BackboneSource,
    /// The downstream config [default: data/configs/downstream/
    /// imagenet_clf.yaml for `linear`, inaturalist_clf.yaml for `finetune`].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. `--set DATA.ROOT=datasets/imagenet` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where to write the result (JSON).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// `cargo xtask evaluate emoji`.
#[derive(Debug, Default, clap::Args)]
pub struct EmojiProbe {
    /// Checkpoints or run directories (the newest checkpoint in it) to probe
    /// [default: runs/emoji_bicaptioning]. A random ResNet-18 is always added.
    #[arg(long = "checkpoint")]
    pub checkpoints: Vec<PathBuf>,
    /// Override a key of data/configs/downstream/emoji_linear.yaml (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The split the probes are tested on: `val`, or `test` [default: val].
    #[arg(long)]
    pub split: Option<String>,
    /// Where to write the table's numbers (JSON).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Where a backbone's weights come from.
#[derive(Debug, clap::Args)]
pub struct BackboneSource {
    /// A virtex-rs checkpoint (`.safetensors`), an official VirTex `.pth`, a
    /// torchvision `.pth` (see `--layout`), or `random` (fresh weights of `--arch`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Layout of a `.pth` checkpoint: `virtex` (`{"model": {"visual.cnn.…"}}`)
    /// or `torchvision` [default: what the file's tensor names show].
    #[arg(long)]
    pub layout: Option<PthLayout>,
    /// Backbone of a `.pth` checkpoint (virtex-rs checkpoints hold their config).
    #[arg(long, default_value = "resnet50")]
    pub arch: ResNetArch,
}

/// `cargo xtask evaluate features`.
#[derive(Debug, clap::Args)]
pub struct ExtractFeatures {
    /// The backbone.
    #[command(flatten)]
    pub backbone: BackboneSource,
    /// A directory of images, or a text file with one image path per line.
    #[arg(long)]
    pub images: PathBuf,
    /// Side the backbone sees (after resizing the shorter side to 256/224 of it).
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Scale each feature vector to unit length (the VOC07 SVM protocol).
    #[arg(long)]
    pub l2_normalize: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[command(flatten)]
    pub bad_images: BadImages,
    /// The `.npy` to write (the images of its rows are listed in `<output>.txt`).
    #[arg(long)]
    pub output: PathBuf,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// `cargo xtask evaluate voc07`.
#[derive(Debug, clap::Args)]
pub struct Voc07 {
    /// The backbone.
    #[command(flatten)]
    pub backbone: BackboneSource,
    /// The VOC2007 devkit directory (`JPEGImages/`, `ImageSets/Main/`).
    #[arg(long)]
    pub voc_root: PathBuf,
    /// Side the backbone sees (256 → 224 in the reference).
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Where to write the per-class results (JSON).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// `cargo xtask pretrain`.
#[derive(Debug, clap::Args)]
pub struct Pretrain {
    /// A config in the reference's YAML format (`_BASE_` inheritance works).
    #[arg(long, default_value = "data/configs/emoji_bicaptioning.yaml")]
    pub config: PathBuf,
    /// Override a config key, e.g. `--set OPTIM.LR=0.002` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where checkpoints, metrics.jsonl and plots go [default: runs/{config name}].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`). Several devices
    /// (`cuda:0,cuda:1`, or `cpu,cpu`; not wgpu) train data-parallel, one
    /// process per device, the batch split among them; a rank started by
    /// torchrun or Slurm takes the entry of its `LOCAL_RANK`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceList,
    /// Continue from the newest checkpoint in the output directory (a fresh
    /// run when it holds none yet, so a requeued job can pass it every time).
    #[arg(long)]
    pub resume: bool,
    /// Start from what fits of these weights: a virtex-rs checkpoint, an
    /// official VirTex `.pth`, or a torchvision `.pth` (the backbone alone);
    /// the rest keeps its fresh initialisation. Ignored when resuming.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// How an `--init-from` `.pth` is laid out: virtex or torchvision
    /// [default: what the file's tensor names show].
    #[arg(long)]
    pub layout: Option<PthLayout>,
    /// One process of a multi-process data-parallel run.
    #[command(flatten)]
    pub world: World,
}

/// A process's place in a multi-process run, as torchrun sets it: each flag
/// falls back to its environment variable. Without a world size, the run
/// is a single process, or with several `--device`s this machine's share
/// of the run, started one process per device.
#[derive(Debug, clap::Args)]
pub struct World {
    /// This process's rank, 0..world size.
    #[arg(long, env = "RANK")]
    pub rank: Option<String>,
    /// Number of processes in the run.
    #[arg(long, env = "WORLD_SIZE")]
    pub world_size: Option<String>,
    /// Rank within this machine [default: the rank].
    #[arg(long, env = "LOCAL_RANK")]
    pub local_rank: Option<String>,
    /// Host of rank 0, which the others connect to.
    #[arg(long, env = "MASTER_ADDR")]
    pub master_addr: Option<String>,
    /// Port rank 0 listens on.
    #[arg(long, env = "MASTER_PORT")]
    pub master_port: Option<String>,
    /// Seconds a rank waits for the others (rendezvous, each collective).
    #[arg(long, default_value_t = 600)]
    pub dist_timeout: u64,
    /// Machines of a run started with several devices per machine: each
    /// runs `pretrain` once, with its `--node-rank` and rank 0's
    /// `--master-addr`, and starts one process per `--device`.
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// This machine's index, 0..nnodes.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
}

/// How a checkpoint captions, for `caption` and `evaluate captioning`.
#[derive(Debug, clap::Args)]
pub struct Captioner {
    /// Config of an official `.pth` (virtex-rs checkpoints hold theirs).
    #[arg(
        long,
        default_value = "data/configs/task_ablations/bicaptioning_R_50_L1_H2048.yaml"
    )]
    pub config: PathBuf,
    /// SentencePiece model [default: the config's DATA.TOKENIZER_MODEL].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// How the next token is chosen: beam, nucleus or greedy [default: the
    /// config's MODEL.DECODER, beam search].
    #[arg(long)]
    pub decoder: Option<DecoderName>,
    /// Beam search's prefix after the first step: drop-sos (the reference's
    /// search) or keep-sos [default: the config's MODEL.DECODER.BEAM_PREFIX].
    #[arg(long)]
    pub beam_prefix: Option<BeamPrefix>,
    /// λ ≥ 0: choose the first token by log p(t | image) − λ·log p(t | no
    /// image) [default: the config's MODEL.DECODER.PRIOR_PENALTY; 0 is the
    /// reference's decoding].
    #[arg(long)]
    pub prior_penalty: Option<f64>,
    /// μ ≥ 0: a bicaptioning checkpoint's caption is the final beam with the
    /// best forward score + μ·backward log-probability [default: the config's
    /// MODEL.DECODER.BACKWARD_WEIGHT; 0 is the reference's decoding].
    #[arg(long)]
    pub backward_weight: Option<f64>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

/// What `caption` and `evaluate features` do with a file that is not a
/// usable image.
#[derive(Debug, clap::Args)]
pub struct BadImages {
    /// `skip`: leave it out, say why on stderr, list it in the output
    /// (`<output>.skipped.json`) and go on; `error`: stop at the first, naming it.
    #[arg(long, default_value_t = BadImagePolicy::Skip)]
    pub on_bad_image: BadImagePolicy,
    /// Images with more pixels are refused unread, as possible decompression
    /// bombs (default: PIL's `MAX_IMAGE_PIXELS`).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_image_pixels: u64,
}

/// `cargo xtask caption`.
#[derive(Debug, clap::Args)]
pub struct Caption {
    /// A virtex-rs checkpoint (`checkpoint_N.safetensors`) or an official
    /// VirTex `.pth` (`{"model": state_dict}`; its architecture comes from `--config`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// A directory of images, or a COCO captions JSON (its images are read
    /// from `--image-dir`, by default `ROOT/{split}2017` beside `ROOT/annotations/`).
    #[arg(long)]
    pub images: PathBuf,
    /// Image directory of a COCO JSON given to `--images`.
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    #[command(flatten)]
    pub captioner: Captioner,
    /// Where to write `[{"image_id" | "file_name", "caption"}]`.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub bad_images: BadImages,
    /// Also write, per image, `<name>.png`: the image and, for each word, the
    /// forward decoder's cross-attention over the grid as a heat map (with
    /// `<name>.txt` listing the words in panel order).
    #[arg(long)]
    pub attention_dir: Option<PathBuf>,
    /// `cpu`; `cuda` / `cuda:N` (build with `--features cuda`); `wgpu`, `wgpu:N`
    /// or `wgpu:cpu` (build with `--features wgpu`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// `cargo xtask build-vocab`.
#[derive(Debug, clap::Args)]
pub struct BuildVocab {
    /// COCO captions JSON files (`captions_train2017.json`).
    #[arg(long, num_args = 1.., required = true)]
    pub captions: Vec<PathBuf>,
    /// Pieces in the vocabulary, `<unk>` and `[SOS]`/`[EOS]`/`[MASK]` included.
    #[arg(long, default_value_t = 10000)]
    pub vocab_size: usize,
    /// Output prefix: writes `<prefix>.model`.
    #[arg(long)]
    pub output: PathBuf,
}

/// `cargo xtask prepare-data`.
#[derive(Debug, clap::Args)]
pub struct PrepareData {
    /// Which dataset.
    #[command(subcommand)]
    pub dataset: PrepareDataset,
}

/// Datasets `prepare-data` can build.
#[derive(Debug, Subcommand)]
pub enum PrepareDataset {
    /// The bundled emoji dataset: Twemoji 64 px images (CC-BY 4.0) captioned
    /// from their names, from the npm package emoji-datasource-twitter@16.0.0,
    /// in three splits: train2017, val2017 (to tune on), test2017 (to report on).
    Emoji {
        /// The package tarball (`npm pack emoji-datasource-twitter@16.0.0`).
        /// Without it, `npm pack` fetches it from the npm registry.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "data/emoji")]
        output: PathBuf,
    },
    /// WebDataset tar shards (`<id>.jpg` + `<id>.json`) from any COCO-format
    /// captions file, for `DATA.SHARDS`.
    Shards {
        /// A COCO captions JSON (`…/annotations/captions_train2017.json`).
        #[arg(long)]
        from: PathBuf,
        /// The folder of its images [default: `train2017` beside `annotations/`].
        #[arg(long)]
        images: Option<PathBuf>,
        /// Output directory.
        #[arg(long)]
        output: PathBuf,
        /// Samples per shard.
        #[arg(long, default_value_t = 1000)]
        per_shard: usize,
        /// Shard file prefix [default: the split, e.g. `train2017`].
        #[arg(long)]
        prefix: Option<String>,
        /// Seed of the order samples are dealt to shards in.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// `cargo xtask export-backbone`.
#[derive(Debug, clap::Args)]
pub struct ExportBackbone {
    /// Backbone architecture (`resnet50`, `torchvision::wide_resnet50_2`, …).
    #[arg(long, default_value = "resnet50")]
    pub arch: ResNetArch,
    /// Weights to read (any kind `evaluate` takes). Without it, a freshly
    /// initialised backbone is written.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Layout of a `.pth` `--checkpoint`: `torchvision` or `virtex`
    /// [default: what the file's tensor names show].
    #[arg(long)]
    pub layout: Option<PthLayout>,
    /// Names to write: `detectron2` or `torchvision`.
    #[arg(long, default_value = "detectron2")]
    pub to: ExportNaming,
    /// The `.pth` file to write.
    #[arg(long)]
    pub output: PathBuf,
}
