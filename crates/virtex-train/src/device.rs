//! Choosing the backend once, at the edge: `--device cpu`, `--device cuda[:N]`
//! or `--device wgpu[:N|:cpu]`.
//!
//! Models are generic over `B: Backend`; a [`BackendTask`] is the generic work,
//! and [`DeviceSpec::dispatch`] instantiates it with the concrete backend.

use core::fmt;
use core::str::FromStr;

use virtex_vision::{AutodiffVisionBackend, Precision};

/// The CPU backend: burn's pure-Rust `Flex` (see docs/stack.md for the
/// measured comparison with `NdArray`).
pub type CpuBackend = burn::backend::Autodiff<burn_flex::Flex>;

/// The CUDA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// The wgpu backend (feature `wgpu`): Vulkan, Metal or DX12 through WGSL
/// shaders, the same CubeCL kernels as [`CudaBackend`].
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Autodiff<burn::backend::Wgpu>;

/// Which adapter `--device wgpu…` asks wgpu for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WgpuAdapter {
    /// `wgpu`: wgpu's choice, a high-power GPU first; the environment
    /// variable `CUBECL_WGPU_DEFAULT_DEVICE` (`Cpu`, `DiscreteGpu(1)`, …)
    /// overrides it.
    Default,
    /// `wgpu:N`: the N-th discrete GPU.
    Discrete(usize),
    /// `wgpu:cpu`: a software adapter (Mesa's lavapipe, CI's GPU).
    Cpu,
}

/// Where to run, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU ([`CpuBackend`]).
    #[default]
    Cpu,
    /// CUDA device with this ordinal.
    Cuda(usize),
    /// A wgpu adapter.
    Wgpu(WgpuAdapter),
}

/// Work that runs on whichever autodiff backend the user picked.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B`.
    fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> Self::Output;
}

/// `--device cuda:0,cuda:1`: one or more devices of one kind. A list of
/// several is a data-parallel run of one process per device
/// ([`crate::distributed::Launch`]), each taking its entry by local rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceList(pub Vec<DeviceSpec>);

impl DeviceList {
    /// The device of the process with local rank `local_rank`: its entry in
    /// the list, or the one device a list of one names (every rank on it,
    /// as CPU ranks share the CPU).
    pub fn for_local_rank(&self, local_rank: usize) -> Result<DeviceSpec, DeviceError> {
        match self.0.as_slice() {
            [only] => Ok(*only),
            list => list
                .get(local_rank)
                .copied()
                .ok_or_else(|| DeviceError::NoDeviceForRank {
                    local_rank,
                    list: self.to_string(),
                }),
        }
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for DeviceList {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let devices = s
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<DeviceSpec>, _>>()?;
        let mixed = devices
            .iter()
            .any(|d| std::mem::discriminant(d) != std::mem::discriminant(&devices[0]));
        if mixed {
            return Err(DeviceError::Mixed(s.to_string()));
        }
        Ok(Self(devices))
    }
}

/// A device the build cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not `cpu`, `cuda[:N]` or `wgpu[:N|:cpu]`.
    #[error(
        "invalid device '{0}': expected 'cpu', 'cuda', 'cuda:N', 'wgpu', 'wgpu:N' or 'wgpu:cpu'"
    )]
    Invalid(String),
    /// CUDA requested from a build without the `cuda` feature.
    #[error(
        "device '{0}' needs the CUDA backend, which this build lacks: \
         use `cargo xtask-cuda …` (xtask built with `--features cuda`)"
    )]
    CudaNotBuilt(DeviceSpec),
    /// wgpu requested from a build without the `wgpu` feature.
    #[error(
        "device '{0}' needs the wgpu backend, which this build lacks: \
         use `cargo xtask-wgpu …` (xtask built with `--features wgpu`)"
    )]
    WgpuNotBuilt(DeviceSpec),
    /// `AMP: true` on wgpu, whose shading language has no bf16.
    #[error(
        "AMP: true is not supported on {0}: mixed precision computes in bf16, \
         which WGSL (wgpu's shading language) does not have; set AMP: false"
    )]
    AmpUnsupported(DeviceSpec),
    /// Several ranks on wgpu, which has no collective.
    #[error(
        "{0} cannot be one of several ranks: gradients are averaged over NCCL \
         (CUDA) or TCP (CPU), and wgpu ranks have neither; train on one wgpu device"
    )]
    NoCollective(DeviceSpec),
    /// A list naming devices of different kinds together.
    #[error("invalid device list '{0}': all devices must be of one kind (cpu, cuda:N or wgpu:N)")]
    Mixed(String),
    /// A process whose local rank has no entry in the device list.
    #[error(
        "LOCAL_RANK={local_rank} but --device {list} names no device for it \
         (one device per process on the machine, or one for all)"
    )]
    NoDeviceForRank {
        /// The process's rank on its machine.
        local_rank: usize,
        /// The list, as given.
        list: String,
    },
}

impl DeviceSpec {
    /// What `AMP: amp` means on this device: the products in bf16 on CUDA
    /// (autocast's mixed precision), f32 on the CPU, whose backend has no
    /// bf16 arithmetic (it would convert to f32 and back around every
    /// product: slower, and no less memory), as PyTorch's autocast for CUDA
    /// leaves CPU code alone. On wgpu `AMP: true` is an error: WGSL has no
    /// bf16, and f16 products without loss scaling would underflow the
    /// gradients (docs/deviations.md).
    pub fn precision(self, amp: bool) -> Result<Precision, DeviceError> {
        match self {
            DeviceSpec::Cuda(_) if amp => Ok(Precision::Bf16),
            DeviceSpec::Wgpu(_) if amp => Err(DeviceError::AmpUnsupported(self)),
            DeviceSpec::Cuda(_) | DeviceSpec::Wgpu(_) | DeviceSpec::Cpu => Ok(Precision::F32),
        }
    }

    /// Runs `task` on this device's backend.
    pub fn dispatch<T: BackendTask>(self, task: T) -> Result<T::Output, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(task.run::<CpuBackend>(Default::default())),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => {
                Ok(task.run::<CudaBackend>(burn::backend::cuda::CudaDevice::new(index)))
            }
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => Err(DeviceError::CudaNotBuilt(self)),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu(adapter) => {
                use burn::backend::wgpu::WgpuDevice;
                let device = match adapter {
                    WgpuAdapter::Default => WgpuDevice::DefaultDevice,
                    WgpuAdapter::Discrete(index) => WgpuDevice::DiscreteGpu(index),
                    WgpuAdapter::Cpu => WgpuDevice::Cpu,
                };
                Ok(task.run::<WgpuBackend>(device))
            }
            #[cfg(not(feature = "wgpu"))]
            DeviceSpec::Wgpu(_) => Err(DeviceError::WgpuNotBuilt(self)),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(index) => write!(f, "cuda:{index}"),
            DeviceSpec::Wgpu(WgpuAdapter::Default) => f.write_str("wgpu"),
            DeviceSpec::Wgpu(WgpuAdapter::Discrete(index)) => write!(f, "wgpu:{index}"),
            DeviceSpec::Wgpu(WgpuAdapter::Cpu) => f.write_str("wgpu:cpu"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            "wgpu" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Default)),
            "wgpu:cpu" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Cpu)),
            _ => {
                let index = |prefix| s.strip_prefix(prefix).and_then(|n| n.parse().ok());
                index("cuda:")
                    .map(DeviceSpec::Cuda)
                    .or_else(|| index("wgpu:").map(|i| DeviceSpec::Wgpu(WgpuAdapter::Discrete(i))))
                    .ok_or_else(|| DeviceError::Invalid(s.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_lists() {
        let list: DeviceList = "cuda:0,cuda:2".parse().unwrap();
        assert_eq!(list.0, [DeviceSpec::Cuda(0), DeviceSpec::Cuda(2)]);
        assert_eq!(list.to_string(), "cuda:0,cuda:2");
        assert_eq!("cpu".parse::<DeviceList>().unwrap().0, [DeviceSpec::Cpu]);
        let err = "cpu,cuda:1".parse::<DeviceList>().unwrap_err();
        assert!(err.to_string().contains("one kind"), "{err}");
        assert!("cuda:0,gpu".parse::<DeviceList>().is_err());
    }

    #[test]
    fn each_local_rank_takes_its_device() {
        let list: DeviceList = "cuda:0,cuda:2".parse().unwrap();
        assert_eq!(list.for_local_rank(1).unwrap(), DeviceSpec::Cuda(2));
        let err = list.for_local_rank(2).unwrap_err().to_string();
        assert!(
            err.starts_with("LOCAL_RANK=2 but --device cuda:0,cuda:2"),
            "{err}"
        );
        let cpu: DeviceList = "cpu".parse().unwrap();
        assert_eq!(cpu.for_local_rank(3).unwrap(), DeviceSpec::Cpu);
    }

    #[test]
    fn amp_means_bf16_products_on_cuda_only() {
        let (cuda, cpu) = (DeviceSpec::Cuda(1), DeviceSpec::Cpu);
        assert_eq!(cuda.precision(true).unwrap(), Precision::Bf16);
        assert_eq!(cuda.precision(false).unwrap(), Precision::F32);
        assert_eq!(cpu.precision(true).unwrap(), Precision::F32);
    }

    #[test]
    fn amp_on_wgpu_is_refused_by_name() {
        let wgpu = DeviceSpec::Wgpu(WgpuAdapter::Cpu);
        assert_eq!(wgpu.precision(false).unwrap(), Precision::F32);
        let err = wgpu.precision(true).unwrap_err().to_string();
        assert!(
            err.starts_with("AMP: true is not supported on wgpu:cpu"),
            "{err}"
        );
        assert!(err.contains("bf16"), "{err}");
    }

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for (name, adapter) in [
            ("wgpu", WgpuAdapter::Default),
            ("wgpu:2", WgpuAdapter::Discrete(2)),
            ("wgpu:cpu", WgpuAdapter::Cpu),
        ] {
            let device: DeviceSpec = name.parse().unwrap();
            assert_eq!(device, DeviceSpec::Wgpu(adapter));
            assert_eq!(device.to_string(), name);
        }
        for bad in [
            "gpu", "cuda:", "cuda:x", "CPU", "wgpu:", "wgpu:gpu", "vulkan",
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    use burn::tensor::ElementConversion;

    struct Sum;
    impl BackendTask for Sum {
        type Output = f32;
        fn run<B: AutodiffVisionBackend>(self, device: B::Device) -> f32 {
            burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0, 3.5], &device)
                .sum()
                .into_scalar()
                .elem::<f32>()
        }
    }

    #[test]
    fn dispatches_to_the_cpu_backend() {
        assert_eq!(DeviceSpec::Cpu.dispatch(Sum).unwrap(), 6.5);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(1).dispatch(Sum).unwrap_err();
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_without_the_feature_is_a_clear_error() {
        let err = DeviceSpec::Wgpu(WgpuAdapter::Default)
            .dispatch(Sum)
            .unwrap_err();
        assert!(err.to_string().contains("--features wgpu"), "{err}");
    }
}
