//! Child processes of a test binary: the binary started again to play one
//! scenario, an ignored test (a `*_child` function), so that `cargo test`
//! lists it as ignored rather than passing. The parent starts it with
//! `--ignored --exact <name>` and [`CHILD`] set to the name, which the
//! child checks ([`is_child`]) before doing anything; ranks of a
//! data-parallel run get torchrun's variables besides ([`spawn_rank`]).
//! Shared by `distributed.rs` and `faults.rs`.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use virtex_train::distributed::WorldSpec;

/// Set in a child: which scenario it plays.
pub const CHILD: &str = "VIRTEX_RANK_CHILD";

/// How long a rank waits where no test means it to time out: far longer
/// than any of them takes, so only the timeout under test can end a wait.
pub const PATIENT: Duration = Duration::from_secs(120);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// This test binary, set to play `scenario` (a child test).
pub fn scenario_command(scenario: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            scenario,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, scenario);
    command
}

/// Whether this process is a child started to play `scenario`.
pub fn is_child(scenario: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|s| s == scenario)
}

/// Starts rank `rank` of `world` playing `scenario` (a child test), with
/// `extra` variables, its stdin, stdout and stderr pipes held by the
/// returned child (stdin closed when it is waited for).
pub fn spawn_rank(
    scenario: &str,
    rank: usize,
    world: usize,
    port: u16,
    extra: &[(&str, String)],
) -> Child {
    let mut command = scenario_command(scenario);
    command
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// What a child printed after `prefix` on each line (libtest may have
/// begun the line with the test's name).
pub fn reports(output: &Output, prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| Some(line[line.find(prefix)? + prefix.len()..].to_string()))
        .collect()
}

/// The place the launch variables give, waiting `timeout` for the others.
pub fn spec(timeout: Duration) -> WorldSpec {
    WorldSpec::from_env(timeout)
        .unwrap()
        .expect("WORLD_SIZE is set")
}
