//! The collective of a CPU data-parallel run: a star through rank 0 over the
//! rendezvous connections. Rank 0 gathers every rank's buffer in rank order,
//! reduces and sends the result back, so each rank holds the same bits.
//!
//! A frame is a kind byte (0 data, 1 abort), a little-endian `u64` length
//! and the bytes. When rank 0 loses a rank it sends the others an abort
//! frame naming it, so no rank waits on a peer that will not come.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::rendezvous::is_timeout;
use super::{DistributedError, WorldSpec};

const DATA: u8 = 0;
const ABORT: u8 = 1;

/// The ranks of a run, connected.
pub struct ProcessGroup {
    rank: usize,
    world_size: usize,
    timeout: Duration,
    /// Rank 0: the link to each rank `1..world_size`, in order; others: the
    /// link to rank 0.
    links: Vec<TcpStream>,
    /// Where the all-reduce receives, kept between calls.
    inbox: Vec<u8>,
}

impl ProcessGroup {
    pub(super) fn root(spec: &WorldSpec, links: Vec<TcpStream>) -> Self {
        Self::new(spec, links)
    }

    pub(super) fn member(spec: &WorldSpec, link: TcpStream) -> Self {
        Self::new(spec, vec![link])
    }

    fn new(spec: &WorldSpec, links: Vec<TcpStream>) -> Self {
        for link in &links {
            // Best effort: without them a silent peer blocks instead of
            // timing out, but data still flows.
            let _ = link.set_read_timeout(Some(spec.timeout));
            let _ = link.set_write_timeout(Some(spec.timeout));
            let _ = link.set_nodelay(true);
        }
        Self {
            rank: spec.rank,
            world_size: spec.world_size,
            timeout: spec.timeout,
            links,
            inbox: Vec::new(),
        }
    }

    /// From now on, how long a collective waits for a silent rank (the
    /// rendezvous set it to [`WorldSpec::timeout`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        for link in &self.links {
            // Best effort, as in `new`.
            let _ = link.set_read_timeout(Some(timeout));
            let _ = link.set_write_timeout(Some(timeout));
        }
        self.timeout = timeout;
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Every rank's `bytes`, by rank, on every rank.
    pub fn all_gather(
        &mut self,
        bytes: &[u8],
        during: &'static str,
    ) -> Result<Vec<Vec<u8>>, DistributedError> {
        if self.rank == 0 {
            let mut all = vec![bytes.to_vec()];
            for index in 0..self.links.len() {
                let mut received = Vec::new();
                self.receive_from(index, &mut received, during)?;
                all.push(received);
            }
            let mut packed = Vec::new();
            for part in &all {
                packed.extend((part.len() as u64).to_le_bytes());
                packed.extend(part);
            }
            self.send_to_all(&packed, during)?;
            Ok(all)
        } else {
            self.send_to_root(bytes, during)?;
            let mut packed = Vec::new();
            self.receive_from_root(&mut packed, during)?;
            unpack(&packed, self.world_size).ok_or_else(|| DistributedError::Lost {
                rank: 0,
                during,
                message: "sent a malformed gather".into(),
            })
        }
    }

    /// Replaces `values` on every rank by their mean over the ranks (summed
    /// in rank order, then divided: the same bits everywhere).
    pub fn all_reduce_mean_f32(
        &mut self,
        values: &mut [f32],
        during: &'static str,
    ) -> Result<(), DistributedError> {
        self.all_reduce_mean(values, during)
    }

    /// [`Self::all_reduce_mean_f32`] for `f64` values (losses).
    pub fn all_reduce_mean_f64(
        &mut self,
        values: &mut [f64],
        during: &'static str,
    ) -> Result<(), DistributedError> {
        self.all_reduce_mean(values, during)
    }

    fn all_reduce_mean<T: Wire>(
        &mut self,
        values: &mut [T],
        during: &'static str,
    ) -> Result<(), DistributedError> {
        // One receive buffer for the run: a step's gradients are tens of
        // megabytes, which a fresh allocation would page in every time.
        let mut received = std::mem::take(&mut self.inbox);
        let result = self.all_reduce_mean_with(values, &mut received, during);
        self.inbox = received;
        result
    }

    fn all_reduce_mean_with<T: Wire>(
        &mut self,
        values: &mut [T],
        received: &mut Vec<u8>,
        during: &'static str,
    ) -> Result<(), DistributedError> {
        if self.rank == 0 {
            for index in 0..self.links.len() {
                self.receive_from(index, received, during)?;
                if received.len() != values.len() * T::SIZE {
                    let message = format!(
                        "sent {} values where rank 0 has {} (do the ranks run the same config?)",
                        received.len() / T::SIZE,
                        values.len()
                    );
                    self.abort(&format!("rank {} {message}", index + 1));
                    return Err(DistributedError::Lost {
                        rank: index + 1,
                        during,
                        message,
                    });
                }
                for (value, bytes) in values.iter_mut().zip(received.chunks_exact(T::SIZE)) {
                    *value = value.add(T::read(bytes));
                }
            }
            let count = T::from_count(self.world_size);
            values.iter_mut().for_each(|v| *v = v.div(count));
            self.send_to_all(bytemuck::cast_slice(values), during)
        } else {
            self.send_to_root(bytemuck::cast_slice(values), during)?;
            self.receive_from_root(received, during)?;
            if received.len() != values.len() * T::SIZE {
                return Err(DistributedError::Lost {
                    rank: 0,
                    during,
                    message: "sent a mean of another length".into(),
                });
            }
            bytemuck::cast_slice_mut::<T, u8>(values).copy_from_slice(received);
            Ok(())
        }
    }

    /// Rank 0's `bytes` on every rank (the others' argument is ignored).
    pub fn broadcast(
        &mut self,
        bytes: Vec<u8>,
        during: &'static str,
    ) -> Result<Vec<u8>, DistributedError> {
        if self.rank == 0 {
            self.send_to_all(&bytes, during)?;
            Ok(bytes)
        } else {
            let mut received = Vec::new();
            self.receive_from_root(&mut received, during)?;
            Ok(received)
        }
    }

    /// Returns when every rank has called it.
    pub fn barrier(&mut self, during: &'static str) -> Result<(), DistributedError> {
        self.all_gather(&[], during).map(drop)
    }

    /// Rank `index + 1`'s next frame, into `bytes`.
    fn receive_from(
        &mut self,
        index: usize,
        bytes: &mut Vec<u8>,
        during: &'static str,
    ) -> Result<(), DistributedError> {
        let rank = index + 1;
        match read_frame(&mut self.links[index], bytes) {
            Ok(DATA) => Ok(()),
            Ok(_) => {
                let message = String::from_utf8_lossy(bytes).into_owned();
                self.abort(&format!("rank {rank} stopped: {message}"));
                Err(DistributedError::Lost {
                    rank,
                    during,
                    message: format!("it stopped: {message}"),
                })
            }
            Err(e) => {
                let message = self.describe(&e);
                self.abort(&format!("rank {rank} was lost during {during}: {message}"));
                Err(DistributedError::Lost {
                    rank,
                    during,
                    message,
                })
            }
        }
    }

    /// Rank 0's next frame, into `bytes`.
    fn receive_from_root(
        &mut self,
        bytes: &mut Vec<u8>,
        during: &'static str,
    ) -> Result<(), DistributedError> {
        match read_frame(&mut self.links[0], bytes) {
            Ok(DATA) => Ok(()),
            Ok(_) => Err(DistributedError::Aborted(
                String::from_utf8_lossy(bytes).into_owned(),
            )),
            Err(e) => Err(DistributedError::Lost {
                rank: 0,
                during,
                message: self.describe(&e),
            }),
        }
    }

    fn send_to_root(&mut self, bytes: &[u8], during: &'static str) -> Result<(), DistributedError> {
        let Err(e) = write_frame(&mut self.links[0], DATA, bytes) else {
            return Ok(());
        };
        // Rank 0 may have closed after telling this rank why: say that.
        let _ = self.links[0].set_read_timeout(Some(Duration::from_secs(1)));
        let mut message = Vec::new();
        if let Ok(ABORT) = read_frame(&mut self.links[0], &mut message) {
            return Err(DistributedError::Aborted(
                String::from_utf8_lossy(&message).into_owned(),
            ));
        }
        Err(DistributedError::Lost {
            rank: 0,
            during,
            message: self.describe(&e),
        })
    }

    fn send_to_all(&mut self, bytes: &[u8], during: &'static str) -> Result<(), DistributedError> {
        for index in 0..self.links.len() {
            if let Err(e) = write_frame(&mut self.links[index], DATA, bytes) {
                let rank = index + 1;
                let message = self.describe(&e);
                self.abort(&format!("rank {rank} was lost during {during}: {message}"));
                return Err(DistributedError::Lost {
                    rank,
                    during,
                    message,
                });
            }
        }
        Ok(())
    }

    /// Tells every rank that can still hear it to stop (rank 0), or tells
    /// rank 0 that this rank stops (the others), with `reason`.
    pub fn abort(&mut self, reason: &str) {
        for link in &mut self.links {
            let _ = write_frame(link, ABORT, reason.as_bytes());
        }
    }

    fn describe(&self, e: &std::io::Error) -> String {
        if is_timeout(e) {
            format!("silent for {} s", self.timeout.as_secs())
        } else if matches!(
            e.kind(),
            // Read to the end, or reset with data unread, or written to
            // after the close: a process that ended, as the kernel saw it.
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ) {
            "closed its connection (the process ended)".into()
        } else {
            e.to_string()
        }
    }
}

fn write_frame(stream: &mut TcpStream, kind: u8, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = [0u8; 9];
    header[0] = kind;
    header[1..].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    stream.write_all(&header)?;
    stream.write_all(bytes)?;
    stream.flush()
}

/// Reads a frame into `bytes` (reusing its memory); returns its kind.
fn read_frame(stream: &mut TcpStream, bytes: &mut Vec<u8>) -> std::io::Result<u8> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header)?;
    let len = u64::from_le_bytes(header[1..].try_into().expect("8 bytes")) as usize;
    bytes.resize(len, 0);
    stream.read_exact(bytes)?;
    Ok(header[0])
}

/// Splits `world_size` length-prefixed parts.
fn unpack(mut packed: &[u8], world_size: usize) -> Option<Vec<Vec<u8>>> {
    let mut parts = Vec::with_capacity(world_size);
    for _ in 0..world_size {
        let len = u64::from_le_bytes(packed.get(..8)?.try_into().ok()?) as usize;
        parts.push(packed.get(8..8 + len)?.to_vec());
        packed = &packed[8 + len..];
    }
    Some(parts)
}

// Buffers go on the wire as they lie in memory, which the frame format
// defines as little-endian.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the collective's wire format is little-endian"
);

/// A number the collective reduces.
trait Wire: bytemuck::Pod {
    const SIZE: usize;
    fn read(bytes: &[u8]) -> Self;
    fn add(self, other: Self) -> Self;
    fn div(self, other: Self) -> Self;
    fn from_count(count: usize) -> Self;
}

macro_rules! wire {
    ($t:ty) => {
        impl Wire for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("sized chunk"))
            }
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn div(self, other: Self) -> Self {
                self / other
            }
            fn from_count(count: usize) -> Self {
                count as $t
            }
        }
    };
}
wire!(f32);
wire!(f64);
