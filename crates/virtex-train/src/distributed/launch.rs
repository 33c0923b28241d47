//! Starting one machine's ranks, as `torchrun --nnodes N --node-rank I
//! --nproc-per-node P` does: one child process per device, each told its
//! place through torchrun's variables, their output forwarded with a
//! `[rank r]` prefix (rank 0's as it is, so its progress display keeps the
//! terminal), and the run supervised: when a rank fails, the others get a
//! grace period to stop on their own (the collectives notice a lost rank
//! and stop with an error naming it) and are killed after it, so a launch
//! never hangs on a rank stuck in a collective.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the other ranks get to stop after one has failed, by default.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// torchrun's default port, for runs over several machines (one machine
/// picks a free port itself).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// One machine's share of a multi-process run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Processes on this machine (one per device).
    pub nproc_per_node: usize,
    /// Machines in the run, each starting its own processes.
    pub nnodes: usize,
    /// This machine's index, `0..nnodes`; its ranks are
    /// `node_rank * nproc_per_node ..` the next machine's.
    pub node_rank: usize,
    /// Host of rank 0 (on machine 0).
    pub master_addr: String,
    /// Port rank 0 listens on.
    pub master_port: u16,
    /// `RAYON_NUM_THREADS` for each rank, where the command does not set it
    /// and neither does this process's environment: CPU ranks share the
    /// machine's cores instead of each starting a thread per core.
    pub threads_per_rank: Option<usize>,
    /// How long the other ranks get to stop once one has failed.
    pub grace: Duration,
}

/// A launch that could not start or whose ranks did not all succeed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Machine and process counts that describe no run, or a run over
    /// several machines without rank 0's address.
    #[error("{0}")]
    Layout(String),
    /// No port could be found for rank 0 on this machine.
    #[error("cannot find a free port for rank 0: {0}")]
    Port(std::io::Error),
    /// A rank's process could not be started.
    #[error("could not start rank {rank} ({program}): {source}")]
    Spawn {
        /// The rank.
        rank: usize,
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A rank exited unsuccessfully; the others stopped after it or were
    /// killed.
    #[error(
        "rank {rank} failed first ({status}){}{}",
        if also.is_empty() { String::new() } else {
            format!("; then {}", also.iter().map(|(r, s)| format!("rank {r} ({s})")).collect::<Vec<_>>().join(", "))
        },
        if killed.is_empty() { String::new() } else {
            format!("; killed rank{} {} after the {} s grace period",
                if killed.len() > 1 { "s" } else { "" },
                killed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                grace.as_secs_f64())
        }
    )]
    Failed {
        /// The first rank seen to fail.
        rank: usize,
        /// How it ended.
        status: ExitStatus,
        /// Ranks that failed after it, with how.
        also: Vec<(usize, ExitStatus)>,
        /// Ranks still running at the end of the grace period.
        killed: Vec<usize>,
        /// The grace period.
        grace: Duration,
    },
}

impl Launch {
    /// Machine `node_rank` of `nnodes`, each starting `nproc_per_node`
    /// processes, whose ranks meet rank 0 at `master_addr:master_port`. On
    /// one machine both may be left out (localhost, at a port that was free
    /// a moment ago); over several the address is required and the port
    /// defaults to torchrun's [`DEFAULT_MASTER_PORT`].
    pub fn new(
        nproc_per_node: usize,
        nnodes: usize,
        node_rank: usize,
        master_addr: Option<String>,
        master_port: Option<u16>,
    ) -> Result<Self, LaunchError> {
        let several = nnodes > 1;
        let master_addr = match master_addr {
            Some(addr) => addr,
            None if several => {
                return Err(LaunchError::Layout(format!(
                    "--nnodes {nnodes}: every machine needs --master-addr (rank 0's host)"
                )));
            }
            None => "127.0.0.1".into(),
        };
        let master_port = match master_port {
            Some(port) => port,
            None if several => DEFAULT_MASTER_PORT,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(LaunchError::Port)?
                .port(),
        };
        Ok(Self {
            nproc_per_node,
            nnodes,
            node_rank,
            master_addr,
            master_port,
            threads_per_rank: None,
            grace: STOP_GRACE,
        })
    }

    /// All ranks on this machine, meeting at a port of localhost that was
    /// free a moment ago.
    pub fn local(nproc_per_node: usize) -> Result<Self, LaunchError> {
        Self::new(nproc_per_node, 1, 0, None, None)
    }

    /// Processes in the whole run.
    pub fn world_size(&self) -> usize {
        self.nproc_per_node * self.nnodes
    }

    /// The global ranks this machine starts.
    pub fn ranks(&self) -> std::ops::Range<usize> {
        let first = self.node_rank * self.nproc_per_node;
        first..first + self.nproc_per_node
    }

    /// Starts this machine's ranks, `command(local_rank)` each with
    /// torchrun's variables added (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    /// `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), and waits for all
    /// of them.
    pub fn run(&self, command: impl Fn(usize) -> Command) -> Result<(), LaunchError> {
        if self.nproc_per_node == 0 || self.nnodes == 0 {
            return Err(LaunchError::Layout(format!(
                "{} machines of {} processes: a run needs at least one",
                self.nnodes, self.nproc_per_node
            )));
        }
        if self.node_rank >= self.nnodes {
            return Err(LaunchError::Layout(format!(
                "--node-rank {} is not below --nnodes {}",
                self.node_rank, self.nnodes
            )));
        }
        let mut ranks: Vec<Rank> = Vec::with_capacity(self.nproc_per_node);
        for (local_rank, rank) in self.ranks().enumerate() {
            match self.spawn(command(local_rank), rank, local_rank) {
                Ok(started) => ranks.push(started),
                Err(err) => {
                    for started in &mut ranks {
                        // Already failed to launch: best-effort clean-up.
                        let _ = started.child.kill();
                        let _ = started.child.wait();
                    }
                    return Err(err);
                }
            }
        }
        self.supervise(ranks)
    }

    fn spawn(
        &self,
        mut command: Command,
        rank: usize,
        local_rank: usize,
    ) -> Result<Rank, LaunchError> {
        command
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", self.world_size().to_string())
            .env("LOCAL_RANK", local_rank.to_string())
            .env("LOCAL_WORLD_SIZE", self.nproc_per_node.to_string())
            .env("MASTER_ADDR", &self.master_addr)
            .env("MASTER_PORT", self.master_port.to_string());
        let threads_set = std::env::var_os("RAYON_NUM_THREADS").is_some()
            || command
                .get_envs()
                .any(|(key, _)| key == "RAYON_NUM_THREADS");
        if let (Some(threads), false) = (self.threads_per_rank, threads_set) {
            command.env("RAYON_NUM_THREADS", threads.max(1).to_string());
        }
        let prefixed = rank != 0;
        if prefixed {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
            rank,
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let mut forwarders = Vec::new();
        if prefixed {
            let prefix = format!("[rank {rank}] ");
            if let Some(out) = child.stdout.take() {
                forwarders.push(forward(out, prefix.clone(), std::io::stdout));
            }
            if let Some(err) = child.stderr.take() {
                forwarders.push(forward(err, prefix, std::io::stderr));
            }
        }
        Ok(Rank {
            rank,
            child,
            status: None,
            forwarders,
        })
    }

    /// Waits for every rank; after the first failure, kills what is still
    /// running once the grace period is over.
    fn supervise(&self, mut ranks: Vec<Rank>) -> Result<(), LaunchError> {
        let mut failures: Vec<(usize, ExitStatus)> = Vec::new();
        let mut failed_at: Option<Instant> = None;
        let mut killed = Vec::new();
        loop {
            for rank in ranks.iter_mut().filter(|r| r.status.is_none()) {
                // A wait that errors (the child is gone) counts as ended.
                let status = match rank.child.try_wait() {
                    Ok(status) => status,
                    Err(_) => Some(rank.child.wait().unwrap_or_default()),
                };
                if let Some(status) = status {
                    rank.status = Some(status);
                    if !status.success() {
                        failures.push((rank.rank, status));
                        failed_at.get_or_insert_with(Instant::now);
                    }
                }
            }
            if ranks.iter().all(|r| r.status.is_some()) {
                break;
            }
            if failed_at.is_some_and(|at| at.elapsed() >= self.grace) {
                for rank in ranks.iter_mut().filter(|r| r.status.is_none()) {
                    // It may have ended just now; either way it is reaped below.
                    let _ = rank.child.kill();
                    rank.status = Some(rank.child.wait().unwrap_or_default());
                    killed.push(rank.rank);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for rank in ranks {
            for forwarder in rank.forwarders {
                // A forwarder only fails to write our own output.
                let _ = forwarder.join();
            }
        }
        let mut failures = failures.into_iter();
        match failures.next() {
            None => Ok(()),
            Some((rank, status)) => Err(LaunchError::Failed {
                rank,
                status,
                also: failures.collect(),
                killed,
                grace: self.grace,
            }),
        }
    }
}

/// A started rank.
struct Rank {
    rank: usize,
    child: Child,
    status: Option<ExitStatus>,
    forwarders: Vec<JoinHandle<()>>,
}

/// Copies `from`'s lines to `to`, each after `prefix` and written whole,
/// so ranks' lines never interleave mid-line.
fn forward<R: Read + Send + 'static, W: Write + 'static>(
    from: R,
    prefix: String,
    to: fn() -> W,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = prefix.clone().into_bytes();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            // Nowhere to report a failure to write our own output.
            let _ = to().write_all(&line);
            line.truncate(prefix.len());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_take_consecutive_ranks() {
        let mut launch = Launch::local(8).unwrap();
        launch.nnodes = 2;
        launch.node_rank = 1;
        assert_eq!(launch.world_size(), 16);
        assert_eq!(launch.ranks(), 8..16);
    }

    #[test]
    fn several_machines_need_rank_0s_address_and_default_to_torchruns_port() {
        let err = Launch::new(8, 2, 1, None, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "--nnodes 2: every machine needs --master-addr (rank 0's host)"
        );
        let launch = Launch::new(8, 2, 1, Some("node0".into()), None).unwrap();
        assert_eq!(
            (launch.master_addr.as_str(), launch.master_port),
            ("node0", DEFAULT_MASTER_PORT)
        );
        let launch = Launch::new(2, 1, 0, None, Some(29517)).unwrap();
        assert_eq!(
            (launch.master_addr.as_str(), launch.master_port),
            ("127.0.0.1", 29517)
        );
    }

    #[test]
    fn layouts_that_describe_no_run_are_refused() {
        let mut launch = Launch::local(2).unwrap();
        launch.node_rank = 1;
        let err = launch.run(|_| Command::new("true")).unwrap_err();
        assert_eq!(err.to_string(), "--node-rank 1 is not below --nnodes 1");
        launch.node_rank = 0;
        launch.nproc_per_node = 0;
        assert!(launch.run(|_| Command::new("true")).is_err());
    }

    #[test]
    fn a_program_that_cannot_start_is_named() {
        let launch = Launch::local(2).unwrap();
        let err = launch
            .run(|_| Command::new("/nonexistent/virtex-rank"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("could not start rank 0 (/nonexistent/virtex-rank)"),
            "{err}"
        );
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn each_rank_is_told_its_place_as_torchrun_tells_it() {
        let dir = std::env::temp_dir().join(format!("virtex-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut launch = Launch::local(3).unwrap();
        launch.nnodes = 2;
        launch.node_rank = 1;
        launch.threads_per_rank = Some(2);
        launch
            .run(|local_rank| {
                let mut command = shell(
                    "echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE \
                     $MASTER_ADDR:$MASTER_PORT $RAYON_NUM_THREADS > \"$OUT/$RANK\"",
                );
                command.env("OUT", &dir);
                if local_rank == 2 {
                    command.env("RAYON_NUM_THREADS", "7");
                }
                command
            })
            .unwrap();
        let port = launch.master_port;
        let threads = if std::env::var_os("RAYON_NUM_THREADS").is_some() {
            std::env::var("RAYON_NUM_THREADS").unwrap()
        } else {
            "2".into()
        };
        for (rank, local, expected_threads) in [
            (3, 0, threads.as_str()),
            (4, 1, threads.as_str()),
            (5, 2, "7"),
        ] {
            let said = std::fs::read_to_string(dir.join(rank.to_string())).unwrap();
            assert_eq!(
                said.trim(),
                format!("{rank} 6 {local} 3 127.0.0.1:{port} {expected_threads}")
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failing_rank_stops_the_launch_and_a_stuck_one_is_killed() {
        let dir = std::env::temp_dir().join(format!("virtex-launch-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Rank 0 reads a pipe no one writes to or closes before the launch
        // is over: only the kill after the grace period ends it.
        let (never, _held_open) = std::io::pipe().unwrap();
        let mut launch = Launch::local(3).unwrap();
        launch.grace = Duration::from_secs(5);
        let started = Instant::now();
        let err = launch
            .run(|local_rank| {
                let mut command = match local_rank {
                    // Rank 1 fails first, leaving its process id behind.
                    1 => shell(
                        "echo $$ > \"$DIR/pid.tmp\" && mv \"$DIR/pid.tmp\" \"$DIR/pid\"; exit 3",
                    ),
                    // Rank 2 fails once the launch has reaped rank 1 (a
                    // process, even ended, lasts until its parent reaps it).
                    2 => shell(
                        "until [ -s \"$DIR/pid\" ]; do sleep 0.01; done; \
                         while kill -0 \"$(cat \"$DIR/pid\")\" 2>/dev/null; do sleep 0.01; done; \
                         exit 1",
                    ),
                    _ => {
                        let mut command = shell("read line");
                        command.stdin(never.try_clone().unwrap());
                        command
                    }
                };
                command.env("DIR", &dir);
                command
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "rank 1 failed first (exit status: 3); then rank 2 (exit status: 1); \
             killed rank 0 after the 5 s grace period"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ranks_that_all_succeed_are_a_successful_launch() {
        let launch = Launch::local(2).unwrap();
        launch.run(|_| shell("exit 0")).unwrap();
    }
}
