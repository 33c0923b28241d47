//! The fault matrix (issue 39): each way a run, its ranks, its data or the
//! weights files it reads can go wrong, on the tiny config (the bundled
//! emoji dataset at 32 px, batch 4, a one-layer head: seconds a run), each
//! test stating the case and what survives it. docs/reproduction.md ("When
//! a run goes wrong") lists what each prints and what to do next, naming
//! these tests.
//!
//! Runs in this process take turns ([`ONE_RUN_AT_A_TIME`]); a run that is
//! killed, or whose ranks die or hang, is a child process of this test
//! binary playing a `*_child` scenario (an ignored test, started as
//! `children` describes). The tests wait on events (a file appearing, as
//! the kernel reports it; a child's exit), never on a sleep.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn_flex::Flex;
use virtex_data::batch::LoaderError;
use virtex_data::coco::CocoCaptions;
use virtex_data::images::ImageError;
use virtex_data::loader::PretrainingLoader;
use virtex_data::pipeline::{Preprocessing, SamplePipeline};
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_train::TrainError;
use virtex_train::checkpoint::{CheckpointMeta, ModelCheckpoint, list_checkpoints, read_meta};
use virtex_train::config::Config;
use virtex_train::device::{BackendTask, CpuBackend};
use virtex_train::source::{PthLayout, SourceError, WeightsSource};
use virtex_train::trainer::{Pretraining, PretrainingSummary};
use virtex_vision::pytorch::torch_save::{PickleValue, TorchTensor, save};
use virtex_vision::{Precision, ResNetArch};

mod children;
mod common;

use children::{PATIENT, free_port, is_child, reports, scenario_command, spawn_rank, spec};
use common::{root, tiny};

// ---------------------------------------------------------------------------
// What the cases share.

/// A fresh directory for `name`, removed first if a failed run left it.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("virtex-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// burn's CPU backend keeps one random generator per process: the runs of
/// this file take turns.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A fresh single-process run of `config` into `output`.
fn pretraining(config: Config, output: &Path) -> Pretraining {
    Pretraining {
        config,
        output: output.to_path_buf(),
        resume: false,
        init_from: None,
        world: None,
        precision: Precision::F32,
    }
}

/// Runs `pretraining` on the CPU, in its turn.
fn run(pretraining: Pretraining) -> Result<PretrainingSummary, TrainError> {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    pretraining.run::<CpuBackend>(Default::default())
}

/// `pretrain --resume` of `config` into `output`.
fn resume(config: Config, output: &Path) -> Result<PretrainingSummary, TrainError> {
    run(Pretraining {
        resume: true,
        ..pretraining(config, output)
    })
}

/// The iterations of the checkpoints in `output`, oldest first.
fn iterations(output: &Path) -> Vec<u64> {
    list_checkpoints(output).iter().map(|(i, _)| *i).collect()
}

/// The iterations `metrics.jsonl` in `output` holds a training record of,
/// in order.
fn logged_iterations(output: &Path) -> Vec<u64> {
    std::fs::read_to_string(output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record.get("grad_norm").is_some())
        .map(|record| record["iteration"].as_u64().unwrap())
        .collect()
}

/// The files in `dir`, by name, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Panics unless `path` is a whole checkpoint of `iteration`: its header,
/// its metadata, and every tensor's bytes where the header puts them, the
/// file ending with the last.
fn assert_whole(path: &Path, iteration: u64) {
    let bytes = std::fs::read(path).unwrap();
    if let Err(err) = safetensors::SafeTensors::deserialize(&bytes) {
        panic!("{} is not whole: {err}", path.display());
    }
    assert_eq!(read_meta(path).unwrap().iteration, iteration);
}

/// Panics unless checkpoints `a` and `b` hold the same tensors, bit for bit.
fn assert_same_tensors(a: &Path, b: &Path) {
    let [a, b] = [a, b].map(|path| std::fs::read(path).unwrap());
    let [a, b] = [&a, &b].map(|bytes| safetensors::SafeTensors::deserialize(bytes).unwrap());
    let mut names = a.names();
    names.sort();
    let mut other = b.names();
    other.sort();
    assert_eq!(names, other);
    for name in names {
        assert!(
            a.tensor(name).unwrap().data() == b.tensor(name).unwrap().data(),
            "{name} differs"
        );
    }
}

/// An error message a person reads at a glance: one line, naming `path`.
fn assert_names_in_one_line(message: &str, path: &Path) {
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

/// How long a test waits for a child's event before it calls the child
/// stuck: far longer than any takes.
const LONG: Duration = Duration::from_secs(180);

/// Files appearing in a directory, as the kernel reports them (inotify):
/// created there, or renamed into it. Waiting on one is waiting on that
/// event, however late this process gets to run, never on a guess at how
/// long something takes.
struct Appearing {
    inotify: rustix::fd::OwnedFd,
}

impl Appearing {
    /// Watches `dir` from now on.
    fn watch(dir: &Path) -> Self {
        use rustix::fs::inotify;
        let flags = inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK;
        let inotify = inotify::init(flags).unwrap();
        let events = inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO;
        inotify::add_watch(&inotify, dir, events).unwrap();
        Self { inotify }
    }

    /// Returns as soon as a file named `name` has appeared since
    /// [`Appearing::watch`] (once: the events read are used up). One of
    /// `children` ending first, or no such event within [`LONG`], is a
    /// panic that shows what the child said.
    fn wait_for(&self, name: &str, children: &mut [Child]) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        use rustix::fs::inotify;
        use rustix::io::Errno;
        let deadline = Instant::now() + LONG;
        let mut buffer = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            let mut events = inotify::Reader::new(&self.inotify, &mut buffer);
            loop {
                match events.next() {
                    Ok(event) => {
                        if event
                            .file_name()
                            .is_some_and(|file| file.to_bytes() == name.as_bytes())
                        {
                            return;
                        }
                    }
                    Err(Errno::AGAIN) => break,
                    Err(err) => panic!("reading inotify events: {err}"),
                }
            }
            for child in children.iter_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "a child ended ({status}) before {name} appeared: {}",
                        said(child)
                    );
                }
            }
            assert!(Instant::now() < deadline, "no {name} within {LONG:?}");
            // Wakes at the next event, or to look at the children again.
            let mut ready = [PollFd::new(&self.inotify, PollFlags::IN)];
            let tick = Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            match poll(&mut ready, Some(&tick)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(err) => panic!("polling inotify: {err}"),
            }
        }
    }
}

/// What an ended child wrote on stdout and stderr (piped).
fn said(child: &mut Child) -> String {
    let mut text = String::new();
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

// ---------------------------------------------------------------------------
// kill -9 during a checkpoint write, then `--resume`.

/// The run that is killed: 4 iterations, a checkpoint after each (about
/// 134 MB: ResNet-18's weights and Adam's two moments), all kept, no
/// validation.
const KILLED_RUN: [&str; 3] = [
    "TRAIN.CHECKPOINT_EVERY=1",
    "TRAIN.KEEP_LAST=0",
    "TRAIN.VALIDATE_EVERY=0",
];

/// The run [`kill_9_during_a_checkpoint_write_then_resume_repeats_the_uninterrupted_run`]
/// kills, into `VIRTEX_TEST_OUTPUT`.
#[test]
#[ignore = "a child's part: the tests start it in a child process"]
fn checkpointing_child() {
    if !is_child("checkpointing_child") {
        return;
    }
    let output = PathBuf::from(std::env::var("VIRTEX_TEST_OUTPUT").unwrap());
    let summary = run(pretraining(tiny(4, &KILLED_RUN), &output)).unwrap();
    println!("LOSSES {:?}", summary.losses);
}

/// kill -9 while a checkpoint is being written, then `--resume`. A child
/// process trains [`KILLED_RUN`] and is killed (SIGKILL) the moment
/// `checkpoint_3.tmp-write` appears, the temporary file the third
/// checkpoint is written to before its rename: so during that write, or,
/// where the kernel's word reaches this process late, just after it, when
/// checkpoint 3 is whole and all that follows holds from there. What
/// survives: every file bearing a checkpoint's name is whole (1 and 2, and
/// 3 if its write had ended), the half-written temporary file is nobody's
/// checkpoint; `--resume` continues from the newest whole checkpoint,
/// repeats the uninterrupted run's losses to the bit, writes its
/// checkpoints over the stray file (none is left) and ends with the
/// uninterrupted run's weights; `metrics.jsonl` holds each iteration once.
#[test]
fn kill_9_during_a_checkpoint_write_then_resume_repeats_the_uninterrupted_run() {
    let dir = scratch("kill-9");
    let uninterrupted = dir.join("uninterrupted");
    let full = run(pretraining(tiny(4, &KILLED_RUN), &uninterrupted)).unwrap();

    let output = dir.join("killed");
    std::fs::create_dir_all(&output).unwrap();
    let appearing = Appearing::watch(&output);
    let mut child = scenario_command("checkpointing_child")
        .env("VIRTEX_TEST_OUTPUT", &output)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    appearing.wait_for("checkpoint_3.tmp-write", std::slice::from_mut(&mut child));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed: {}", said(&mut child));

    let stray = output.join("checkpoint_3.tmp-write");
    let newest = *iterations(&output).last().expect("checkpoints 1 and 2");
    if stray.exists() {
        eprintln!("killed while checkpoint 3 was being written");
        assert_eq!(newest, 2);
    } else {
        eprintln!("killed after checkpoint 3 was written, at or before {newest}'s");
        assert!(newest >= 3);
    }
    assert_eq!(iterations(&output), (1..=newest).collect::<Vec<_>>());
    for (iteration, path) in list_checkpoints(&output) {
        assert_whole(&path, iteration);
    }

    let resumed = resume(tiny(4, &KILLED_RUN), &output).unwrap();
    assert_eq!(resumed.start_iteration, newest);
    assert_eq!(
        resumed.losses,
        full.losses[newest as usize..],
        "the uninterrupted run's losses, to the bit"
    );
    assert_eq!(iterations(&output), [1, 2, 3, 4]);
    assert!(
        !files(&output).iter().any(|f| f.ends_with(".tmp-write")),
        "{:?}",
        files(&output)
    );
    assert_same_tensors(
        &uninterrupted.join("checkpoint_4.safetensors"),
        &output.join("checkpoint_4.safetensors"),
    );
    assert_eq!(logged_iterations(&output), [1, 2, 3, 4]);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// A rank that dies, a rank that hangs.

/// A rank of a data-parallel tiny run of 200 iterations of 6 images (for
/// 2 or 3 ranks to share) into `VIRTEX_TEST_OUTPUT` (a checkpoint every 2,
/// all kept, no validation),
/// waiting `VIRTEX_TEST_TIMEOUT` seconds for the others if set, else
/// [`PATIENT`]ly. Says `ERROR <why>` if the run stops, `LOSSES …` if it
/// ends.
#[test]
#[ignore = "a rank's part: the tests start it in a child process"]
fn rank_child() {
    if !is_child("rank_child") {
        return;
    }
    let timeout = std::env::var("VIRTEX_TEST_TIMEOUT")
        .map_or(PATIENT, |s| Duration::from_secs(s.parse().unwrap()));
    let config = tiny(
        200,
        &[
            "OPTIM.BATCH_SIZE=6",
            "TRAIN.CHECKPOINT_EVERY=2",
            "TRAIN.KEEP_LAST=0",
            "TRAIN.VALIDATE_EVERY=0",
        ],
    );
    let output = PathBuf::from(std::env::var("VIRTEX_TEST_OUTPUT").unwrap());
    let result = Pretraining {
        world: Some(spec(timeout)),
        ..pretraining(config, &output)
    }
    .run::<CpuBackend>(Default::default());
    match result {
        Ok(summary) => println!("LOSSES {:?}", summary.losses),
        Err(err) => println!("ERROR {err}"),
    }
}

/// Starts `world` ranks of [`rank_child`] into `output`, rank `r` with
/// `extra[r]` set; returns them once rank 0 has written checkpoint 2.
fn ranks_past_checkpoint_2(
    world: usize,
    output: &Path,
    extra: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Vec<Child> {
    std::fs::create_dir_all(output).unwrap();
    let appearing = Appearing::watch(output);
    let port = free_port();
    let mut ranks: Vec<Child> = (0..world)
        .map(|rank| {
            let mut env = vec![("VIRTEX_TEST_OUTPUT", output.display().to_string())];
            env.extend(extra(rank));
            spawn_rank("rank_child", rank, world, port, &env)
        })
        .collect();
    appearing.wait_for("checkpoint_2.safetensors", &mut ranks);
    ranks
}

/// Every checkpoint in `output` is whole, and there is one at least.
fn assert_checkpoints_whole(output: &Path) {
    let checkpoints = list_checkpoints(output);
    assert!(!checkpoints.is_empty());
    for (iteration, path) in checkpoints {
        assert_whole(&path, iteration);
    }
    assert!(
        !files(output).iter().any(|f| f.ends_with(".tmp-write")),
        "{:?}",
        files(output)
    );
}

/// A rank that dies mid-run: of 3 ranks training, rank 2 is killed
/// (SIGKILL) once rank 0 has written checkpoint 2. Rank 0 stops at its next
/// exchange with it, naming it and how it went ("closed its connection (the
/// process ended)"), and tells rank 1, which stops naming rank 0's reason;
/// no rank trains on or waits for its timeout. What survives: rank 0's
/// checkpoints, every one whole, from which `--resume` with the same ranks
/// continues (as `kill_9_during_a_checkpoint_write_then_resume_repeats_the_uninterrupted_run`
/// shows of a single process, and `two_ranks_resume_their_shard_streams`
/// of ranks).
#[test]
fn a_rank_that_dies_mid_run_stops_every_rank_naming_it() {
    let dir = scratch("rank-dies");
    let output = dir.join("run");
    let mut ranks = ranks_past_checkpoint_2(3, &output, |_| Vec::new());
    ranks[2].kill().unwrap();
    let said: Vec<(String, Option<i32>)> = ranks
        .into_iter()
        .map(|rank| {
            let output = rank.wait_with_output().unwrap();
            let status = output.status.signal();
            (reports(&output, "ERROR ").join("\n"), status)
        })
        .collect();
    for (rank, (message, _)) in said.iter().enumerate() {
        eprintln!("rank {rank}: {message}");
    }
    let lost = &said[0].0;
    assert!(
        lost.starts_with("rank 2 was lost during ")
            && lost.ends_with(": closed its connection (the process ended)"),
        "rank 0: {lost}"
    );
    assert_eq!(said[1].0, format!("rank 0 stopped the run: {lost}"));
    assert_eq!(said[2].1, Some(9));
    assert_checkpoints_whole(&output);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A rank that hangs mid-run: of 2 ranks training, rank 1 is stopped
/// (SIGSTOP: alive, its connections open, silent) once rank 0 has written
/// checkpoint 2. Rank 0, waiting 5 s for the others (`--dist-timeout`),
/// stops after 5 s of silence naming it, instead of hanging; rank 1, let go
/// again (SIGCONT), stops on rank 0's word rather than training on. What
/// survives: rank 0's checkpoints, every one whole.
#[test]
fn a_rank_that_hangs_mid_run_times_out_naming_it() {
    let dir = scratch("rank-hangs");
    let output = dir.join("run");
    let ranks = ranks_past_checkpoint_2(2, &output, |rank| match rank {
        0 => vec![("VIRTEX_TEST_TIMEOUT", "5".to_string())],
        _ => Vec::new(),
    });
    let hung = rustix::process::Pid::from_child(&ranks[1]);
    rustix::process::kill_process(hung, rustix::process::Signal::STOP).unwrap();
    let started = Instant::now();
    let mut ranks = ranks.into_iter();
    let rank_0 = ranks.next().unwrap().wait_with_output().unwrap();
    let waited = started.elapsed();
    eprintln!("rank 0 stopped {waited:?} after rank 1 was stopped");
    rustix::process::kill_process(hung, rustix::process::Signal::CONT).unwrap();
    let rank_1 = ranks.next().unwrap().wait_with_output().unwrap();

    let lost = reports(&rank_0, "ERROR ").join("\n");
    eprintln!("rank 0: {lost}");
    assert!(
        lost.starts_with("rank 1 was lost during ") && lost.ends_with(": silent for 5 s"),
        "rank 0: {lost}"
    );
    assert!(waited < Duration::from_secs(60), "rank 0 took {waited:?}");
    let stopped = reports(&rank_1, "ERROR ").join("\n");
    eprintln!("rank 1: {stopped}");
    assert_eq!(stopped, format!("rank 0 stopped the run: {lost}"));
    assert!(reports(&rank_1, "LOSSES ").is_empty());
    assert_checkpoints_whole(&output);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// A diverging loss, a non-finite one.

/// A checkpoint after every iteration, of which `TRAIN.KEEP_LAST` keeps one;
/// no validation.
const EVERY_ITERATION_KEEP_1: [&str; 3] = [
    "TRAIN.CHECKPOINT_EVERY=1",
    "TRAIN.KEEP_LAST=1",
    "TRAIN.VALIDATE_EVERY=0",
];

/// Divergence: `OPTIM.LR` 3 (1500 × the config's) reached over a warm-up
/// of 20 iterations: the loss is lowest at iteration 3 and climbs from
/// there, faster as the rate rises (13.8, 13.5, 15.3, 27.6, 24.2, 21.9,
/// 36.2, …, seed 0), so that the mean of the guard's window (the default:
/// 50 iterations, growing from the first) passes 2 × its lowest some
/// iterations later (11 or 12 for seeds 0 to 3). The checkpoints written
/// on the way up are not good: the error names the one of the lowest
/// window's last iteration. What survives: that checkpoint, which KEEP_LAST
/// 1 kept beside the newest, holding the guard's state for a resume.
#[test]
fn a_diverging_run_stops_and_its_last_good_checkpoint_survives_pruning() {
    let output = scratch("climb");
    let mut sets = vec!["OPTIM.LR=3", "OPTIM.CNN_LR=3", "OPTIM.WARMUP_STEPS=20"];
    sets.extend(EVERY_ITERATION_KEEP_1);
    let err = match run(pretraining(tiny(24, &sets), &output)) {
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

/// The guard's other side: a run of the config's own learning rate does
/// not trip it (its first window of one iteration, and every longer one,
/// stay near the lowest). Everything survives: the run ends, and pruning
/// keeps the newest checkpoint and the good one.
#[test]
fn a_healthy_run_does_not_trip_the_guard() {
    let output = scratch("healthy");
    let summary = run(pretraining(tiny(24, &EVERY_ITERATION_KEEP_1), &output))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.losses.len(), 24);
    let kept = iterations(&output);
    assert_eq!(kept.last(), Some(&24));
    assert!(kept.len() <= 2, "the newest, and the good one: {kept:?}");
    std::fs::remove_dir_all(output).unwrap();
}

/// Divergence at once: `OPTIM.LR` 1e4 (as `pretrain --set OPTIM.LR=1e4`
/// on the bundled config) explodes the loss at iteration 3, from 13.8 to
/// 2.8e9; the guard's defaults (a window of 50, growing from the first
/// iteration; a factor of 2) stop the run there. What survives: checkpoint
/// 2, named as the last good one.
#[test]
fn a_learning_rate_of_1e4_stops_at_its_first_exploded_loss() {
    let output = scratch("1e4");
    let mut sets = vec!["OPTIM.LR=1e4", "OPTIM.CNN_LR=1e4"];
    sets.extend(EVERY_ITERATION_KEEP_1);
    let err = run(pretraining(tiny(8, &sets), &output)).unwrap_err();
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

/// A NaN or infinite loss, with the divergence guard off
/// (`TRAIN.DIVERGENCE_FACTOR: 0`; on, it stops this run at its first
/// exploded loss, as above): the run stops at that iteration, before any
/// checkpoint of those weights. What survives: the last checkpoint, named
/// (or the message says none was written yet), still readable.
#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let output = scratch("nan");
    let config = tiny(
        8,
        &[
            "OPTIM.LR=1e30",
            "OPTIM.CNN_LR=1e30",
            "OPTIM.CLIP_GRAD_NORM=0",
            "OPTIM.LOOKAHEAD.USE=false",
            "TRAIN.DIVERGENCE_FACTOR=0",
        ],
    );
    let err = run(pretraining(config, &output)).unwrap_err().to_string();
    assert!(err.contains("the loss is"), "{err}");
    if let Some((iteration, path)) = list_checkpoints(&output).last() {
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert_eq!(
            read_meta(path).unwrap().iteration,
            *iteration,
            "still readable"
        );
    } else {
        assert!(err.contains("no checkpoint"), "{err}");
    }
    std::fs::remove_dir_all(output).unwrap();
}

// ---------------------------------------------------------------------------
// A checkpoint that cannot be written.

/// A checkpoint whose file cannot be written (here: a directory where its
/// file goes, which the rename cannot replace, root or not) stops the run,
/// naming the path, the cause and the previous checkpoint. What survives:
/// that previous checkpoint, which loads as before; no temporary file is
/// left.
#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_and_the_previous_survives() {
    let output = scratch("unwritable");
    let blocked = output.join("checkpoint_2.safetensors");
    std::fs::create_dir_all(&blocked).unwrap();
    let err = run(pretraining(tiny(4, &EVERY_ITERATION_KEEP_1), &output)).unwrap_err();
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
        checkpoint.model::<Flex>(&Default::default()).unwrap()
    };
    assert_eq!(meta.iteration, 1);
    assert_eq!(iterations(&output), [1], "the directory is no checkpoint");
    assert!(!output.join("checkpoint_2.tmp-write").exists());
    std::fs::remove_dir_all(output).unwrap();
}

// ---------------------------------------------------------------------------
// A dead loader; bad images under both policies.

/// A copy of the first `train` and `val` captioned images of the bundled
/// emoji dataset, in COCO layout under `dir`, with their captions.
fn emoji_subset(dir: &Path, train: usize, val: usize) -> PathBuf {
    for (split, count) in [("train", train), ("val", val)] {
        let annotations = format!("annotations/captions_{split}2017.json");
        let text = std::fs::read_to_string(root().join("data/emoji").join(&annotations)).unwrap();
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let images: Vec<serde_json::Value> = file["images"].as_array().unwrap()[..count].to_vec();
        let ids: Vec<u64> = images.iter().map(|i| i["id"].as_u64().unwrap()).collect();
        file["annotations"] = file["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| ids.contains(&a["image_id"].as_u64().unwrap()))
            .cloned()
            .collect();
        let folder = dir.join(format!("{split}2017"));
        std::fs::create_dir_all(&folder).unwrap();
        for image in &images {
            let name = image["file_name"].as_str().unwrap();
            let from = root().join(format!("data/emoji/{split}2017/{name}"));
            std::fs::copy(from, folder.join(name)).unwrap();
        }
        file["images"] = images.into();
        std::fs::create_dir_all(dir.join("annotations")).unwrap();
        std::fs::write(dir.join(&annotations), file.to_string()).unwrap();
    }
    dir.to_path_buf()
}

/// The tiny config for `iterations` over the dataset at `data_root`, no
/// validation, with `extra` keys.
fn tiny_on(data_root: &Path, iterations: u64, extra: &[&str]) -> Config {
    let data = format!("DATA.ROOT={}", data_root.display());
    let mut sets = vec![data.as_str(), "TRAIN.VALIDATE_EVERY=0"];
    sets.extend(extra);
    tiny(iterations, &sets)
}

/// The image the run of `config` draws first for its batch `batch` of
/// epoch 0, as the trainer's loader orders them (a permutation of the
/// split by `RANDOM_SEED` and the epoch alone).
fn drawn_image(config: &Config, batch: usize) -> PathBuf {
    let dataset = CocoCaptions::load(&config.data.root, "train").unwrap();
    let tokenizer = SentencePieceTokenizer::from_file(&config.data.tokenizer_model).unwrap();
    let size = config.data.image_crop_size;
    let pipeline = SamplePipeline::new(Arc::new(tokenizer), Preprocessing::Eval { size });
    let loader = PretrainingLoader::with_pipeline(
        Arc::new(dataset.clone()),
        pipeline,
        config.optim.batch_size,
        config.random_seed,
    );
    let id = loader.batch(0, batch).unwrap().image_ids[0];
    dataset.image(id).unwrap().path.clone()
}

/// A dead loader: the loader's thread stops mid-run, at an image of
/// iteration 3's batch that can no longer be read when it is drawn (cut
/// short after the split was indexed, as by a copy interrupted under a
/// running job), under `DATA.ON_BAD_IMAGE: error`. The thread sends its
/// error and ends, and the run stops there with one line naming the file;
/// no later batch is drawn in its place. What survives: checkpoint 2 and
/// the log of iterations 1 and 2. With the file restored, `--resume`
/// repeats the uninterrupted run's iterations 3 and 4 to the bit.
///
/// A loader thread that panics stops the run the same way; no config
/// reaches a panic (a config names the training transforms, whose
/// probabilities are fixed, and the masked-LM vocabulary is the
/// tokenizer's), so that is tested at the seam the trainer uses, the
/// loader's own batch stream
/// (`crates/virtex-data/tests/loader_faults.rs`), and on the trainer's
/// stream of it (`a_panicking_loader_thread_is_an_error_and_the_end_of_the_batches`
/// in `src/data.rs`).
#[test]
fn a_loader_that_dies_mid_run_stops_it_and_resume_repeats_the_losses() {
    let dir = scratch("dead-loader");
    let data = emoji_subset(&dir.join("emoji"), 16, 4);
    let config = || tiny_on(&data, 4, &[]);
    let full = run(pretraining(config(), &dir.join("uninterrupted"))).unwrap();

    let victim = drawn_image(&config(), 2);
    let original = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &original[..original.len() / 2]).unwrap();
    let output = dir.join("run");
    let err = run(pretraining(config(), &output)).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, TrainError::Loader(LoaderError::Image(image)) if image.path == victim),
        "{message}"
    );
    assert_eq!(
        message,
        format!(
            "{}: truncated JPEG (no end-of-image marker)",
            victim.display()
        )
    );
    assert_eq!(iterations(&output), [2]);
    assert_whole(&output.join("checkpoint_2.safetensors"), 2);
    assert_eq!(logged_iterations(&output), [1, 2]);

    std::fs::write(&victim, &original).unwrap();
    let resumed = resume(config(), &output).unwrap();
    assert_eq!(resumed.start_iteration, 2);
    assert_eq!(resumed.losses, full.losses[2..]);
    assert_eq!(logged_iterations(&output), [1, 2, 3, 4]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// 8 training images, the first replaced by a corrupt JPEG (the committed
/// `data/fixtures/images/truncated.jpg`: no end-of-image marker), and 4
/// validation images, under `dir`; the corrupt file.
fn emoji_with_a_corrupt_jpeg(dir: &Path) -> (PathBuf, PathBuf) {
    let data = emoji_subset(dir, 8, 4);
    let first = CocoCaptions::load(&data, "train").unwrap().images[0]
        .path
        .clone();
    std::fs::copy(root().join("data/fixtures/images/truncated.jpg"), &first).unwrap();
    (data, first)
}

/// A corrupt JPEG among the training images under `DATA.ON_BAD_IMAGE:
/// error` (the default): the run stops at the batch that draws it (epoch
/// 0's first two batches draw every image), with one line naming the file
/// and what is wrong with it. What survives: nothing was trained far
/// enough for a checkpoint, and none is written.
#[test]
fn a_corrupt_image_stops_the_run_naming_it_under_the_error_policy() {
    let dir = scratch("bad-image-error");
    let (data, corrupt) = emoji_with_a_corrupt_jpeg(&dir.join("emoji"));
    let output = dir.join("run");
    let err = run(pretraining(tiny_on(&data, 2, &[]), &output)).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, TrainError::Loader(LoaderError::Image(image)) if image.path == corrupt),
        "{message}"
    );
    assert_eq!(
        message,
        format!(
            "{}: truncated JPEG (no end-of-image marker)",
            corrupt.display()
        )
    );
    assert!(iterations(&output).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The same corrupt JPEG under `DATA.ON_BAD_IMAGE: skip`: the run trains
/// on (the batch that drew it is one image short), and what it reports
/// names the file and why it was left out (`pretrain` prints them when it
/// ends), counting each time it was drawn. Everything survives.
#[test]
fn a_corrupt_image_is_left_out_and_named_under_the_skip_policy() {
    let dir = scratch("bad-image-skip");
    let (data, corrupt) = emoji_with_a_corrupt_jpeg(&dir.join("emoji"));
    let output = dir.join("run");
    let config = tiny_on(&data, 2, &["DATA.ON_BAD_IMAGE=skip"]);
    let summary = run(pretraining(config, &output)).unwrap();
    assert_eq!(summary.losses.len(), 2);
    assert!(summary.losses.iter().all(|l| l.is_finite()));
    assert_eq!(
        summary.skipped_files,
        [ImageError {
            path: corrupt,
            message: "truncated JPEG (no end-of-image marker)".into(),
        }]
    );
    // Once in epoch 0; the loader may have drawn it again for epoch 1
    // (batches are made ahead) by the time the run reports.
    assert!(summary.skipped_images >= 1);
    assert_eq!(iterations(&output), [2]);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// Corrupt, truncated and malicious `.pth` files.

/// A committed fixture.
fn fixture(name: &str) -> PathBuf {
    root().join("data/fixtures").join(name)
}

/// A torch.save zip of a torchvision ResNet-18's stem and layer1 (the
/// tensors `resnet18_layer1/data/0`… of 36 entries).
fn torchvision() -> PathBuf {
    fixture("resnet18_layer1.pth")
}

/// An official-format VirTex bicaptioning checkpoint.
fn virtex() -> PathBuf {
    fixture("virtex_text/bicaptioning_L2_H32_A2_F128.pth")
}

/// Every reader a command uses for a `.pth` refuses `path`, in one line
/// naming it (with `said` in it): `--init-from`, `evaluate`, `caption` and
/// `export-backbone` take the file through [`WeightsSource::from_arg`],
/// with or without `--layout`, and a source so made loads through
/// [`WeightsSource::backbone`] (and `init_model`, which reads as it does).
/// Nothing is written beside it.
fn assert_pth_refused(path: &Path, said: &str) {
    let dir = path.parent().unwrap();
    let before = files(dir);
    for layout in [None, Some(PthLayout::Torchvision), Some(PthLayout::Virtex)] {
        let err = WeightsSource::from_arg(path, layout).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SourceError::Backbone(_)),
            "{layout:?}: {message}"
        );
        eprintln!("{layout:?}: {message}");
        assert_names_in_one_line(&message, path);
        assert!(message.contains(said), "{layout:?}: {message}");
    }
    for source in [
        WeightsSource::Torchvision(path.to_path_buf()),
        WeightsSource::Virtex(path.to_path_buf()),
    ] {
        let err = source
            .backbone::<Flex>(ResNetArch::Resnet18, &Default::default())
            .unwrap_err();
        let message = err.to_string();
        assert_names_in_one_line(&message, path);
        assert!(message.contains(said), "{source:?}: {message}");
    }
    assert_eq!(files(dir), before, "nothing written");
}

/// A `.pth` cut short (the torchvision fixture's first half, as an
/// interrupted download leaves it): a zip archive's directory is at its
/// end, so it is refused as a zip without one, naming the file. What
/// survives: nothing is read from it, nothing written.
#[test]
fn a_truncated_pth_is_refused_naming_the_file() {
    let dir = scratch("pth-truncated");
    let bytes = std::fs::read(torchvision()).unwrap();
    let path = dir.join("resnet18_layer1.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_pth_refused(
        &path,
        "a zip archive (torch.save's format) without its directory, cut short or damaged",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A `.pth` zip with a damaged entry: bytes in the middle of
/// `resnet18_layer1/data/0` (conv1's weights) overwritten, the archive's
/// directory intact. burn-store reads a tensor's bytes when it is used and
/// gives zeros for an entry it cannot read, so without the check each
/// entry's CRC-32 now gets when the file is opened, conv1 loaded as zeros
/// and training went on from them; now it is refused, naming the file and
/// the entry. What survives: nothing is loaded from it, nothing written.
#[test]
fn a_pth_with_a_damaged_entry_is_refused_not_read_as_zeros() {
    let dir = scratch("pth-damaged");
    let path = dir.join("resnet18_layer1.pth");
    let mut bytes = std::fs::read(torchvision()).unwrap();
    let entry = "resnet18_layer1/data/0";
    let (start, size) = {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        let file = archive.by_name(entry).unwrap();
        (file.data_start().unwrap() as usize, file.size() as usize)
    };
    bytes[start + size / 2..start + size / 2 + 64].fill(0x7f);
    std::fs::write(&path, &bytes).unwrap();

    // What burn-store alone makes of it: conv1's weights all zeros.
    let reader = burn_store::pytorch::PytorchReader::new(&path).unwrap();
    let conv1 = reader.get("conv1.weight").unwrap().to_data().unwrap();
    assert!(
        conv1.to_vec::<f32>().unwrap().iter().all(|&w| w == 0.0),
        "burn-store no longer reads a damaged entry as zeros: the CRC check in \
         virtex_vision::pytorch::read_pth may be redundant"
    );

    assert_pth_refused(&path, &format!("zip entry '{entry}': Invalid checksum"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A pickle that calls `os.system` (a class's `__reduce__` returning
/// `(os.system, ("touch …",))`, pickled as the global `posix.system`
/// applied to the command, under the key `model`: Python's `pickle.load`,
/// and `torch.load` without `weights_only`, run the command), as a
/// torch.save zip (`archive/data.pkl`) and as a bare pickle. The reader interprets the
/// pickle as data and calls nothing but torch's tensor rebuilders, so the
/// file is refused naming it and the call. What survives: the command never
/// runs (the file it would create does not exist), nothing is written.
#[test]
fn a_pickle_that_calls_os_system_is_refused_and_nothing_runs() {
    let dir = scratch("pth-malicious");
    let marker = dir.join("pwned");
    let command = format!("touch {}", marker.display());
    let mut pickle = b"\x80\x02}q\x00X\x05\x00\x00\x00modelq\x01cposix\nsystem\nq\x02X".to_vec();
    pickle.extend((command.len() as u32).to_le_bytes());
    pickle.extend(command.as_bytes());
    pickle.extend(b"q\x03\x85q\x04Rq\x05s.");

    let bare = dir.join("bare.pth");
    std::fs::write(&bare, &pickle).unwrap();
    let zipped = dir.join("zipped.pth");
    {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut archive = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
        for (name, bytes) in [
            ("archive/data.pkl", pickle.as_slice()),
            ("archive/version", b"3\n".as_slice()),
        ] {
            archive.start_file(name, options).unwrap();
            std::io::Write::write_all(&mut archive, bytes).unwrap();
        }
        archive.finish().unwrap();
    }
    for path in [&bare, &zipped] {
        assert_pth_refused(
            path,
            "its pickle calls posix.system, which a state dict never does; refused (nothing \
             was run)",
        );
    }
    assert!(!marker.exists(), "the pickle's command ran");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// A `.pth` of another layout (the file is whole, but not what was asked
// for).

/// A file of neither layout: a Detectron2 backbone (`{"model": {"stem.…"}}`)
/// of eight tensors.
fn detectron2(dir: &Path) -> PathBuf {
    let names = [
        "stem.conv1.weight",
        "stem.conv1.norm.weight",
        "stem.conv1.norm.bias",
        "res2.0.conv1.weight",
        "res2.0.conv1.norm.weight",
        "res2.0.conv1.norm.bias",
        "res2.0.conv2.weight",
        "res2.0.conv2.norm.weight",
    ];
    let tensors = names
        .iter()
        .map(|name| {
            let tensor = TorchTensor::f32(vec![2], &[1.0, 2.0]);
            (name.to_string(), PickleValue::Tensor(tensor))
        })
        .collect();
    let path = dir.join("detectron2.pth");
    let value = PickleValue::Dict(vec![
        ("model".into(), PickleValue::Dict(tensors)),
        ("__author__".into(), PickleValue::Str("virtex-rs".into())),
    ]);
    save(&path, &value).unwrap();
    path
}

/// An error message a person can read at a glance: one line that names
/// five keys at most, not a state dict.
fn assert_short(message: &str) {
    eprintln!("{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    let quoted = message.matches('\'').count() + message.matches('"').count();
    assert!(quoted <= 2 * 6, "{message}");
}

/// Not a fault, the ground the next cases stand on: a `.pth`'s layout is
/// told by its tensor names, and a `--layout` the names agree with is taken
/// as it is.
#[test]
fn the_layout_is_detected_from_the_tensor_names() {
    assert_eq!(
        PthLayout::detect(&torchvision()).unwrap(),
        PthLayout::Torchvision
    );
    assert_eq!(PthLayout::detect(&virtex()).unwrap(), PthLayout::Virtex);
    assert_eq!(
        WeightsSource::from_arg(&torchvision(), None).unwrap(),
        WeightsSource::Torchvision(torchvision())
    );
    assert_eq!(
        WeightsSource::from_arg(&virtex(), None).unwrap(),
        WeightsSource::Virtex(virtex())
    );
    assert_eq!(
        WeightsSource::from_arg(&virtex(), Some(PthLayout::Virtex)).unwrap(),
        WeightsSource::Virtex(virtex())
    );
}

/// A `.pth` of neither layout is refused in one line naming five of its
/// tensors; a `--layout` given reads it as that layout anyway, and what
/// does not fit is named, five keys at most. Nothing is loaded.
#[test]
fn a_file_of_neither_layout_is_refused_with_a_few_of_its_names() {
    let dir = scratch("unknown-layout");
    let path = detectron2(&dir);
    let err = WeightsSource::from_arg(&path, None).unwrap_err();
    let SourceError::UnknownLayout { keys, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(keys.len(), 8);
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.contains("its 8 tensors are 'model.res2.0.conv1.norm.bias', ")
            && message.ends_with("'model.res2.0.conv2.weight' and 3 more"),
        "{message}"
    );
    let forced = WeightsSource::from_arg(&path, Some(PthLayout::Torchvision)).unwrap();
    assert_eq!(forced, WeightsSource::Torchvision(path.clone()));
    let err = forced
        .backbone::<Flex>(ResNetArch::Resnet18, &Default::default())
        .unwrap_err();
    let message = err.to_string();
    assert_short(&message);
    assert!(message.contains(" more"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A `--layout` that the file's tensor names contradict is refused in one
/// line that says which to pass.
#[test]
fn a_layout_the_names_contradict_is_refused_in_one_line() {
    let err = WeightsSource::from_arg(&torchvision(), Some(PthLayout::Virtex)).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::WrongLayout {
                given: PthLayout::Virtex,
                found: PthLayout::Torchvision,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.ends_with(
            "resnet18_layer1.pth: --layout virtex, but the file is a torchvision ResNet \
             state dict: leave --layout out (it is detected) or pass --layout torchvision"
        ),
        "{message}"
    );
    let err = WeightsSource::from_arg(&virtex(), Some(PthLayout::Torchvision)).unwrap_err();
    assert_short(&err.to_string());
    assert!(matches!(err, SourceError::WrongLayout { .. }), "{err:?}");
}

/// A file loaded as the wrong layout (what `--layout virtex` did with a
/// torchvision file before detection, when burn-store's error listed every
/// top-level key) names a few keys only.
#[test]
fn loading_a_file_as_the_wrong_layout_names_a_few_keys_only() {
    let device = Default::default();
    let err = WeightsSource::Virtex(torchvision())
        .backbone::<Flex>(ResNetArch::Resnet18, &device)
        .unwrap_err();
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.ends_with(
            "resnet18_layer1.pth: no state dict under the top-level key 'model'; its 30 \
             tensors are 'bn1.bias', 'bn1.num_batches_tracked', 'bn1.running_mean', \
             'bn1.running_var', 'bn1.weight' and 25 more"
        ),
        "{message}"
    );
    // The other way round: every backbone key is missing.
    let err = WeightsSource::Torchvision(virtex())
        .backbone::<Flex>(ResNetArch::Resnet18, &device)
        .unwrap_err();
    let message = err.to_string();
    assert_short(&message);
    assert!(
        message.contains("missing keys (") && message.contains(" more"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// Damaged `.safetensors` checkpoints.

/// A small whole checkpoint of the tiny config (iteration 2): its metadata
/// as a run writes it, and two tensors under model names.
fn checkpoint_bytes() -> Vec<u8> {
    let meta = CheckpointMeta {
        iteration: 2,
        optimizer_steps: 2,
        config: tiny(4, &[]),
        data_positions: Vec::new(),
        divergence_guard: None,
    };
    let values: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view = || safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &values);
    let metadata = std::collections::HashMap::from([(
        "virtex.checkpoint".to_string(),
        serde_json::to_string(&meta).unwrap(),
    )]);
    safetensors::serialize(
        [
            ("model.visual.cnn.bn1.bias", view().unwrap()),
            ("model.visual.cnn.bn1.weight", view().unwrap()),
        ],
        Some(metadata),
    )
    .unwrap()
}

/// A checkpoint's header length (its first 8 bytes) and the header's JSON.
fn header_of(bytes: &[u8]) -> (usize, serde_json::Value) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (len, serde_json::from_slice(&bytes[8..8 + len]).unwrap())
}

/// Every reader a command uses for a virtex-rs checkpoint refuses the
/// damaged `bytes` as `checkpoint_2.safetensors`, in one line naming the
/// file (with `said` in it): `caption` and `evaluate` (the whole model,
/// [`WeightsSource::model`]), `pretrain --init-from`, `pretrain --resume`
/// (the file the newest checkpoint of `--output`), and, unless its header
/// is whole (`header_whole`: it reads no further), [`read_meta`]. Nothing
/// is written: no checkpoint, no log.
fn assert_checkpoint_refused(name: &str, bytes: &[u8], said: &str, header_whole: bool) {
    let dir = scratch(name);
    let output = dir.join("run");
    std::fs::create_dir_all(&output).unwrap();
    let path = output.join("checkpoint_2.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let source = WeightsSource::from_arg(&path, None).unwrap();
    assert_eq!(source, WeightsSource::Native(path.clone()));

    let mut messages = Vec::new();
    let model = {
        let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        source.model::<Flex>(&tiny(4, &[]), &Default::default())
    };
    match model {
        Ok(_) => panic!("caption and evaluate read it"),
        Err(err) => messages.push(err.to_string()),
    }
    let fresh = dir.join("fresh");
    let err = run(Pretraining {
        init_from: Some(source),
        ..pretraining(tiny(4, &[]), &fresh)
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::Init(_)), "{err}");
    messages.push(err.to_string());
    assert!(files(&fresh).is_empty(), "{:?}", files(&fresh));
    let err = resume(tiny(4, &[]), &output).unwrap_err();
    assert!(matches!(err, TrainError::ResumeUnreadable(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.ends_with(
            "; move it out of the output directory to resume from the checkpoint before it"
        ),
        "{message}"
    );
    messages.push(message);
    match read_meta(&path) {
        Err(err) => {
            assert!(!header_whole, "{err}");
            messages.push(err.to_string());
        }
        Ok(meta) => {
            assert!(header_whole, "read_meta read a damaged header");
            assert_eq!(meta.iteration, 2);
        }
    }
    for message in &messages {
        eprintln!("{message}");
        assert_names_in_one_line(message, &path);
        assert!(message.contains(said), "{message}");
    }
    assert_eq!(
        files(&output),
        ["checkpoint_2.safetensors"],
        "nothing written"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A checkpoint cut short in its tensors (an interrupted copy; a write
/// of the trainer's own is atomic): its header is whole, the bytes it
/// promises are not there. Every reader of tensors refuses it, naming the
/// file and its size; `--resume`'s message says to move it aside, so that
/// the checkpoint before it is resumed. What survives: the file as it was,
/// and the run's older checkpoints.
#[test]
fn a_truncated_checkpoint_is_refused_by_every_reader() {
    let mut bytes = checkpoint_bytes();
    bytes.truncate(bytes.len() - 6);
    let said = format!(
        "not a readable virtex-rs checkpoint: {} bytes, not the size its header gives (cut \
         short, or damaged)",
        bytes.len()
    );
    assert_checkpoint_refused("st-truncated", &bytes, &said, true);
}

/// A checkpoint whose header length lies (its first 8 bytes say 2^40):
/// refused before anything that size is allocated, naming the file, the
/// length and the file's size. What survives: as for a truncated one.
#[test]
fn a_checkpoint_whose_header_length_lies_is_refused() {
    let mut bytes = checkpoint_bytes();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let said = format!("header of 1099511627776 bytes in a file of {}", bytes.len());
    assert_checkpoint_refused("st-header-length", &bytes, &said, false);
}

/// A checkpoint whose header is not JSON (its first byte overwritten):
/// refused naming the file and where the JSON breaks. What survives: as
/// for a truncated one.
#[test]
fn a_checkpoint_whose_header_is_not_json_is_refused() {
    let mut bytes = checkpoint_bytes();
    bytes[8] = b'#';
    assert_checkpoint_refused(
        "st-not-json",
        &bytes,
        "not a readable virtex-rs checkpoint: expected value at line 1 column 1",
        false,
    );
}

/// A checkpoint whose header puts a tensor's bytes out of range (its
/// offsets moved a million bytes past the file's end; the header's length
/// and JSON otherwise right): refused naming the file and the tensor. What
/// survives: as for a truncated one.
#[test]
fn a_checkpoint_whose_offsets_are_out_of_range_is_refused() {
    let bytes = checkpoint_bytes();
    let (len, mut header) = header_of(&bytes);
    header["model.visual.cnn.bn1.weight"]["data_offsets"] =
        serde_json::json!([1_000_016, 1_000_032]);
    let json = header.to_string();
    let mut damaged = (json.len() as u64).to_le_bytes().to_vec();
    damaged.extend(json.as_bytes());
    damaged.extend(&bytes[8 + len..]);
    assert_checkpoint_refused(
        "st-offsets",
        &damaged,
        "not a readable virtex-rs checkpoint: invalid offset for tensor `model.visual.cnn.bn1.weight`",
        true,
    );
}
