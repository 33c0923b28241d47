//! A run that goes wrong, on the bundled emoji dataset at tiny sizes: a loss
//! that diverges (the divergence guard, `TRAIN.DIVERGENCE_*`), a checkpoint
//! that cannot be written.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use virtex_train::TrainError;
use virtex_train::checkpoint::{ModelCheckpoint, list_checkpoints, read_meta};
use virtex_train::config::Config;
use virtex_train::device::{BackendTask, CpuBackend};
use virtex_train::trainer::{Pretraining, PretrainingSummary};
use virtex_vision::Precision;

mod common;

use common::tiny;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-diverge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// burn's CPU backend keeps one random generator per process: the runs of
/// this file take turns.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(config: Config, output: &Path) -> Result<PretrainingSummary, TrainError> {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Pretraining {
        config,
        output: output.to_path_buf(),
        resume: false,
        init_from: None,
        world: None,
        precision: Precision::F32,
    }
    .run::<CpuBackend>(Default::default())
}

fn iterations(output: &Path) -> Vec<u64> {
    list_checkpoints(output).iter().map(|(i, _)| *i).collect()
}

/// A checkpoint after every iteration, of which `TRAIN.KEEP_LAST` keeps one;
/// no validation.
const EVERY_ITERATION_KEEP_1: [&str; 3] = [
    "TRAIN.CHECKPOINT_EVERY=1",
    "TRAIN.KEEP_LAST=1",
    "TRAIN.VALIDATE_EVERY=0",
];

/// `OPTIM.LR` 3 (1500 × the config's) reached over a warm-up of 20
/// iterations: the loss is lowest at iteration 3 and climbs from there,
/// faster as the rate rises (13.8, 13.5, 15.3, 27.6, 24.2, 21.9, 36.2, …,
/// seed 0), so that the mean of the guard's window (the default: 50
/// iterations, growing from the first) passes 2 × its lowest some
/// iterations later (11 or 12 for seeds 0 to 3). The checkpoints written on
/// the way up are not good: the error names the one of the lowest window's
/// last iteration, and KEEP_LAST 1 kept it beside the newest.
#[test]
fn a_diverging_run_stops_and_its_last_good_checkpoint_survives_pruning() {
    let output = scratch("climb");
    let mut sets = vec!["OPTIM.LR=3", "OPTIM.CNN_LR=3", "OPTIM.WARMUP_STEPS=20"];
    sets.extend(EVERY_ITERATION_KEEP_1);
    let err = match run(tiny(24, &sets), &output) {
        Ok(summary) => panic!("no trip; the losses: {:?}", summary.losses),
        Err(err) => err,
    };
    let message = err.to_string();
    let TrainError::Diverged {
        iteration,
        window,
        best,
        last_good_checkpoint,
        ..
    } = err
    else {
        panic!("not a divergence: {message}");
    };
    assert_eq!(window.end, iteration);
    assert!(window.mean > 2.0 * best.mean, "{message}");
    assert!(
        iteration > best.end + 1,
        "checkpoints were written between the lowest window and the trip: {message}"
    );
    let good = output.join(format!("checkpoint_{}.safetensors", best.end));
    assert_eq!(last_good_checkpoint.as_deref(), Some(good.as_path()));
    assert!(
        message.starts_with(&format!(
            "iteration {iteration}: the training loss diverged"
        )) && message.ends_with(&format!(
            "stopping (the last good checkpoint is {})",
            good.display()
        )),
        "{message}"
    );
    // The run stopped before the checkpoint of its last iteration.
    assert_eq!(iterations(&output), [best.end, iteration - 1]);
    let meta = read_meta(&good).unwrap();
    assert_eq!(meta.iteration, best.end);
    let kept = meta.divergence_guard.expect("the guard's state");
    let kept_best = kept.best.expect("the lowest window");
    assert_eq!(
        (kept.good, kept_best.end, kept_best.len),
        (Some(best.end), best.end, best.len)
    );
    // JSON's floats come back to within a unit of the last place.
    assert!((kept_best.mean - best.mean).abs() < 1e-12 * best.mean);
    std::fs::remove_dir_all(output).unwrap();
}

/// A run of the config's own learning rate does not trip the guard: its
/// first window of one iteration, and every longer one, stay near the
/// lowest.
#[test]
fn a_healthy_run_does_not_trip_the_guard() {
    let output = scratch("healthy");
    let summary = run(tiny(24, &EVERY_ITERATION_KEEP_1), &output).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.losses.len(), 24);
    let kept = iterations(&output);
    assert_eq!(kept.last(), Some(&24));
    assert!(kept.len() <= 2, "the newest, and the good one: {kept:?}");
    std::fs::remove_dir_all(output).unwrap();
}

/// `OPTIM.LR` 1e4 (as `pretrain --set OPTIM.LR=1e4` on the bundled config)
/// explodes the loss at iteration 3, from 13.8 to 2.8e9; the guard's
/// defaults (a window of 50, growing from the first iteration; a factor of
/// 2) stop the run there, naming checkpoint 2.
#[test]
fn a_learning_rate_of_1e4_stops_at_its_first_exploded_loss() {
    let output = scratch("1e4");
    let mut sets = vec!["OPTIM.LR=1e4", "OPTIM.CNN_LR=1e4"];
    sets.extend(EVERY_ITERATION_KEEP_1);
    let err = run(tiny(8, &sets), &output).unwrap_err();
    let good = output.join("checkpoint_2.safetensors");
    let TrainError::Diverged {
        iteration,
        loss,
        last_good_checkpoint,
        ..
    } = &err
    else {
        panic!("not a divergence: {err}");
    };
    assert_eq!(*iteration, 3, "{err}");
    assert!(*loss > 1e6, "{err}");
    assert_eq!(last_good_checkpoint.as_deref(), Some(good.as_path()));
    assert_eq!(iterations(&output), [2]);
    assert_eq!(read_meta(&good).unwrap().iteration, 2);
    std::fs::remove_dir_all(output).unwrap();
}

/// A checkpoint whose file cannot be written (here: a directory where its
/// file goes, which the rename cannot replace, root or not) stops the run,
/// naming the path and the cause; the previous checkpoint loads as before,
/// and no temporary file is left.
#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_and_the_previous_survives() {
    let output = scratch("unwritable");
    let blocked = output.join("checkpoint_2.safetensors");
    std::fs::create_dir_all(&blocked).unwrap();
    let config = tiny(4, &EVERY_ITERATION_KEEP_1);
    let err = run(config, &output).unwrap_err();
    let previous = output.join("checkpoint_1.safetensors");
    let message = err.to_string();
    let TrainError::CheckpointWrite {
        path,
        source,
        previous: named,
    } = err
    else {
        panic!("not a failed checkpoint write: {message}");
    };
    assert_eq!(path, blocked);
    assert_eq!(named.as_deref(), Some(previous.as_path()));
    assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory, "{message}");
    assert_eq!(
        message,
        format!(
            "writing the checkpoint {}: {source}; stopping (the previous checkpoint {} is \
             intact)",
            blocked.display(),
            previous.display()
        )
    );
    let checkpoint = ModelCheckpoint::open(&previous).unwrap();
    assert_eq!(checkpoint.meta.iteration, 1);
    let (_model, meta) = {
        // Building the model draws its fresh weights from the backend's one
        // generator: not while another test's run is using it.
        let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        checkpoint
            .model::<burn::backend::Flex>(&Default::default())
            .unwrap()
    };
    assert_eq!(meta.iteration, 1);
    assert_eq!(iterations(&output), [1], "the directory is no checkpoint");
    assert!(!output.join("checkpoint_2.tmp-write").exists());
    std::fs::remove_dir_all(output).unwrap();
}
