//! What the training loop asks of the other ranks: start from rank 0's
//! weights, average every step's loss and gradients, agree on when to stop,
//! and tell rank 0 where each rank's data stream stands. In a
//! single-process run every call is a no-op.

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use virtex_data::shards::StreamPosition;

use super::replica::{flatten_gradients, flatten_parameters, load_parameters};
use super::{DistributedError, ProcessGroup, WorldSpec, rendezvous};
use crate::step::StepGradients;

/// The other ranks of a data-parallel run, as the training loop sees them.
pub struct Replicas {
    group: Option<ProcessGroup>,
    /// The gradient all-reduce of a GPU run (`WorldSpec::nccl_device`).
    #[cfg(feature = "cuda")]
    nccl: Option<super::NcclGradients>,
}

impl Replicas {
    /// A single-process run.
    pub fn single() -> Self {
        Self {
            group: None,
            #[cfg(feature = "cuda")]
            nccl: None,
        }
    }

    /// Joins the run `spec` describes: the rendezvous, then, with
    /// [`WorldSpec::nccl_device`], the NCCL communicator whose id rank 0
    /// hands out through it. Without a spec, or for a world of one without
    /// NCCL, a single-process run; a world of one with NCCL still goes
    /// through the communicator (the check that NCCL's path gives the
    /// single-device losses on a one-GPU machine).
    pub fn join(spec: Option<&WorldSpec>) -> Result<Self, DistributedError> {
        let Some(spec) = spec.filter(|spec| spec.world_size > 1 || spec.nccl_device.is_some())
        else {
            return Ok(Self::single());
        };
        #[cfg(feature = "cuda")]
        {
            use super::NcclGradients;
            let (group, id) = rendezvous(spec, || match spec.nccl_device {
                Some(_) => NcclGradients::unique_id(),
                None => Ok(Vec::new()),
            })?;
            let nccl = match spec.nccl_device {
                Some(ordinal) => Some(NcclGradients::join(
                    &id,
                    spec.rank,
                    spec.world_size,
                    ordinal,
                )?),
                None => None,
            };
            Ok(Self {
                group: Some(group),
                nccl,
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            if spec.nccl_device.is_some() {
                return Err(DistributedError::NcclNotBuilt);
            }
            Ok(Self {
                group: Some(rendezvous(spec, || Ok(Vec::new()))?.0),
            })
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.as_ref().map_or(0, ProcessGroup::rank)
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.group.as_ref().map_or(1, ProcessGroup::world_size)
    }

    /// Whether this rank validates, logs and writes checkpoints (rank 0).
    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    /// `model` with rank 0's parameters and running statistics, as DDP
    /// broadcasts them when it wraps a model.
    pub fn sync_parameters<B: Backend, M: Module<B>>(
        &mut self,
        model: M,
    ) -> Result<M, DistributedError> {
        let Some(group) = &mut self.group else {
            return Ok(model);
        };
        let values = flatten_parameters(&model);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let received = group.broadcast(bytes, "the parameter broadcast")?;
        if group.rank() == 0 {
            return Ok(model);
        }
        if received.len() != values.len() * 4 {
            return Err(DistributedError::Rejected(format!(
                "rank 0's model has {} values, rank {}'s {} (do the ranks run the same config?)",
                received.len() / 4,
                group.rank(),
                values.len()
            )));
        }
        let values: Vec<f32> = received
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok(load_parameters(model, &values))
    }

    /// Checks that every rank holds the same `value` (say, the iteration it
    /// resumes from), naming the first rank that differs.
    pub fn agree(&mut self, what: &str, value: u64) -> Result<(), DistributedError> {
        let Some(group) = &mut self.group else {
            return Ok(());
        };
        let all = group.all_gather(&value.to_le_bytes(), "a consistency check")?;
        for (rank, bytes) in all.iter().enumerate() {
            let theirs = u64::from_le_bytes(bytes.as_slice().try_into().unwrap_or_default());
            if theirs != value {
                return Err(DistributedError::Rejected(format!(
                    "{what}: rank {rank} has {theirs}, rank {} has {value}",
                    group.rank()
                )));
            }
        }
        Ok(())
    }

    /// The step's gradients averaged over the ranks (its loss and terms
    /// stay this rank's until [`Replicas::mean`] averages the readings).
    pub fn average<B: AutodiffBackend, M: AutodiffModule<B>>(
        &mut self,
        mut step: StepGradients<B>,
        model: &M,
        device: &B::Device,
    ) -> Result<StepGradients<B>, DistributedError> {
        let Some(group) = &mut self.group else {
            return Ok(step);
        };
        let (mut values, layout) = flatten_gradients(model, &mut step.grads);
        // A GPU run's gradients go over NCCL, anything else through rank 0.
        #[cfg(feature = "cuda")]
        let reduced = match &self.nccl {
            Some(nccl) => {
                nccl.all_reduce_mean(&mut values)?;
                true
            }
            None => false,
        };
        #[cfg(not(feature = "cuda"))]
        let reduced = false;
        if !reduced {
            group.all_reduce_mean_f32(&mut values, "the gradient all-reduce")?;
        }
        step.grads = layout.unflatten::<B::InnerBackend>(&values, device);
        Ok(step)
    }

    /// `values` (the readings of the steps since the last log: losses, loss
    /// terms) averaged over the ranks, in one collective.
    pub fn mean(&mut self, values: &mut [f64]) -> Result<(), DistributedError> {
        match &mut self.group {
            Some(group) => group.all_reduce_mean_f64(values, "the loss all-reduce"),
            None => Ok(()),
        }
    }

    /// Whether any rank asks to stop (rank 0's dashboard, say).
    pub fn any(&mut self, flag: bool) -> Result<bool, DistributedError> {
        let Some(group) = &mut self.group else {
            return Ok(flag);
        };
        let all = group.all_gather(&[u8::from(flag)], "the stop check")?;
        Ok(all.iter().any(|bytes| bytes.first() == Some(&1)))
    }

    /// Every rank's shard-stream position, by rank (empty when the data is
    /// a COCO-format split, whose position follows from the iteration).
    pub fn positions(
        &mut self,
        position: Option<StreamPosition>,
    ) -> Result<Vec<StreamPosition>, DistributedError> {
        let Some(position) = position else {
            return Ok(Vec::new());
        };
        let Some(group) = &mut self.group else {
            return Ok(vec![position]);
        };
        let mut bytes = position.epoch.to_le_bytes().to_vec();
        bytes.extend(position.offset.to_le_bytes());
        let all = group.all_gather(&bytes, "the data-position gather")?;
        Ok(all
            .iter()
            .map(|b| StreamPosition {
                epoch: u64::from_le_bytes(b[..8].try_into().expect("16 bytes")),
                offset: u64::from_le_bytes(b[8..16].try_into().expect("16 bytes")),
            })
            .collect())
    }

    /// Tells the other ranks this one stops, and why.
    pub fn abort(&mut self, reason: &str) {
        if let Some(group) = &mut self.group {
            group.abort(reason);
        }
    }
}
