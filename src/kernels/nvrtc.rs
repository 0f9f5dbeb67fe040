//! Foreign GPU work in cubecl's stream order: raw device pointers of `CubeTensor`s ([`enqueue`]),
//! and bakallm's own kernels (`cuda/*.cu`), compiled once per CUDA context with NVRTC (as
//! cubecl compiles its own) and launched on the stream the output lives on ([`launch`]).

use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::cuda::CudaRuntime;
use cudarc::driver::{result as dr, sys as ds};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Mutex, OnceLock};

/// `t` with compact row-major strides (a copy only when it is a view).
pub fn compact(t: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
    let row_major = |t: &CubeTensor<CudaRuntime>| {
        let (shape, strides) = (t.meta.shape(), t.meta.strides());
        let mut want = 1;
        (0..shape.len()).rev().all(|i| {
            let ok = shape[i] == 1 || strides[i] == want;
            want *= shape[i];
            ok
        })
    };
    if row_major(&t) {
        return t;
    }
    let t = into_contiguous(t);
    assert!(row_major(&t), "into_contiguous gave strides {:?} for shape {:?}", t.meta.strides(), t.meta.shape());
    t
}

/// Runs `f(pointers, stream)` with the device pointers (offsets included) of `tensors`, on the
/// stream of the last one (the freshly allocated output, so this thread's stream). Buffers that
/// live on another stream (written by another thread) make it sync the host before and after.
pub fn enqueue<const N: usize, T>(tensors: [&CubeTensor<CudaRuntime>; N], f: impl FnOnce([u64; N], ds::CUstream) -> T) -> T {
    enqueue_all(&tensors, |p, stream| f(std::array::from_fn(|i| p[i]), stream))
}

/// [`enqueue`] over a slice, for operand counts known only at run time (optional operands, lists).
pub fn enqueue_all<T>(tensors: &[&CubeTensor<CudaRuntime>], f: impl FnOnce(&[u64], ds::CUstream) -> T) -> T {
    let client = &tensors.last().expect("enqueue: no tensors").client;
    let res: Vec<_> = tensors.iter().map(|t| client.get_resource(t.handle.clone()).expect("cubecl get_resource")).collect();
    let stream = res[res.len() - 1].resource().stream;
    let foreign = res.iter().any(|r| r.resource().stream != stream);
    if foreign {
        cubecl::future::block_on(client.sync()).expect("cubecl sync");
    }
    // the managed resources stay alive until the work is enqueued; stream order does the rest
    let ptrs: Vec<u64> = res.iter().map(|r| r.resource().ptr).collect();
    let out = f(&ptrs, stream);
    if foreign {
        cubecl::future::block_on(client.sync()).expect("cubecl sync");
    }
    out
}

/// A kernel argument, passed by value.
#[derive(Debug, Clone)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
    /// A struct passed by value (its bytes, laid out as the kernel declares it).
    Bytes(Vec<u8>),
}

/// bakallm's kernels, one NVRTC module: common.cu first (the shared helpers), then one file per concept.
const SOURCE: &str = concat!(
    include_str!("cuda/common.cu"),
    "\n",
    include_str!("cuda/attention.cu"),
    "\n",
    include_str!("cuda/tokens.cu"),
    "\n",
    include_str!("cuda/norm.cu"),
    "\n",
    include_str!("cuda/gate.cu"),
    "\n",
    include_str!("cuda/optim.cu")
);

/// The kernel `name` of `cuda/*.cu` in the current context (compiled on first use).
fn function(name: &str) -> ds::CUfunction {
    // per context: module, and the functions looked up so far (raw handles as usize: Send)
    type Loaded = (usize, HashMap<String, usize>);
    static MODULES: OnceLock<Mutex<HashMap<usize, Loaded>>> = OnceLock::new();
    let ctx = current_context();
    let mut all = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let (module, fns) = all.entry(ctx as usize).or_insert_with(|| {
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE).unwrap_or_else(|e| panic!("NVRTC, src/kernels/cuda/*.cu: {e:?}"));
        let image = CString::new(ptx.to_src()).expect("PTX has no NUL");
        let module = unsafe { dr::module::load_data(image.as_ptr() as *const c_void) }.expect("cuModuleLoadData");
        (module as usize, HashMap::new())
    });
    let module = *module as ds::CUmodule;
    *fns.entry(name.to_string())
        .or_insert_with(|| unsafe { dr::module::get_function(module, CString::new(name).expect("kernel name")) }.unwrap_or_else(|e| panic!("kernel {name}: {e:?}")) as usize) as ds::CUfunction
}

/// The calling thread's CUDA context; binds device 0's primary context (cubecl's) if none is.
fn current_context() -> ds::CUcontext {
    if let Some(ctx) = dr::ctx::get_current().expect("cuCtxGetCurrent") {
        return ctx;
    }
    unsafe {
        let ctx = dr::primary_ctx::retain(dr::device::get(0).expect("cuDeviceGet")).expect("cuDevicePrimaryCtxRetain");
        dr::ctx::set_current(ctx).expect("cuCtxSetCurrent");
        ctx
    }
}

/// Launches kernel `name` with a 1-D grid on `stream`.
pub fn launch(name: &str, grid: u32, block: u32, stream: ds::CUstream, args: &[Arg]) {
    launch_shared(name, grid, block, 0, stream, args)
}

/// [`launch`] with `shared` bytes of dynamic shared memory.
pub fn launch_shared(name: &str, grid: u32, block: u32, shared: u32, stream: ds::CUstream, args: &[Arg]) {
    launch_with(name, (grid, 1), block, shared, stream, args)
}

/// [`launch`] with a 2-D grid `(x, y)`.
pub fn launch_2d(name: &str, grid: (u32, u32), block: u32, stream: ds::CUstream, args: &[Arg]) {
    launch_with(name, grid, block, 0, stream, args)
}

fn launch_with(name: &str, grid: (u32, u32), block: u32, shared: u32, stream: ds::CUstream, args: &[Arg]) {
    let f = function(name);
    // each value's bytes, 8-aligned; the kernel reads as many as its parameter's type has
    let mut values: Vec<Vec<u64>> = args
        .iter()
        .map(|a| {
            let bytes = match a {
                Arg::Ptr(p) => p.to_ne_bytes().to_vec(),
                Arg::I64(v) => v.to_ne_bytes().to_vec(),
                Arg::I32(v) => v.to_ne_bytes().to_vec(),
                Arg::F32(v) => v.to_ne_bytes().to_vec(),
                Arg::Bytes(b) => b.clone(),
            };
            let mut words = vec![0u64; bytes.len().div_ceil(8)];
            for (i, b) in bytes.iter().enumerate() {
                words[i / 8] |= (*b as u64) << (8 * (i % 8)); // little endian, as the GPU reads it
            }
            words
        })
        .collect();
    let mut params: Vec<*mut c_void> = values.iter_mut().map(|v| v.as_mut_ptr() as *mut c_void).collect();
    unsafe { dr::launch_kernel(f, (grid.0, grid.1, 1), (block, 1, 1), shared, stream, &mut params) }
        .unwrap_or_else(|e| panic!("launch {name} (grid {grid:?}, block {block}): {e:?}"));
}
