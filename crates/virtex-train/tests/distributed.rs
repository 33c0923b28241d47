//! Multi-process data parallelism on the CPU: ranks are child processes of
//! this test binary, launched with torchrun's variables, that meet over TCP
//! on localhost.
//!
//! A rank plays a scenario, one of the `*_child` functions: ignored tests,
//! so that `cargo test` lists them as ignored rather than passing; the tests
//! start them with `--ignored --exact <name>` and [`children::CHILD`] set.
//! The faults here are the collectives' own (a rank that never joins, dies
//! or falls silent around one all-reduce); a rank that dies or hangs in a
//! training run is in `faults.rs`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::Duration;

use virtex_train::checkpoint::{list_checkpoints, read_meta};
use virtex_train::config::Config;
use virtex_train::device::{BackendTask, CpuBackend};
use virtex_train::distributed::{Launch, Replicas, WorldSpec, rendezvous};
use virtex_train::trainer::Pretraining;

mod children;
mod common;

use children::{PATIENT, free_port, is_child, reports, scenario_command, spawn_rank, spec};
use common::root;

/// Reads `child`'s output up to the end of the first line containing
/// `marker`, leaving the rest for [`Child::wait_with_output`].
fn wait_for_line(child: &mut Child, marker: &str) {
    let stdout = child.stdout.as_mut().expect("stdout is piped");
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        let read = stdout.read(&mut byte).unwrap();
        assert_eq!(read, 1, "the child ended before saying {marker}");
        if byte[0] != b'\n' {
            line.push(byte[0]);
        } else if String::from_utf8_lossy(&line).contains(marker) {
            return;
        } else {
            line.clear();
        }
    }
}

#[test]
#[ignore = "a rank's part: the tests start it in a child process"]
fn collective_child() {
    if !is_child("collective_child") {
        return;
    }
    let spec = spec(PATIENT);
    let (mut group, payload) = rendezvous(&spec, || Ok(b"communicator-42".to_vec())).unwrap();
    let mut values = [spec.rank as f32, 1.0, -(spec.rank as f32) * 0.5];
    group.all_reduce_mean_f32(&mut values, "a test").unwrap();
    let gathered = group.all_gather(&[spec.rank as u8 * 10], "a test").unwrap();
    println!(
        "REPORT rank {} payload {} mean {values:?} gathered {gathered:?}",
        spec.rank,
        String::from_utf8_lossy(&payload)
    );
}

#[test]
fn ranks_meet_and_reduce_in_rank_order() {
    let port = free_port();
    // Started in reverse: the others wait for rank 0 to listen.
    let children: Vec<Child> = (0..4)
        .rev()
        .map(|rank| spawn_rank("collective_child", rank, 4, port, &[]))
        .collect();
    let mut lines: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            reports(&output, "REPORT ").join("\n")
        })
        .collect();
    lines.sort();
    for (rank, line) in lines.iter().enumerate() {
        assert_eq!(
            line,
            &format!(
                "rank {rank} payload communicator-42 mean [1.5, 1.0, -0.75] \
                 gathered [[0], [10], [20], [30]]"
            )
        );
    }
}

/// Rank 0 waits 3 s for the others to join; they wait for its answer
/// ([`PATIENT`]ly), saying `READY` as they start trying to join.
#[test]
#[ignore = "a rank's part: the tests start it in a child process"]
fn absent_child() {
    if !is_child("absent_child") {
        return;
    }
    let mut spec = spec(PATIENT);
    if spec.rank == 0 {
        spec.timeout = Duration::from_secs(3);
    } else {
        println!("READY");
    }
    match rendezvous(&spec, || Ok(Vec::new())) {
        Ok(_) => println!("REPORT joined"),
        Err(err) => println!("REPORT {err}"),
    }
}

#[test]
fn a_rank_that_never_arrives_stops_every_rank_naming_it() {
    let port = free_port();
    // World of 4; rank 2 never starts. Ranks 1 and 3 are trying to join
    // before rank 0 starts, so rank 2 alone is missing when its 3 s are up.
    let mut children: Vec<(usize, Child)> = [1, 3]
        .into_iter()
        .map(|rank| {
            let mut child = spawn_rank("absent_child", rank, 4, port, &[]);
            wait_for_line(&mut child, "READY");
            (rank, child)
        })
        .collect();
    children.push((0, spawn_rank("absent_child", 0, 4, port, &[])));
    for (rank, child) in children {
        let output = child.wait_with_output().unwrap();
        let said = reports(&output, "REPORT ").join("\n");
        if rank == 0 {
            assert_eq!(
                said,
                format!("rank 2 did not join within 3 s (rank 0 listening on 127.0.0.1:{port})")
            );
        } else {
            assert!(
                said.starts_with("rank 0 was lost during the rendezvous"),
                "rank {rank}: {said}"
            );
        }
    }
}

/// Rank `VIRTEX_TEST_FAULTY` misbehaves after the rendezvous (`exit`: dies
/// without a word, as a killed process; `stall`: falls silent, reading its
/// stdin until the test closes it once the other ranks have ended); the
/// others all-reduce and report what happened. Rank 0 waits 2 s for a
/// silent rank, the others [`PATIENT`]ly for rank 0.
#[test]
#[ignore = "a rank's part: the tests start it in a child process"]
fn faulty_child() {
    if !is_child("faulty_child") {
        return;
    }
    let spec = spec(PATIENT);
    let (mut group, _) = rendezvous(&spec, || Ok(Vec::new())).unwrap();
    if spec.rank == 0 {
        group.set_timeout(Duration::from_secs(2));
    }
    let faulty: usize = std::env::var("VIRTEX_TEST_FAULTY")
        .unwrap()
        .parse()
        .unwrap();
    if spec.rank == faulty {
        match std::env::var("VIRTEX_TEST_FAULT").unwrap().as_str() {
            "exit" => std::process::exit(3),
            _ => {
                std::io::stdin().read_to_end(&mut Vec::new()).unwrap();
            }
        }
    }
    let mut values = [1.0f32; 4];
    match group.all_reduce_mean_f32(&mut values, "the gradient all-reduce") {
        Ok(()) => println!("REPORT reduced"),
        Err(err) => println!("REPORT {err}"),
    }
}

/// Runs `world` ranks of [`faulty_child`] with rank `faulty` doing `fault`;
/// each rank's report and exit code. The faulty rank's stdin is closed once
/// the others have ended.
fn with_a_faulty_rank(world: usize, faulty: usize, fault: &str) -> Vec<(String, Option<i32>)> {
    let port = free_port();
    let env = [
        ("VIRTEX_TEST_FAULTY", faulty.to_string()),
        ("VIRTEX_TEST_FAULT", fault.to_string()),
    ];
    let mut children: Vec<Option<Child>> = (0..world)
        .map(|rank| Some(spawn_rank("faulty_child", rank, world, port, &env)))
        .collect();
    let mut outputs: Vec<Option<Output>> = (0..world).map(|_| None).collect();
    let order = (0..world).filter(|&rank| rank != faulty).chain([faulty]);
    for rank in order {
        let child = children[rank].take().expect("each rank once");
        outputs[rank] = Some(child.wait_with_output().unwrap());
    }
    outputs
        .into_iter()
        .map(|output| {
            let output = output.expect("every rank waited for");
            (reports(&output, "REPORT ").join("\n"), output.status.code())
        })
        .collect()
}

#[test]
fn a_rank_that_dies_stops_the_others_naming_it() {
    let lost =
        "rank 2 was lost during the gradient all-reduce: closed its connection (the process ended)";
    let ranks = with_a_faulty_rank(3, 2, "exit");
    assert_eq!(ranks[0].0, lost);
    assert_eq!(ranks[1].0, format!("rank 0 stopped the run: {lost}"));
    assert_eq!(ranks[2].1, Some(3));
}

#[test]
fn a_silent_rank_times_out_instead_of_hanging() {
    let lost = "rank 1 was lost during the gradient all-reduce: silent for 2 s";
    let ranks = with_a_faulty_rank(2, 1, "stall");
    assert_eq!(ranks[0].0, lost);
    assert_eq!(ranks[1].0, format!("rank 0 stopped the run: {lost}"));
}

/// The tiny test config without dropout, for `iterations`, plus `extra` keys.
fn tiny_with(iterations: u64, extra: &[String]) -> Config {
    let mut keys = vec!["MODEL.TEXTUAL.DROPOUT=0.0"];
    keys.extend(extra.iter().map(String::as_str));
    common::tiny(iterations, &keys)
}

/// The keys that train the tiny run from the shards `pattern` names.
fn shard_keys(pattern: &str) -> Vec<String> {
    vec![
        format!("DATA.SHARDS={pattern}"),
        "DATA.SHUFFLE_BUFFER=20".into(),
    ]
}

/// A rank of the tiny run into `VIRTEX_TEST_OUTPUT`, from the shards
/// `VIRTEX_TEST_SHARDS` names if set, resuming if `VIRTEX_TEST_RESUME=1`.
#[test]
#[ignore = "a rank's part: the tests start it in a child process"]
fn training_child() {
    if !is_child("training_child") {
        return;
    }
    let var = |name: &str| std::env::var(name).ok();
    let extra = var("VIRTEX_TEST_SHARDS").map_or_else(Vec::new, |p| shard_keys(&p));
    let summary = Pretraining {
        config: tiny_with(4, &extra),
        output: PathBuf::from(var("VIRTEX_TEST_OUTPUT").unwrap()),
        resume: var("VIRTEX_TEST_RESUME").is_some_and(|v| v == "1"),
        init_from: None,
        world: Some(spec(PATIENT)),
        precision: virtex_vision::Precision::F32,
    }
    .run::<CpuBackend>(Default::default())
    .unwrap();
    println!("LOSSES {:?}", summary.losses);
}

/// Runs `world` ranks of [`training_child`] with `env`; each rank's losses.
fn train_ranks(world: usize, env: &[(&str, String)]) -> Vec<Vec<f64>> {
    let port = free_port();
    let children: Vec<Child> = (0..world)
        .map(|rank| spawn_rank("training_child", rank, world, port, env))
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_str(&reports(&out, "LOSSES ").pop().expect("losses printed")).unwrap()
        })
        .collect()
}

/// `--device cpu,cpu`: [`Launch`] starts one process per device with
/// torchrun's variables, and they train as ranks started by hand with
/// them: every rank holds the same averaged losses, the launched run logs
/// those very losses, and rank 0 alone writes checkpoints and the log.
/// (That the ranks step with averaged gradients shows in
/// `two_ranks_resume_their_shard_streams`: a resumed run starts both ranks
/// from rank 0's weights and repeats the uninterrupted losses.)
#[test]
fn launched_ranks_train_as_ranks_started_by_hand() {
    let dir = std::env::temp_dir().join(format!("virtex-ranks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let by_hand = train_ranks(
        2,
        &[(
            "VIRTEX_TEST_OUTPUT",
            dir.join("by-hand").display().to_string(),
        )],
    );
    assert_eq!(by_hand[0], by_hand[1], "every rank holds the averaged loss");

    let output = dir.join("launched");
    let launch = Launch::local(2).unwrap();
    launch
        .run(|_| {
            let mut command = scenario_command("training_child");
            command
                .env("VIRTEX_TEST_OUTPUT", &output)
                .env("RAYON_NUM_THREADS", "1");
            command
        })
        .unwrap();
    let log = std::fs::read_to_string(output.join("metrics.jsonl")).unwrap();
    let logged: Vec<f64> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record.get("grad_norm").is_some())
        .map(|record| record["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(logged, by_hand[0], "one writer, the ranks' losses");
    let checkpoints: Vec<u64> = list_checkpoints(&output).iter().map(|(i, _)| *i).collect();
    assert_eq!(checkpoints, [2, 4]);
    assert!(
        read_meta(&output.join("checkpoint_4.safetensors"))
            .unwrap()
            .data_positions
            .is_empty()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_single_process_world_needs_no_peers() {
    let spec = WorldSpec {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        timeout: Duration::from_secs(1),
        nccl_device: None,
    };
    let replicas = Replicas::join(Some(&spec)).unwrap();
    assert_eq!((replicas.rank(), replicas.world_size()), (0, 1));
}

/// Two ranks training from shards: the checkpoint records both streams'
/// positions, both ranks resume from them with the losses of the
/// uninterrupted run, and a resume with another world size is refused.
#[test]
fn two_ranks_resume_their_shard_streams() {
    use virtex_data::coco::CocoCaptions;
    use virtex_data::shards::{StreamPosition, write_shards};

    let dir = std::env::temp_dir().join(format!("virtex-shard-ranks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let val = CocoCaptions::load(&root().join("data/emoji"), "val").unwrap();
    let written = write_shards(&val, &dir.join("shards"), "val", 60, 0).unwrap();
    let output = dir.join("run");
    let train = |resume: bool| -> Vec<f64> {
        let losses = train_ranks(
            2,
            &[
                ("VIRTEX_TEST_OUTPUT", output.display().to_string()),
                ("VIRTEX_TEST_SHARDS", written.pattern.clone()),
                ("VIRTEX_TEST_RESUME", if resume { "1" } else { "0" }.into()),
            ],
        );
        assert_eq!(losses[0], losses[1]);
        losses[0].clone()
    };
    let full = train(false);
    let meta = read_meta(&output.join("checkpoint_2.safetensors")).unwrap();
    // A global batch of 4: 2 samples per rank per iteration.
    let at = StreamPosition {
        epoch: 0,
        offset: 4,
    };
    assert_eq!(meta.data_positions, [at, at]);
    std::fs::remove_file(output.join("checkpoint_4.safetensors")).unwrap();
    let resumed = train(true);
    assert_eq!(resumed, full[2..]);

    std::fs::remove_file(output.join("checkpoint_4.safetensors")).unwrap();
    let err = Pretraining {
        config: tiny_with(4, &shard_keys(&written.pattern)),
        output: output.clone(),
        resume: true,
        init_from: None,
        world: None,
        precision: virtex_vision::Precision::F32,
    }
    .run::<CpuBackend>(Default::default())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("records the shard streams of 2 ranks; resume it with WORLD_SIZE=2"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(not(feature = "cuda"))]
#[test]
fn nccl_without_the_cuda_feature_is_a_clear_error() {
    let spec = WorldSpec {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        timeout: Duration::from_secs(1),
        nccl_device: Some(0),
    };
    let err = Replicas::join(Some(&spec)).err().unwrap().to_string();
    assert_eq!(
        err,
        "the gradient all-reduce over NCCL needs a build with feature `cuda`"
    );
}
