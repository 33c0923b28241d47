//! The pretraining loop on the bundled emoji dataset, at tiny sizes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn_store::ModuleSnapshot;
use virtex_data::coco::CocoCaptions;
use virtex_train::TrainError;
use virtex_train::checkpoint::{list_checkpoints, read_meta};
use virtex_train::config::Config;
use virtex_train::device::BackendTask;
use virtex_train::device::CpuBackend;
use virtex_train::source::WeightsSource;
use virtex_train::trainer::{Pretraining, PretrainingSummary, SHEET_IMAGES, sheet_sample};
use virtex_vision::{Precision, ResNetArch};

mod common;

use common::{root, tiny};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-pretrain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// burn's CPU backend keeps one random generator per process, so two runs in
/// parallel test threads would draw each other's dropout masks; the runs of
/// this file take turns.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(config: Config, output: &Path, resume: bool) -> Result<PretrainingSummary, TrainError> {
    run_in(Precision::F32, config, output, resume)
}

fn run_in(
    precision: Precision,
    config: Config,
    output: &Path,
    resume: bool,
) -> Result<PretrainingSummary, TrainError> {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Pretraining {
        config,
        output: output.to_path_buf(),
        resume,
        init_from: None,
        world: None,
        precision,
    }
    .run::<CpuBackend>(Default::default())
}

/// `AMP: true`'s mixed precision (bf16 convolutions and products, the rest
/// f32) trains as f32 does: same seed, losses within 2% every iteration,
/// yet computed differently; the checkpoint's weights stay f32.
#[test]
fn mixed_precision_follows_the_f32_loss_curve() {
    let losses = |precision: Precision| {
        let output = scratch(&format!("precision-{precision:?}"));
        let config = tiny(6, &["TRAIN.VALIDATE_EVERY=0", "TRAIN.CHECKPOINT_EVERY=6"]);
        let summary = run_in(precision, config, &output, false).unwrap();
        let checkpoint = std::fs::read(output.join("checkpoint_6.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&checkpoint).unwrap();
        for (name, view) in tensors.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        }
        std::fs::remove_dir_all(output).unwrap();
        summary.losses
    };
    let f32_losses = losses(Precision::F32);
    let bf16_losses = losses(Precision::Bf16);
    assert_eq!(bf16_losses.len(), 6);
    assert_ne!(f32_losses, bf16_losses, "bf16 products change the low bits");
    for (i, (a, b)) in f32_losses.iter().zip(&bf16_losses).enumerate() {
        assert!(
            (a - b).abs() / a < 0.02,
            "iteration {}: f32 {a}, bf16 {b}",
            i + 1
        );
    }
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_losses() {
    let output = scratch("resume");
    let full = run(tiny(4, &[]), &output, false).unwrap();
    assert_eq!(full.losses.len(), 4);
    // The validation captions the sheet's images: a seeded shuffle of the
    // split, every one of them on the sheet with its references.
    let val = CocoCaptions::load(&root().join("data/emoji"), "val").unwrap();
    let sample: Vec<u64> = sheet_sample(val.images.len(), tiny(4, &[]).random_seed)
        .iter()
        .map(|&p| val.images[p].id)
        .collect();
    let captioned: Vec<u64> = full.captions.iter().map(|c| c.image_id).collect();
    assert_eq!(captioned, sample);
    assert_eq!(captioned.len(), SHEET_IMAGES);
    assert!(full.captions.iter().all(|c| !c.references.is_empty()));
    let sheet = std::fs::read_to_string(full.contact_sheet.as_ref().unwrap()).unwrap();
    assert_eq!(sheet.matches("<img ").count(), SHEET_IMAGES);
    let checkpoints: Vec<u64> = list_checkpoints(&output).iter().map(|(i, _)| *i).collect();
    assert_eq!(checkpoints, [2, 4]);
    assert_eq!(
        read_meta(&output.join("checkpoint_2.safetensors"))
            .unwrap()
            .iteration,
        2
    );
    assert!(output.join("metrics.jsonl").exists());

    // Without --resume, a directory holding checkpoints is not overwritten.
    let refused = run(tiny(4, &[]), &output, false).unwrap_err().to_string();
    assert!(refused.contains("--resume"), "{refused}");

    // "Kill" after iteration 2: drop the later checkpoint, then resume.
    std::fs::remove_file(output.join("checkpoint_4.safetensors")).unwrap();
    let resumed = run(tiny(4, &[]), &output, true).unwrap();
    assert_eq!(resumed.start_iteration, 2);
    assert_eq!(
        resumed.losses,
        full.losses[2..],
        "bit-identical losses after resuming"
    );
    let lines = std::fs::read_to_string(output.join("metrics.jsonl")).unwrap();
    let train_lines = lines
        .lines()
        .filter(|l| l.contains("\"grad_norm\""))
        .count();
    assert_eq!(train_lines, 4, "the log holds each iteration once");
    std::fs::remove_dir_all(output).unwrap();

    // --resume where nothing was written yet (a requeued job's first start)
    // is a fresh run.
    let output = scratch("resume-fresh");
    let fresh = run(tiny(4, &[]), &output, true).unwrap();
    assert_eq!((fresh.start_iteration, fresh.losses.len()), (0, 4));
    assert_eq!(list_checkpoints(&output).len(), 2);
    std::fs::remove_dir_all(output).unwrap();
}

/// Every iteration's record says how long the step waited for its batch
/// (`data_wait_s`): part of the step's time, never all of it (with
/// `LOG_EVERY: 1` each record's `images_per_s` is over its own step, wait
/// and computation together), and not nothing over the run (the first
/// batch, at least, is made while the loop waits for it). That a batch held
/// back shows as a wait at least that long is the unit test
/// `the_wait_for_a_batch_covers_the_time_it_was_held_back`.
#[test]
fn each_iteration_records_its_wait_for_data() {
    let output = scratch("data-wait");
    let config = tiny(3, &["TRAIN.LOG_EVERY=1"]);
    let batch = config.optim.batch_size as f64;
    run(config, &output, false).unwrap();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|record: &serde_json::Value| record.get("grad_norm").is_some())
        .collect();
    assert_eq!(records.len(), 3);
    let mut waits = 0.0;
    for record in &records {
        let wait = record["data_wait_s"].as_f64().expect("data_wait_s");
        let step = batch / record["images_per_s"].as_f64().unwrap();
        assert!(
            (0.0..step).contains(&wait),
            "{wait} s waiting in a {step} s step: {record}"
        );
        waits += wait;
    }
    assert!(waits > 0.0, "no wait measured: {records:?}");
    std::fs::remove_dir_all(output).unwrap();
}

/// The loop reads the device's losses once per log line (and before a
/// validation or checkpoint), not every step: the records are the same,
/// one per iteration and in order, however rarely it reads.
#[test]
fn reading_losses_once_per_log_line_keeps_every_iteration() {
    let losses = |log_every: &str| {
        let output = scratch(&format!("log-every-{log_every}"));
        let config = tiny(
            5,
            &[
                &format!("TRAIN.LOG_EVERY={log_every}"),
                "TRAIN.CHECKPOINT_EVERY=100",
                "TRAIN.VALIDATE_EVERY=100",
            ],
        );
        let summary = run(config, &output, false).unwrap();
        // f32 values: serde_json's float parsing is not exact to the last bit.
        let records: Vec<(u64, f32)> = std::fs::read_to_string(output.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|record| record.get("grad_norm").is_some())
            .map(|record| {
                (
                    record["iteration"].as_u64().unwrap(),
                    record["loss"].as_f64().unwrap() as f32,
                )
            })
            .collect();
        std::fs::remove_dir_all(output).unwrap();
        let summary_losses: Vec<f32> = summary.losses.iter().map(|&l| l as f32).collect();
        assert_eq!(
            summary_losses,
            records.iter().map(|r| r.1).collect::<Vec<_>>()
        );
        records
    };
    let every_step = losses("1");
    assert_eq!(
        every_step.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(losses("3"), every_step);
}

/// One seed, one result: two runs write the same checkpoint, tensor for
/// tensor, BatchNorm's running statistics included (burn keeps those per
/// thread, so the step must run on the same thread every iteration).
#[test]
fn two_runs_with_one_seed_write_the_same_checkpoint() {
    let outputs = [scratch("repeat-a"), scratch("repeat-b")];
    for output in &outputs {
        run(tiny(4, &[]), output, false).unwrap();
    }
    let files: Vec<Vec<u8>> = outputs
        .iter()
        .map(|dir| std::fs::read(dir.join("checkpoint_4.safetensors")).unwrap())
        .collect();
    let [a, b] = [&files[0], &files[1]].map(|f| safetensors::SafeTensors::deserialize(f).unwrap());
    let mut names = a.names();
    names.sort();
    assert_eq!(names, {
        let mut n = b.names();
        n.sort();
        n
    });
    assert!(
        names.iter().any(|n| n.ends_with("running_var")),
        "the checkpoint holds BatchNorm statistics"
    );
    for name in names {
        assert!(
            a.tensor(name).unwrap().data() == b.tensor(name).unwrap().data(),
            "{name} differs between two runs with one seed"
        );
    }
    for output in outputs {
        std::fs::remove_dir_all(output).unwrap();
    }
}

/// Training from WebDataset shards of the bundled val split: the checkpoint
/// records the stream's position, and a resumed run repeats the losses.
#[test]
fn a_run_from_shards_resumes_where_the_stream_stopped() {
    use virtex_data::coco::CocoCaptions;
    use virtex_data::shards::{StreamPosition, write_shards};

    let output = scratch("shards");
    let val = CocoCaptions::load(&root().join("data/emoji"), "val").unwrap();
    let written = write_shards(&val, &output.join("shards"), "val", 100, 0).unwrap();
    let shards = format!("DATA.SHARDS={}", written.pattern);
    let config = || tiny(4, &[shards.as_str(), "DATA.SHUFFLE_BUFFER=50"]);
    let runs = output.join("run");
    let full = run(config(), &runs, false).unwrap();
    let meta = read_meta(&runs.join("checkpoint_2.safetensors")).unwrap();
    assert_eq!(
        meta.data_positions,
        [StreamPosition {
            epoch: 0,
            offset: 8
        }],
        "two batches of 4"
    );
    std::fs::remove_file(runs.join("checkpoint_4.safetensors")).unwrap();
    let resumed = run(config(), &runs, true).unwrap();
    assert_eq!(resumed.losses, full.losses[2..]);

    let missing = tiny(2, &["DATA.SHARDS=/nonexistent/val-{000..003}.tar"]);
    let err = run(missing, &output.join("missing"), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("DATA.SHARDS /nonexistent/val-{000..003}.tar")
            && err.contains("/nonexistent/val-000.tar does not exist"),
        "{err}"
    );
    std::fs::remove_dir_all(output).unwrap();
}

#[test]
fn every_task_trains_on_the_bundled_data() {
    for (task, extra) in [
        ("captioning", vec![]),
        ("masked_lm", vec![]),
        ("token_classification", vec!["MODEL.TEXTUAL.NAME=none"]),
        (
            "multilabel_classification",
            vec!["MODEL.TEXTUAL.NAME=none", "DATA.VOCAB_SIZE=100"],
        ),
    ] {
        let output = scratch(task);
        let name = format!("MODEL.NAME={task}");
        let mut sets = vec![name.as_str()];
        sets.extend(extra);
        let summary =
            run(tiny(2, &sets), &output, false).unwrap_or_else(|e| panic!("{task}: {e:#}"));
        assert_eq!(summary.losses.len(), 2, "{task}");
        assert!(summary.losses.iter().all(|l| l.is_finite()), "{task}");
        assert!(summary.val_loss.is_some_and(f64::is_finite), "{task}");
        std::fs::remove_dir_all(output).unwrap();
    }
}

/// `MODEL.VISUAL.FROZEN` captioning from a pretrained checkpoint
/// (`--init-from`): what fits is loaded and the rest named, the backbone
/// does not move (weights nor BatchNorm statistics), and the new decoder
/// learns.
#[test]
fn a_frozen_backbone_captioner_trains_from_a_pretrained_checkpoint() {
    let pretrained = scratch("init-source");
    run(tiny(4, &[]), &pretrained, false).unwrap();
    let source = WeightsSource::Native(pretrained.join("checkpoint_4.safetensors"));

    // A forward captioner with a 2-layer decoder (the source has 1 layer
    // and a backward decoder) over the source's frozen backbone.
    let output = scratch("init-frozen");
    let config = tiny(
        12,
        &[
            "MODEL.NAME=captioning",
            "MODEL.TEXTUAL.NAME=transdec_postnorm::L2_H32_A2_F64",
            "MODEL.VISUAL.FROZEN=true",
        ],
    );
    let summary = {
        let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        Pretraining {
            config,
            output: output.clone(),
            resume: false,
            init_from: Some(source.clone()),
            world: None,
            precision: Precision::F32,
        }
        .run::<CpuBackend>(Default::default())
        .unwrap()
    };
    let init = summary.init.expect("an init report");
    assert!(init.loaded > 100, "{init:?}");
    assert!(
        init.left_out
            .iter()
            .all(|t| t.contains("transformer.layers.1.") && t.ends_with("(not in the source)")),
        "only the new layer starts fresh: {:?}",
        init.left_out
    );
    assert!(!init.left_out.is_empty());
    assert!(
        init.unused.iter().any(|t| t.contains("backward_textual")),
        "{:?}",
        init.unused
    );

    let backbone = |source: &WeightsSource| {
        // Building the backbone draws its fresh weights from the backend's
        // one generator: not while another test's run is using it.
        let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let resnet = source
            .backbone::<burn_flex::Flex>(ResNetArch::Resnet18, &Default::default())
            .unwrap();
        resnet
            .collect(None, None, false)
            .into_iter()
            .map(|t| (t.full_path(), t.to_data().unwrap().to_vec::<f32>().unwrap()))
            .collect::<Vec<_>>()
    };
    let trained = WeightsSource::Native(summary.checkpoint.clone().unwrap());
    assert_eq!(
        backbone(&trained),
        backbone(&source),
        "a frozen backbone keeps its weights and BatchNorm statistics"
    );

    let validation: Vec<f64> = std::fs::read_to_string(output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            serde_json::from_str::<serde_json::Value>(line).ok()?["val_loss"].as_f64()
        })
        .collect();
    assert_eq!(validation.len(), 6, "{validation:?}");
    assert!(
        validation[5] < validation[0],
        "the decoder learns over the frozen backbone: {validation:?}"
    );
    std::fs::remove_dir_all(pretrained).unwrap();
    std::fs::remove_dir_all(output).unwrap();
}
