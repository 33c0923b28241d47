//! Connecting the ranks: rank 0 listens at `MASTER_ADDR:MASTER_PORT`, every
//! other rank connects (retrying until rank 0 is up) and sends a hello line
//! (`{"rank": 3, "world_size": 8}`); when all have arrived, rank 0 answers
//! each with the payload it was given, and the connections stay open as
//! the [`ProcessGroup`]'s links.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{DistributedError, ProcessGroup, WorldSpec};

/// What a rank says when it connects.
#[derive(Serialize, Deserialize)]
struct Hello {
    rank: usize,
    world_size: usize,
}

/// Rank 0's answer: the payload (hex) or why the rank was refused.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Answer {
    Payload(String),
    Refused(String),
}

/// Joins the run `spec` describes. Rank 0 calls `payload` once (say, to
/// create a communicator id) and every rank receives its bytes.
pub fn rendezvous(
    spec: &WorldSpec,
    payload: impl FnOnce() -> Result<Vec<u8>, DistributedError>,
) -> Result<(ProcessGroup, Vec<u8>), DistributedError> {
    let deadline = Instant::now() + spec.timeout;
    if spec.rank == 0 {
        let payload = payload()?;
        let links = accept_ranks(spec, deadline, &payload)?;
        Ok((ProcessGroup::root(spec, links), payload))
    } else {
        let (link, payload) = join_root(spec, deadline)?;
        Ok((ProcessGroup::member(spec, link), payload))
    }
}

/// Rank 0: accepts ranks `1..world_size` until the deadline.
fn accept_ranks(
    spec: &WorldSpec,
    deadline: Instant,
    payload: &[u8],
) -> Result<Vec<TcpStream>, DistributedError> {
    let addr = spec.master();
    let listener = TcpListener::bind(&addr).map_err(|source| DistributedError::Listen {
        addr: addr.clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DistributedError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let mut joined: BTreeMap<usize, TcpStream> = BTreeMap::new();
    while joined.len() + 1 < spec.world_size {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(DistributedError::Missing {
                        missing: (1..spec.world_size)
                            .filter(|r| !joined.contains_key(r))
                            .collect(),
                        seconds: spec.timeout.as_secs(),
                        addr,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(source) => return Err(DistributedError::Listen { addr, source }),
        };
        let (rank, mut stream) = match read_hello(stream, deadline) {
            Ok(hello) => hello,
            // Not one of ours (a port scan, a half-open connection): ignore.
            Err(_) => continue,
        };
        let refusal = if rank.world_size != spec.world_size {
            Some(format!(
                "rank {} was started with WORLD_SIZE={}, rank 0 with {}",
                rank.rank, rank.world_size, spec.world_size
            ))
        } else if rank.rank == 0 || rank.rank >= spec.world_size {
            Some(format!("a process claims rank {}", rank.rank))
        } else if joined.contains_key(&rank.rank) {
            Some(format!("two processes claim rank {}", rank.rank))
        } else {
            None
        };
        if let Some(reason) = refusal {
            let _ = send_line(&mut stream, &Answer::Refused(reason.clone()));
            return Err(DistributedError::Rejected(reason));
        }
        joined.insert(rank.rank, stream);
    }
    let answer = Answer::Payload(hex(payload));
    let mut links = Vec::with_capacity(joined.len());
    for (rank, mut stream) in joined {
        send_line(&mut stream, &answer).map_err(|e| DistributedError::Lost {
            rank,
            during: "the rendezvous",
            message: e.to_string(),
        })?;
        links.push(stream);
    }
    Ok(links)
}

/// Reads a joining rank's hello.
fn read_hello(stream: TcpStream, deadline: Instant) -> std::io::Result<(Hello, TcpStream)> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100)),
    ))?;
    let line = read_line(&stream)?;
    let hello = serde_json::from_str(&line).map_err(std::io::Error::other)?;
    Ok((hello, stream))
}

/// Ranks above 0: connects to rank 0 (retrying until the deadline), says
/// hello and waits for the payload.
fn join_root(
    spec: &WorldSpec,
    deadline: Instant,
) -> Result<(TcpStream, Vec<u8>), DistributedError> {
    let addr = spec.master();
    let unreachable = |message: String| DistributedError::Unreachable {
        rank: spec.rank,
        addr: addr.clone(),
        seconds: spec.timeout.as_secs(),
        message,
    };
    let mut stream = loop {
        let attempt = addr
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))
            })
            .and_then(|socket| TcpStream::connect_timeout(&socket, Duration::from_secs(1)));
        match attempt {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= deadline => return Err(unreachable(e.to_string())),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let hello = Hello {
        rank: spec.rank,
        world_size: spec.world_size,
    };
    send_line(&mut stream, &hello).map_err(|e| unreachable(e.to_string()))?;
    // Rank 0 answers once every rank has arrived.
    stream
        .set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100)),
        ))
        .map_err(|e| unreachable(e.to_string()))?;
    let read = read_line(&stream);
    let lost = |message: String| DistributedError::Lost {
        rank: 0,
        during: "the rendezvous",
        message,
    };
    let line = match read {
        Ok(line) if line.is_empty() => {
            return Err(lost(
                "closed the connection (another rank failed to join?)".into(),
            ));
        }
        Ok(line) => line,
        Err(e) if is_timeout(&e) => {
            return Err(lost(format!(
                "no answer within {} s: some other rank did not join",
                spec.timeout.as_secs()
            )));
        }
        Err(e) => return Err(lost(e.to_string())),
    };
    match serde_json::from_str(&line).map_err(|e| lost(format!("malformed answer: {e}")))? {
        Answer::Payload(payload) => Ok((
            stream,
            unhex(&payload).ok_or_else(|| lost("malformed payload".into()))?,
        )),
        Answer::Refused(reason) => Err(DistributedError::Rejected(reason)),
    }
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One line, read a byte at a time: what follows it (the group's first
/// frames) stays in the socket for the [`ProcessGroup`]. Empty at EOF.
fn read_line(mut stream: &TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stream.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).map_err(std::io::Error::other)
}

fn send_line(stream: &mut TcpStream, value: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_string(value).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    stream.flush()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
