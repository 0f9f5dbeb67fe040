//! Backends: burn-flex on the CPU (default, tests) and CUDA behind the crate's `cuda` feature.

pub use crate::kernels::backend::*;

pub const NEEDS_CUDA: &str = "train.device = \"cuda\" needs a binary built with `cargo build --release --features cuda`";

/// Fails early (before any file is written) when `t.device` needs a feature this binary lacks;
/// on CUDA, chooses the memory pools before the device's first use.
pub fn check_device(t: &crate::config::TrainConfig) -> anyhow::Result<()> {
    if t.device.is_cuda() && !cfg!(feature = "cuda") {
        anyhow::bail!(NEEDS_CUDA);
    }
    #[cfg(feature = "cuda")]
    if t.device.is_cuda() {
        crate::kernels::env::check().map_err(anyhow::Error::msg)?;
        memory_pool(t.memory_pool)?;
    }
    Ok(())
}

/// Sets cubecl's CUDA memory pools (`train.memory_pool`), once per process: they are built when
/// the device is first used, and a later run with other pools would silently get the first ones.
#[cfg(feature = "cuda")]
fn memory_pool(kind: crate::config::MemoryPool) -> anyhow::Result<()> {
    use crate::config::MemoryPool;
    use cubecl::MemoryConfiguration;
    static CHOSEN: std::sync::Mutex<Option<MemoryPool>> = std::sync::Mutex::new(None);
    let mut chosen = CHOSEN.lock().unwrap();
    match chosen.as_ref() {
        Some(k) if *k == kind => return Ok(()),
        Some(k) => anyhow::bail!("train.memory_pool = {kind:?}: this process's CUDA pools are already {k:?} (one kind per process)"),
        None => {}
    }
    cubecl::cuda::set_memory_config(match kind {
        MemoryPool::Sliced => MemoryConfiguration::SubSlices,
        MemoryPool::Exclusive => MemoryConfiguration::ExclusivePages,
        MemoryPool::Shared => MemoryConfiguration::Custom { pool_options: shared_pools() },
    });
    *chosen = Some(kind);
    Ok(())
}

/// "shared": allocations up to 1 MiB share 32 MiB sliced pages, larger ones share 1 GiB pages
/// (first fit, freed neighbours merged), so the memory a tensor frees is reused by a tensor of any
/// size; larger ones get a page each (size classes 1.1× apart). cubecl's "sliced" pools grade
/// pages by slice size (up to a quarter of the GPU per page), and pages of one grade serve no
/// other: at the pristine shape they reserved 20–21 GiB for 9.4 GiB in use, these 12.3 GiB.
/// Pages are never freed, as in cubecl's: each step reuses them. `BAKA_PAGE_MIB` sets the shared
/// page size (default 1024), to measure how much of the reserved memory is page granularity.
#[cfg(feature = "cuda")]
fn shared_pools() -> Vec<cubecl::cuda::MemoryPoolOptions> {
    use cubecl::cuda::{MemoryPoolOptions, PoolType};
    const MIB: u64 = 1 << 20;
    let page = crate::kernels::env::PAGE_MIB.get() * MIB;
    let pool = |pool_type| MemoryPoolOptions { pool_type, dealloc_period: None };
    // the first as in cubecl's own: allocations of 0 bytes, which can't take an offset
    let mut pools = vec![
        pool(PoolType::ExclusivePages { max_alloc_size: 0 }),
        pool(PoolType::SlicedPages { page_size: 32 * MIB, max_slice_size: MIB }),
        pool(PoolType::SlicedPages { page_size: page, max_slice_size: page }),
    ];
    let mut max = page;
    while max < 1 << 40 {
        max = (max + max / 10).next_multiple_of(512);
        pools.push(pool(PoolType::ExclusivePages { max_alloc_size: max }));
    }
    pools
}

/// The GPU this process trains on: `LOCAL_RANK`'s among several ranks (`crate::dist`), else GPU 0.
#[cfg(feature = "cuda")]
pub fn cuda_device() -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice::new(crate::dist::gpu_index())
}

/// Runs `$body` with `$B` bound to the backend named by `$device` ("cpu" or "cuda"): `$cpu` or
/// `$gpu` (the latter only in a build with the `cuda` feature), and `$dev` to its device.
#[macro_export]
macro_rules! with_backend {
    ($device:expr, $cpu:ty, $gpu:ty, |$B:ident, $dev:ident| $body:expr) => {{
        match $device {
            $crate::config::Device::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    type $B = $gpu;
                    let $dev = $crate::backend::cuda_device();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    anyhow::bail!($crate::backend::NEEDS_CUDA)
                }
            }
            $crate::config::Device::Cpu => {
                type $B = $cpu;
                let $dev = burn::backend::flex::FlexDevice;
                $body
            }
        }
    }};
}

/// [`with_backend!`] with the training (autodiff) backends; a generic function is the usual body.
#[macro_export]
macro_rules! with_train_backend {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::with_backend!($device, $crate::backend::CpuTrain, $crate::backend::GpuTrain, |$B, $dev| $body)
    };
}

/// [`with_backend!`] with the inference backends (evaluation: no autodiff).
#[macro_export]
macro_rules! with_infer_backend {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::with_backend!($device, $crate::backend::Cpu, $crate::backend::Gpu, |$B, $dev| $body)
    };
}
