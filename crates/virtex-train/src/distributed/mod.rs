//! Data-parallel training over several processes, launched the way cluster
//! users launch PyTorch: one process per rank, told its place by torchrun's
//! variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`) or the same as flags.
//!
//! - [`WorldSpec`] is a process's place in the run.
//! - [`rendezvous`] connects the ranks over TCP: rank 0 listens at the
//!   master address, the others connect and say who they are, and rank 0
//!   hands every rank the same opaque payload (a communicator id). A rank
//!   that does not arrive within the timeout stops every rank with an error
//!   naming it.
//! - [`ProcessGroup`] is the connected run: mean all-reduce, all-gather and
//!   broadcast over the rendezvous connections (a star through rank 0, in
//!   rank order, so every rank gets bit-identical results). It is the CPU
//!   collective, as gloo is PyTorch's; a rank that dies or falls silent
//!   stops the others with an error naming it.
//! - [`replica`] flattens a model's gradients and parameters into one buffer
//!   for the collective and back.
//! - `NcclGradients` (feature `cuda`) all-reduces a GPU run's gradients over
//!   NCCL instead, its communicator id handed out by the rendezvous.
//! - [`Replicas`] is what the training loop asks of the other ranks.
//! - [`Launch`] starts one machine's ranks, one process per device, as
//!   `torchrun --nproc-per-node` does, and stops them all when one fails:
//!   what `--device cuda:0,cuda:1` (or `cpu,cpu`) runs.
//! - [`policy`] decides what a rank gets of its machine by the kind of its
//!   device: CPU ranks share the cores, a GPU rank all-reduces over NCCL.

mod group;
mod launch;
#[cfg(feature = "cuda")]
mod nccl;
pub mod policy;
mod rendezvous;
pub mod replica;
mod replicas;

use std::time::Duration;

pub use group::ProcessGroup;
pub use launch::{DEFAULT_MASTER_PORT, Launch, LaunchError, STOP_GRACE};
#[cfg(feature = "cuda")]
pub use nccl::NcclGradients;
pub use rendezvous::rendezvous;
pub use replicas::Replicas;

/// How long a rank waits for the others by default, at the rendezvous and
/// in each collective (validation and checkpoints on rank 0 included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A process's place in a data-parallel run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldSpec {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank within its machine (which GPU it drives).
    pub local_rank: usize,
    /// Host of rank 0.
    pub master_addr: String,
    /// Port rank 0 listens on.
    pub master_port: u16,
    /// How long to wait for the other ranks.
    pub timeout: Duration,
    /// All-reduce the gradients over NCCL on this CUDA device (a GPU run in
    /// a build with feature `cuda`); `None`: through the rendezvous links.
    pub nccl_device: Option<usize>,
}

/// A data-parallel run that cannot start or continue.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// A launch variable that is missing or malformed.
    #[error("{name}={value}: {message}")]
    Variable {
        /// The variable (or flag).
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// Rank 0 cannot listen at the master address.
    #[error("rank 0 cannot listen on {addr}: {source}")]
    Listen {
        /// `MASTER_ADDR:MASTER_PORT`.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A rank cannot reach rank 0.
    #[error("rank {rank} could not reach rank 0 at {addr} within {seconds} s: {message}")]
    Unreachable {
        /// The rank that tried.
        rank: usize,
        /// `MASTER_ADDR:MASTER_PORT`.
        addr: String,
        /// The timeout.
        seconds: u64,
        /// The last connection error.
        message: String,
    },
    /// Ranks that did not join in time.
    #[error(
        "rank{} {} did not join within {seconds} s (rank 0 listening on {addr})",
        if missing.len() > 1 { "s" } else { "" },
        missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        /// The absent ranks.
        missing: Vec<usize>,
        /// The timeout.
        seconds: u64,
        /// Where rank 0 listened.
        addr: String,
    },
    /// A rank that broke the protocol (a second rank 3, another world size).
    #[error("rendezvous: {0}")]
    Rejected(String),
    /// A rank lost during the run.
    #[error("rank {rank} was lost during {during}: {message}")]
    Lost {
        /// The rank.
        rank: usize,
        /// What the group was doing.
        during: &'static str,
        /// What happened (closed connection, silent past the timeout, …).
        message: String,
    },
    /// NCCL could not be set up or failed.
    #[error("NCCL: {0}")]
    Nccl(String),
    /// NCCL asked for in a build without it.
    #[error("the gradient all-reduce over NCCL needs a build with feature `cuda`")]
    NcclNotBuilt,
    /// Rank 0 stopped the run because of another rank.
    #[error("rank 0 stopped the run: {0}")]
    Aborted(String),
}

/// `MASTER_PORT` (or `--master-port`) as a port number.
pub fn parse_master_port(value: &str) -> Result<u16, DistributedError> {
    value
        .trim()
        .parse::<u16>()
        .map_err(|_| DistributedError::Variable {
            name: "MASTER_PORT",
            value: value.to_string(),
            message: "not a port number".into(),
        })
}

impl WorldSpec {
    /// The place torchrun's variables describe, `None` when `WORLD_SIZE` is
    /// unset (a single-process run). `RANK`, `MASTER_ADDR` and `MASTER_PORT`
    /// are then required; `LOCAL_RANK` defaults to `RANK`.
    pub fn from_env(timeout: Duration) -> Result<Option<Self>, DistributedError> {
        Self::from_vars(|name| std::env::var(name).ok(), timeout)
    }

    /// [`Self::from_env`] over any variable lookup.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Option<Self>, DistributedError> {
        let Some(world) = var("WORLD_SIZE") else {
            return Ok(None);
        };
        let required = |name: &'static str| {
            var(name).ok_or_else(|| DistributedError::Variable {
                name,
                value: String::new(),
                message: format!("is not set, but WORLD_SIZE={world} is"),
            })
        };
        let number = |name: &'static str, value: String| {
            value
                .trim()
                .parse::<usize>()
                .map_err(|_| DistributedError::Variable {
                    name,
                    value: value.clone(),
                    message: "not a non-negative integer".into(),
                })
        };
        let world_size = number("WORLD_SIZE", world.clone())?;
        if world_size == 0 {
            return Err(DistributedError::Variable {
                name: "WORLD_SIZE",
                value: world,
                message: "a run needs at least one process".into(),
            });
        }
        let rank = number("RANK", required("RANK")?)?;
        if rank >= world_size {
            return Err(DistributedError::Variable {
                name: "RANK",
                value: rank.to_string(),
                message: format!("not below WORLD_SIZE={world_size}"),
            });
        }
        let local_rank = match var("LOCAL_RANK") {
            Some(value) => number("LOCAL_RANK", value)?,
            None => rank,
        };
        let master_port = parse_master_port(&required("MASTER_PORT")?)?;
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            master_addr: required("MASTER_ADDR")?,
            master_port,
            timeout,
            nccl_device: None,
        }))
    }

    /// `MASTER_ADDR:MASTER_PORT`.
    pub fn master(&self) -> String {
        format!("{}:{}", self.master_addr, self.master_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec(vars: &[(&str, &str)]) -> Result<Option<WorldSpec>, DistributedError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorldSpec::from_vars(|name| vars.get(name).cloned(), DEFAULT_TIMEOUT)
    }

    #[test]
    fn torchrun_variables_describe_the_place() {
        assert_eq!(spec(&[]).unwrap(), None);
        let place = spec(&[
            ("WORLD_SIZE", "16"),
            ("RANK", "9"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((place.rank, place.world_size, place.local_rank), (9, 16, 1));
        assert_eq!(place.master(), "node0:29500");
    }

    #[test]
    fn bad_variables_are_named_with_their_values() {
        let base = [("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
        for (vars, expected) in [
            (
                vec![("WORLD_SIZE", "2"), ("RANK", "2")],
                "RANK=2: not below WORLD_SIZE=2",
            ),
            (
                vec![("WORLD_SIZE", "two"), ("RANK", "0")],
                "WORLD_SIZE=two: not a non-negative integer",
            ),
            (
                vec![("WORLD_SIZE", "2")],
                "RANK=: is not set, but WORLD_SIZE=2 is",
            ),
            (
                vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "99999")],
                "MASTER_PORT=99999: not a port number",
            ),
        ] {
            let mut all: Vec<(&str, &str)> = base.to_vec();
            all.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
            all.extend(vars);
            let err = spec(&all).unwrap_err().to_string();
            assert_eq!(err, expected);
        }
    }
}
