//! What a rank gets of its machine, by the kind of its device: CPU ranks
//! share the cores ([`threads_per_rank`], [`Launch::share_cores`]); a GPU
//! rank all-reduces its gradients over NCCL on its device, a CPU rank
//! through the rendezvous links ([`WorldSpec::set_device`]); a wgpu device
//! has no collective and trains alone.

use super::{Launch, WorldSpec};
use crate::device::{DeviceError, DeviceSpec};

/// Threads (`RAYON_NUM_THREADS`) for each of `nproc` ranks on `device`, on
/// a machine of `cores` cores: CPU ranks share the cores equally, at least
/// one thread each, instead of each starting a thread per core; a GPU rank
/// keeps rayon's default (`None`), its host work being light.
pub fn threads_per_rank(device: DeviceSpec, nproc: usize, cores: usize) -> Option<usize> {
    match device {
        DeviceSpec::Cpu => Some((cores / nproc.max(1)).max(1)),
        DeviceSpec::Cuda(_) | DeviceSpec::Wgpu(_) => None,
    }
}

impl Launch {
    /// Sets [`Launch::threads_per_rank`] for this machine's ranks on
    /// `device` (one kind for all), sharing the cores this process may use.
    pub fn share_cores(&mut self, device: DeviceSpec) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        self.threads_per_rank = threads_per_rank(device, self.nproc_per_node, cores);
    }
}

impl WorldSpec {
    /// This rank trains on `device`: on a CUDA device its gradients are
    /// all-reduced over NCCL there ([`WorldSpec::nccl_device`]), on the CPU
    /// through the rendezvous links. A wgpu device has neither: one of
    /// several ranks on it is [`DeviceError::NoCollective`].
    pub fn set_device(&mut self, device: DeviceSpec) -> Result<(), DeviceError> {
        self.nccl_device = match device {
            DeviceSpec::Cuda(ordinal) => Some(ordinal),
            DeviceSpec::Cpu => None,
            DeviceSpec::Wgpu(_) if self.world_size > 1 => {
                return Err(DeviceError::NoCollective(device));
            }
            DeviceSpec::Wgpu(_) => None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::DEFAULT_TIMEOUT;

    #[test]
    fn cpu_ranks_share_the_cores_and_gpu_ranks_keep_the_default() {
        assert_eq!(threads_per_rank(DeviceSpec::Cpu, 2, 16), Some(8));
        assert_eq!(threads_per_rank(DeviceSpec::Cpu, 3, 16), Some(5));
        assert_eq!(threads_per_rank(DeviceSpec::Cpu, 1, 16), Some(16));
        // More ranks than cores: one thread each, never none.
        assert_eq!(threads_per_rank(DeviceSpec::Cpu, 4, 2), Some(1));
        assert_eq!(threads_per_rank(DeviceSpec::Cuda(0), 8, 64), None);
    }

    #[test]
    fn a_launch_shares_this_machines_cores_between_cpu_ranks() {
        let mut launch = Launch::new(2, 1, 0, None, Some(29517)).unwrap();
        launch.share_cores(DeviceSpec::Cuda(1));
        assert_eq!(launch.threads_per_rank, None);
        launch.share_cores(DeviceSpec::Cpu);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(launch.threads_per_rank, Some((cores / 2).max(1)));
    }

    #[test]
    fn a_gpu_rank_all_reduces_over_nccl_on_its_device() {
        let mut spec = WorldSpec {
            rank: 1,
            world_size: 2,
            local_rank: 1,
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            timeout: DEFAULT_TIMEOUT,
            nccl_device: None,
        };
        spec.set_device(DeviceSpec::Cuda(3)).unwrap();
        assert_eq!(spec.nccl_device, Some(3));
        spec.set_device(DeviceSpec::Cpu).unwrap();
        assert_eq!(spec.nccl_device, None);
        let wgpu = DeviceSpec::Wgpu(crate::device::WgpuAdapter::Discrete(1));
        let err = spec.set_device(wgpu).unwrap_err().to_string();
        assert!(
            err.starts_with("wgpu:1 cannot be one of several ranks"),
            "{err}"
        );
        spec.world_size = 1;
        spec.set_device(wgpu).unwrap();
        assert_eq!(spec.nccl_device, None);
    }
}
