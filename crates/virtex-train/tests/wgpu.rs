//! The GPU code path on burn's wgpu backend (feature `wgpu`): the same
//! CubeCL kernels, fusion and autotune as CUDA, compiled to WGSL. CI runs
//! these tests on Mesa's lavapipe, a Vulkan driver on the CPU
//! (`.ci/run` sets `CUBECL_WGPU_DEFAULT_DEVICE=Cpu`); on a machine with a
//! GPU they run on wgpu's choice of adapter.
//!
//! ```sh
//! cargo test -p virtex-train --features wgpu --test wgpu
//! ```
//!
//! Each case is checked against the CPU backend (Flex) or the reference's
//! own numbers, on the same inputs and the same weights.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::backend::wgpu::WgpuDevice;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use burn_store::ModuleSnapshot;
use burn_store::pytorch::PytorchReader;
use virtex_text::decoding::BeamPrefix;
use virtex_train::TrainError;
use virtex_train::checkpoint::{ModelCheckpoint, checkpoint_path};
use virtex_train::config::Config;
use virtex_train::device::{BackendTask, CpuBackend, WgpuBackend};
use virtex_train::trainer::{Pretraining, PretrainingSummary};
use virtex_vision::pytorch::TorchvisionWeights;
use virtex_vision::{Precision, ResNetArch, ResNetConfig};

#[path = "../../virtex-text/tests/beam_fixture/mod.rs"]
mod beam_fixture;
mod common;

use common::{root, tiny};

type Cpu = burn_flex::Flex;
type Gpu = burn::backend::Wgpu;

/// wgpu's adapter: its default, which `CUBECL_WGPU_DEFAULT_DEVICE` picks.
fn adapter() -> WgpuDevice {
    WgpuDevice::DefaultDevice
}

/// The cases take turns: each backend keeps one random generator per
/// process, and lavapipe already uses every core.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-wgpu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where a run trains.
#[derive(Clone, Copy, Debug)]
enum On {
    Cpu,
    Gpu,
}

/// Runs (or with `resume`, resumes) `config` into `output` on `on`.
fn train(
    on: On,
    config: Config,
    output: &Path,
    resume: bool,
) -> Result<PretrainingSummary, TrainError> {
    let run = Pretraining {
        config,
        output: output.to_path_buf(),
        resume,
        init_from: None,
        world: None,
        precision: Precision::F32,
    };
    match on {
        On::Cpu => run.run::<CpuBackend>(Default::default()),
        On::Gpu => run.run::<WgpuBackend>(adapter()),
    }
}

/// The tiny config without dropout (whose masks each backend draws from its
/// own generator), a checkpoint every 2 iterations, losses read back from
/// the device every 3 (so the device-side loss sums and the clip factor run
/// over windows longer than one step), every checkpoint kept, one
/// validation batch at the end.
fn deterministic(iterations: u64) -> Config {
    tiny(
        iterations,
        &[
            "MODEL.TEXTUAL.DROPOUT=0",
            "TRAIN.LOG_EVERY=3",
            "TRAIN.CHECKPOINT_EVERY=2",
            "TRAIN.KEEP_LAST=0",
        ],
    )
}

/// Largest |a - b| / |a| over the pairs.
fn max_relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0.0, f64::max)
}

/// Relative tolerance of a training loss on wgpu against Flex, over a few
/// steps from the same weights on the same batches: both compute in f32
/// and differ only in the order of their sums, which moves a loss by about
/// 1e-6 relative and the weights by less than the learning rate times that;
/// four optimiser steps later the losses still agree to 1e-4 (measured:
/// docs/benchmarks.md, "wgpu on lavapipe"). A wrong kernel moves them by
/// percents.
const LOSS_TOLERANCE: f64 = 1e-4;

/// The parameters of `model`, by path, as f32 values.
fn parameters<B: Backend, M: ModuleSnapshot<B>>(model: &M) -> Vec<(String, Vec<f32>)> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|snapshot| {
            let values = snapshot.to_data().unwrap().to_vec::<f32>().unwrap();
            (snapshot.full_path(), values)
        })
        .collect()
}

/// A run on Flex checkpointed at iteration 2 resumes on wgpu, and its
/// losses follow Flex's own continuation; wgpu's checkpoint at 4 resumes
/// on Flex, and its losses follow wgpu's. A checkpoint loads on either
/// backend with the same weights, bit for bit.
#[test]
fn training_on_wgpu_follows_flex_and_checkpoints_cross_between_them() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Flex, 6 iterations: checkpoints 2, 4, 6.
    let cpu_dir = scratch("cpu");
    let cpu = train(On::Cpu, deterministic(6), &cpu_dir, false).unwrap();
    assert_eq!(cpu.losses.len(), 6);

    // Flex's checkpoint 2 → wgpu, to 6.
    let gpu_dir = scratch("gpu");
    std::fs::copy(checkpoint_path(&cpu_dir, 2), checkpoint_path(&gpu_dir, 2)).unwrap();
    let gpu = train(On::Gpu, deterministic(6), &gpu_dir, true).unwrap();
    assert_eq!(gpu.start_iteration, 2);
    let from_cpu = max_relative(&cpu.losses[2..], &gpu.losses);
    println!(
        "losses 3..6, Flex {:?}, wgpu {:?}: max relative difference {from_cpu:e}",
        &cpu.losses[2..],
        gpu.losses
    );
    assert!(from_cpu < LOSS_TOLERANCE, "{from_cpu:e}");
    assert_ne!(cpu.losses[2..], gpu.losses, "two backends, two sums");
    let val = (cpu.val_loss.unwrap() - gpu.val_loss.unwrap()).abs() / cpu.val_loss.unwrap();
    assert!(val < LOSS_TOLERANCE, "validation loss: {val:e}");

    // wgpu's checkpoint 4 → Flex, to 6.
    let back_dir = scratch("back");
    std::fs::copy(checkpoint_path(&gpu_dir, 4), checkpoint_path(&back_dir, 4)).unwrap();
    let back = train(On::Cpu, deterministic(6), &back_dir, true).unwrap();
    assert_eq!(back.start_iteration, 4);
    let from_gpu = max_relative(&gpu.losses[2..], &back.losses);
    assert!(from_gpu < LOSS_TOLERANCE, "{from_gpu:e}");

    // The checkpoint wgpu wrote, loaded on each backend.
    let written = checkpoint_path(&gpu_dir, 6);
    let on_cpu = ModelCheckpoint::open(&written)
        .unwrap()
        .model::<Cpu>(&Default::default())
        .unwrap()
        .0;
    let on_gpu = ModelCheckpoint::open(&written)
        .unwrap()
        .model::<Gpu>(&adapter())
        .unwrap()
        .0;
    let (cpu_weights, gpu_weights) = (parameters(&on_cpu), parameters(&on_gpu));
    assert!(cpu_weights.len() > 50, "{} tensors", cpu_weights.len());
    assert!(cpu_weights == gpu_weights, "the same weights, bit for bit");
    for dir in [cpu_dir, gpu_dir, back_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

fn read_tensor<B: Backend, const D: usize>(
    reader: &PytorchReader,
    key: &str,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(reader.get(key).unwrap().to_data().unwrap(), device)
}

/// max |a - b| / max |b|
fn relative_error<B: Backend, const D: usize>(actual: Tensor<B, D>, expected: Tensor<B, D>) -> f32 {
    let scale: f32 = expected.clone().abs().max().into_scalar().elem();
    let diff: f32 = (actual - expected).abs().max().into_scalar().elem();
    diff / scale
}

/// ResNet-18's stem and layer1 with torchvision's weights
/// (data/fixtures/resnet18_layer1*.pth): on wgpu, in eval mode (running
/// statistics) and train mode (batch statistics, through autodiff), the
/// output is torchvision's within 1e-4, as Flex's is.
#[test]
fn resnet_features_on_wgpu_equal_torchvision_and_flex() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fixtures = root().join("data/fixtures");
    let weights = TorchvisionWeights::new(fixtures.join("resnet18_layer1.pth")).allow_partial(true);
    let io = PytorchReader::new(fixtures.join("resnet18_layer1_io.pth")).unwrap();
    let device = adapter();
    let input: Tensor<Gpu, 4> = read_tensor(&io, "input", &device);

    let model = weights
        .load(ResNetConfig::new(ResNetArch::Resnet18).init::<Gpu>(&device))
        .unwrap();
    let eval = model.forward_stages(input.clone()).layer1;
    let err = relative_error(eval.clone(), read_tensor(&io, "layer1_eval", &device));
    assert!(err < 1e-4, "eval mode: {err:e}");

    let model = weights
        .load(ResNetConfig::new(ResNetArch::Resnet18).init::<WgpuBackend>(&device))
        .unwrap();
    let train = model
        .forward_stages(Tensor::from_inner(input))
        .layer1
        .inner();
    let err = relative_error(train, read_tensor(&io, "layer1_train", &device));
    assert!(err < 1e-4, "train mode: {err:e}");

    // Flex on the same input and weights.
    let cpu_input: Tensor<Cpu, 4> = read_tensor(&io, "input", &Default::default());
    let cpu_model = weights
        .load(ResNetConfig::new(ResNetArch::Resnet18).init::<Cpu>(&Default::default()))
        .unwrap();
    let cpu_eval = cpu_model.forward_stages(cpu_input).layer1;
    let eval_on_cpu = Tensor::<Cpu, 4>::from_data(eval.into_data(), &Default::default());
    let err = relative_error(eval_on_cpu, cpu_eval);
    println!("layer1 (eval), wgpu against Flex: {err:e}");
    assert!(err < 1e-4, "wgpu against Flex: {err:e}");
}

/// Products with a single row or column equal Flex's on wgpu, through
/// `Precision`: the tied output layer (`x · wordsᵀ + bias`, the matrix
/// stored transposed) for one token per caption, a layer with one output,
/// and attention scores over one grid cell or one past token. burn's own
/// `linear` on the first gives errors of about 2 under fusion (cubek-matmul
/// 0.2's vector-matrix kernels; docs/stack.md, "Vector products on
/// CubeCL"); the guard pads the vector side to two.
#[test]
fn vector_products_on_wgpu_equal_flex() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for batch in [8, 1] {
        for (rows, outputs) in [(1, 3000), (1, 1), (5, 1)] {
            assert_equal_within_1e5(
                &format!("linear, batch {batch}, {rows} rows, {outputs} outputs"),
                linear_case::<Gpu>(&adapter(), batch, rows, outputs),
                linear_case::<Cpu>(&Default::default(), batch, rows, outputs),
            );
        }
        for (queries, keys) in [(1, 9), (1, 1), (5, 1)] {
            assert_equal_within_1e5(
                &format!("query · keysᵀ, batch {batch}, {queries} queries, {keys} keys"),
                scores_case::<Gpu>(&adapter(), batch, queries, keys),
                scores_case::<Cpu>(&Default::default(), batch, queries, keys),
            );
        }
    }
}

/// Asserts `on_gpu` is `on_cpu` within 1e-5 relative, printing the error
/// under `label`.
fn assert_equal_within_1e5<const D: usize>(
    label: &str,
    on_gpu: Tensor<Gpu, D>,
    on_cpu: Tensor<Cpu, D>,
) {
    let on_gpu = Tensor::from_data(on_gpu.into_data(), &Default::default());
    let err = relative_error(on_gpu, on_cpu);
    println!("{label}: {err:e}");
    assert!(err < 1e-5, "{label}: {err:e}");
}

/// Deterministic values in [-0.5, 0.5) of `shape`.
fn values(shape: Vec<usize>, seed: usize) -> TensorData {
    let count = shape.iter().product();
    let values = (0..count)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0) - 0.5)
        .collect();
    TensorData::new(values, shape)
}

/// `x · wordsᵀ + bias` through `Precision`: `x` `[batch, rows, 32]`, words
/// `[outputs, 32]`.
fn linear_case<B: Backend>(
    device: &B::Device,
    batch: usize,
    rows: usize,
    outputs: usize,
) -> Tensor<B, 3> {
    let hidden = 32;
    Precision::F32.linear_weights(
        Tensor::from_data(values(vec![batch, rows, hidden], 1), device),
        Tensor::<B, 2>::from_data(values(vec![outputs, hidden], 2), device).transpose(),
        Some(Tensor::from_data(values(vec![outputs], 3), device)),
    )
}

/// Attention scores `query · keysᵀ` through `Precision`, 2 heads of 16.
fn scores_case<B: Backend>(
    device: &B::Device,
    batch: usize,
    queries: usize,
    keys: usize,
) -> Tensor<B, 4> {
    let query = Tensor::from_data(values(vec![batch, 2, queries, 16], 4), device);
    let keys = Tensor::<B, 4>::from_data(values(vec![batch, 2, keys, 16], 5), device);
    Precision::F32.matmul(query, keys.swap_dims(2, 3))
}

/// Beam search on wgpu gives the reference's captions, token for token
/// (the fixture's closest competing beams differ by 6.6e-4 in
/// log-probability, far above f32's differences between backends): the
/// fixture's 8 images at once, and its first image alone, where every
/// product of the decoding step has a single row (virtex-vision's
/// `Precision` pads those on CubeCL backends; docs/stack.md, "Vector
/// products on CubeCL").
#[test]
fn beam_search_on_wgpu_gives_the_reference_tokens() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (model, features, expected) = beam_fixture::fixture_model::<Gpu>(&adapter());
    let head = model.transformer_head().unwrap();
    for (prefix, reference) in [
        (BeamPrefix::DropSos, &expected.beam_drop_sos),
        (BeamPrefix::KeepSos, &expected.beam_keep_sos),
    ] {
        let tokens = beam_fixture::beam_tokens(head, features.clone(), prefix);
        assert_eq!(&tokens, reference, "{prefix:?}");
    }
    let first_image = features.narrow(0, 0, 1);
    let tokens = beam_fixture::beam_tokens(head, first_image, BeamPrefix::DropSos);
    assert_eq!(tokens, expected.beam_drop_sos[..1], "the first image alone");
}

/// Bad input on wgpu stops the run with the error the CPU gives: a learning
/// rate of 1e4 trips the divergence guard at the same iteration, naming the
/// same last good checkpoint; a checkpoint cut short is refused on resume
/// with the same message.
#[test]
fn bad_input_on_wgpu_gets_the_cpu_errors() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exploding = || {
        tiny(
            6,
            &[
                "OPTIM.LR=1e4",
                "OPTIM.CNN_LR=1e4",
                "TRAIN.CHECKPOINT_EVERY=1",
                "TRAIN.LOG_EVERY=1",
                "TRAIN.VALIDATE_EVERY=0",
            ],
        )
    };
    let diverged = |on: On| {
        let dir = scratch(&format!("diverging-{on:?}"));
        let err = train(on, exploding(), &dir, false).unwrap_err();
        let TrainError::Diverged {
            iteration,
            loss,
            last_good_checkpoint,
            ..
        } = err
        else {
            panic!("{on:?}: not a divergence: {err}");
        };
        let last_good = last_good_checkpoint.map(|p| p.strip_prefix(&dir).unwrap().to_owned());
        std::fs::remove_dir_all(dir).unwrap();
        (iteration, loss > 1e6, last_good)
    };
    assert_eq!(diverged(On::Gpu), diverged(On::Cpu));

    // A checkpoint cut short, resumed on each backend from the same path.
    let whole = scratch("whole");
    train(On::Cpu, tiny(2, &["TRAIN.VALIDATE_EVERY=0"]), &whole, false).unwrap();
    let bytes = std::fs::read(checkpoint_path(&whole, 2)).unwrap();
    std::fs::remove_dir_all(whole).unwrap();
    let refused = |on: On| {
        let dir = scratch("cut-short");
        std::fs::write(checkpoint_path(&dir, 2), &bytes[..bytes.len() / 2]).unwrap();
        let err = train(on, tiny(4, &[]), &dir, true).unwrap_err().to_string();
        std::fs::remove_dir_all(dir).unwrap();
        err
    };
    let on_gpu = refused(On::Gpu);
    assert!(on_gpu.contains("cut short"), "{on_gpu}");
    assert_eq!(on_gpu, refused(On::Cpu));
}
