//! The gradient all-reduce of a GPU run over NCCL (feature `cuda`), through
//! cudarc's communicator: rank 0 creates the unique id, the rendezvous hands
//! it to every rank, and each joins one communicator on its GPU.
//!
//! burn 0.21 does not hand a tensor's device buffer to another CUDA library,
//! so the flattened gradient is staged: copied into a cudarc buffer on the
//! rank's GPU, averaged in place by NCCL (`ncclAvg`), and copied back. That
//! costs two copies through host memory per step beside the all-reduce
//! itself; NCCL then carries the traffic between GPUs and machines (NVLink,
//! InfiniBand) as it does for PyTorch.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::DistributedError;

/// One rank's NCCL communicator.
pub struct NcclGradients {
    comm: Comm,
    stream: Arc<CudaStream>,
}

/// Runs `f`, turning a failure to load the CUDA or NCCL libraries (which
/// cudarc reports by panicking) into an error.
fn loading<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, DistributedError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!(
                "the CUDA/NCCL libraries could not be loaded: {message}"
            ))
        })
        .map_err(|message| DistributedError::Nccl(format!("{what}: {message}")))
}

impl NcclGradients {
    /// A new communicator id (rank 0), as the bytes the rendezvous hands out.
    pub fn unique_id() -> Result<Vec<u8>, DistributedError> {
        let id = loading("creating the NCCL id", || {
            Id::new().map_err(|e| format!("{e:?}"))
        })?;
        Ok(id.internal().iter().map(|&c| c as u8).collect())
    }

    /// Joins the communicator `id` names as `rank` of `world_size`, on CUDA
    /// device `ordinal`. Returns once every rank has joined.
    pub fn join(
        id: &[u8],
        rank: usize,
        world_size: usize,
        ordinal: usize,
    ) -> Result<Self, DistributedError> {
        let internal: [core::ffi::c_char; 128] = id
            .iter()
            .map(|&b| b as core::ffi::c_char)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| {
                DistributedError::Nccl(format!("an NCCL id of {} bytes, not 128", id.len()))
            })?;
        loading("joining the NCCL communicator", || {
            let context =
                CudaContext::new(ordinal).map_err(|e| format!("cuda:{ordinal}: {e:?}"))?;
            let stream = context.default_stream();
            let comm = Comm::from_rank(stream.clone(), rank, world_size, Id::uninit(internal))
                .map_err(|e| format!("{e:?}"))?;
            Ok(Self { comm, stream })
        })
    }

    /// Replaces `values` by their mean over the ranks.
    pub fn all_reduce_mean(&self, values: &mut [f32]) -> Result<(), DistributedError> {
        let failed = |e: String| DistributedError::Nccl(format!("gradient all-reduce: {e}"));
        let mut buffer = self
            .stream
            .clone_htod(&*values)
            .map_err(|e| failed(format!("{e:?}")))?;
        self.comm
            .all_reduce_in_place(&mut buffer, &ReduceOp::Avg)
            .map_err(|e| failed(format!("{e:?}")))?;
        self.stream
            .memcpy_dtoh(&buffer, values)
            .map_err(|e| failed(format!("{e:?}")))?;
        self.stream
            .synchronize()
            .map_err(|e| failed(format!("{e:?}")))
    }
}
