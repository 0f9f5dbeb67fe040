//! NCCL (loaded at run time, like the rest of CUDA) for the ranks of a data-parallel run: the
//! gradients averaged on the GPUs, in stream order with the step's kernels, with no copy to the
//! host. The ranks agree on a communicator id through their own channel (bakallm's hub);
//! [`configure`] hands it here and the first [`all_reduce_mean`] creates the communicator on
//! cubecl's device thread, where the GPU's context is current.

use crate::nvrtc::enqueue_all;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::CudaRuntime;
use cudarc::nccl::{result as nr, sys as ns};
use std::sync::{Mutex, OnceLock};

type T = CubeTensor<CudaRuntime>;

/// Bytes of NCCL's communicator id.
pub const ID_BYTES: usize = 128;

/// What [`configure`] was given: (rank, ranks, id).
static SETUP: OnceLock<(usize, usize, [u8; ID_BYTES])> = OnceLock::new();

/// The communicator, once made (its pointer as an integer: NCCL's handle is used from cubecl's
/// device thread only).
static COMM: Mutex<Option<usize>> = Mutex::new(None);

/// Runs `f`, which loads a library through cudarc, with cudarc's panic for a missing library
/// turned into `missing` (one line, no panic message printed).
fn loaded<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe, missing: &str) -> Result<R, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    r.map_err(|_| missing.to_string())
}

const NO_NCCL: &str = "NCCL's library (libnccl.so.2) could not be loaded: install NCCL (e.g. pip install nvidia-nccl-cu12 and add its lib folder to LD_LIBRARY_PATH), or set BAKA_COLLECTIVE=host";

/// Whether libnccl loads here (every rank checks before the first collective).
pub fn available() -> Result<(), String> {
    loaded(nr::get_nccl_version, NO_NCCL)?.map(|_| ()).map_err(|e| format!("ncclGetVersion: {e:?}"))
}

/// The GPUs this process sees.
pub fn gpu_count() -> Result<usize, String> {
    let n = loaded(
        || {
            cudarc::driver::result::init()?;
            cudarc::driver::result::device::get_count()
        },
        "the CUDA driver (libcuda.so) could not be loaded",
    )?;
    n.map(|n| n as usize).map_err(|e| format!("cuDeviceGetCount: {e:?}"))
}

/// A new communicator id (rank 0 makes it, the others receive it). Fails with a sentence when
/// libnccl cannot be loaded.
pub fn unique_id() -> Result<[u8; ID_BYTES], String> {
    let id = loaded(nr::get_uniqueid, NO_NCCL)?.map_err(|e| format!("ncclGetUniqueId: {e:?}"))?;
    Ok(std::array::from_fn(|i| id.internal[i] as u8))
}

/// Sets this process's rank, the number of ranks and their shared id; the communicator is made
/// at the first all-reduce.
pub fn configure(rank: usize, ranks: usize, id: [u8; ID_BYTES]) {
    let _ = SETUP.set((rank, ranks, id));
}

/// Whether [`configure`] was called (the GPU path is in use).
pub fn configured() -> bool {
    SETUP.get().is_some()
}

/// The communicator (made now if it was not): on cubecl's device thread.
fn comm() -> Result<ns::ncclComm_t, String> {
    let mut c = COMM.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = *c {
        return Ok(p as ns::ncclComm_t);
    }
    let (rank, ranks, id) = SETUP.get().ok_or("nccl: all_reduce before configure")?;
    let mut uid = ns::ncclUniqueId { internal: [0; ID_BYTES] };
    for (d, s) in uid.internal.iter_mut().zip(id) {
        *d = *s as _;
    }
    let mut comm = std::ptr::null_mut();
    unsafe { nr::comm_init_rank(&mut comm, *ranks as i32, uid, *rank as i32) }.map_err(|e| format!("ncclCommInitRank (rank {rank} of {ranks}): {e:?}"))?;
    *c = Some(comm as usize);
    Ok(comm)
}

fn nccl_type(dt: DType) -> ns::ncclDataType_t {
    match dt {
        DType::F32 | DType::Flex32 => ns::ncclDataType_t::ncclFloat32,
        DType::BF16 => ns::ncclDataType_t::ncclBfloat16,
        DType::F16 => ns::ncclDataType_t::ncclFloat16,
        other => panic!("nccl all_reduce: {other:?} tensors are not averaged"),
    }
}

/// Each tensor's mean over the ranks (one NCCL group, in stream order): in place where this is
/// the tensor's only owner (a step's gradients), else into a new tensor.
pub fn all_reduce_mean(ts: Vec<T>, empty: impl Fn(&T) -> T) -> Vec<T> {
    let ins: Vec<T> = ts.into_iter().map(crate::nvrtc::compact).collect();
    let outs: Vec<T> = ins.iter().map(|t| if t.can_mut() { t.clone() } else { empty(t) }).collect();
    let jobs: Vec<(usize, ns::ncclDataType_t)> = ins.iter().map(|t| (t.meta.shape().num_elements(), nccl_type(t.dtype))).collect();
    let all: Vec<&T> = ins.iter().chain(&outs).collect();
    enqueue_all(&all, move |p, stream| {
        let comm = comm().unwrap_or_else(|e| panic!("{e}"));
        let n = jobs.len();
        nr::group_start().expect("ncclGroupStart");
        for (i, (count, dt)) in jobs.into_iter().enumerate() {
            unsafe { nr::all_reduce(p[i] as _, p[n + i] as _, count, dt, ns::ncclRedOp_t::ncclAvg, comm, stream as _) }.unwrap_or_else(|e| panic!("ncclAllReduce: {e:?}"));
        }
        nr::group_end().expect("ncclGroupEnd");
    });
    outs
}
