//! Foreign GPU work in cubecl's stream order: raw device pointers of `CubeTensor`s ([`enqueue`]),
//! and bakallm's own kernels (`cuda/*.cu`), compiled once per CUDA context with NVRTC (as
//! cubecl compiles its own) and launched on the stream the output lives on ([`launch`]).

use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::cuda::CudaRuntime;
use cudarc::driver::{result as dr, sys as ds};
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Host time spent here since start: nanoseconds handing ops to cubecl's device thread in
/// [`enqueue_all`] ("pointers": it used to wait there for them), nanoseconds launching bakallm's
/// kernels (on that thread), their launches, nanoseconds of the device thread in [`enqueue_all`]'s
/// tasks (pointers looked up, kernels launched, cuBLAS called), and nanoseconds in cuBLAS calls
/// (`baka bench --phases` reports them per step, "kernels").
static HOST: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// [`HOST`]'s counters now.
pub fn host_counters() -> [u64; 5] {
    HOST.each_ref().map(|c| c.load(Relaxed))
}

/// Adds the nanoseconds since `t0` to the cuBLAS counter of [`HOST`].
pub fn count_blas(t0: Instant) {
    HOST[4].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
}

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

/// A matrix `t [rows, cols]` with unit column stride and its row pitch (≥ `cols`), a GEMM operand's
/// leading dimension: cubecl may pad the rows of a tensor it allocates (a cast of the LM head's
/// `[768, 50304]` weight has rows of 50432), which [`compact`] would copy (0.15 ms per pristine
/// step on an H200). A copy only when the columns are not adjacent or the rows overlap.
pub fn compact_rows(t: CubeTensor<CudaRuntime>) -> (CubeTensor<CudaRuntime>, usize) {
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    assert_eq!(shape.len(), 2, "compact_rows: a matrix, got shape {shape:?}");
    let (rows, cols, pitch) = (shape[0], shape[1], strides[0]);
    if strides[1] == 1 && (pitch >= cols || rows == 1) {
        return (t, pitch.max(cols));
    }
    (compact(t), cols)
}

/// Queues `f(pointers, stream)` with the device pointers (offsets included) of `tensors` on
/// cubecl's device thread, after the work queued there so far, with the stream of the last tensor
/// (the freshly allocated output, so this thread's stream); cubecl orders the streams of the
/// others. `f` runs later: a panic in it is reported by the next call here (or [`check`]).
pub fn enqueue<const N: usize>(tensors: [&CubeTensor<CudaRuntime>; N], f: impl FnOnce([u64; N], ds::CUstream) + Send + 'static) {
    enqueue_all(&tensors, move |p, stream| f(std::array::from_fn(|i| p[i]), stream))
}

/// [`enqueue`] over a slice, for operand counts known only at run time (optional operands, lists).
///
/// Why on the device thread: cubecl launches its own kernels from there, and a pointer asked for
/// from this thread waits for that thread to drain: one blocking call per tensor took 28 ms of
/// host time per pristine step, one per op 22 ms, queued here 2 ms (`baka bench --phases`,
/// "kernels"). The step itself changed by less than its run-to-run spread (54.0 vs 54.5 ms): the
/// device thread, not this one, is what the GPU waits for.
pub fn enqueue_all(tensors: &[&CubeTensor<CudaRuntime>], f: impl FnOnce(&[u64], ds::CUstream) + Send + 'static) {
    check();
    let t0 = Instant::now();
    let last = tensors.last().expect("enqueue: no tensors");
    let bindings: Vec<_> = tensors.iter().map(|t| t.handle.clone().binding()).collect();
    runner(&last.device).submit(move |server| {
        use cubecl::server::ComputeServer;
        let t1 = Instant::now();
        let stream = cubecl::stream_id::StreamId::current();
        let run = || -> Result<(), String> {
            let res = bindings.into_iter().map(|b| server.get_resource(b, stream)).collect::<Result<Vec<_>, _>>().map_err(|e| format!("cubecl get_resource: {e:?}"))?;
            let ptrs: Vec<u64> = res.iter().map(|r| r.resource().ptr).collect();
            // the resources stay alive until the work is enqueued; stream order does the rest
            let f = std::panic::AssertUnwindSafe(|| f(&ptrs, res[res.len() - 1].resource().stream));
            std::panic::catch_unwind(f).map_err(|e| e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
        };
        if let Err(e) = run() {
            FAILED.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        }
        HOST[3].fetch_add(t1.elapsed().as_nanos() as u64, Relaxed);
    });
    HOST[0].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
}

/// `ptrs` with a null pointer inserted at `at` unless the optional operand there was given
/// (`present`): the kernels take 0 for an absent operand (a bias, LayerNorm's shift).
pub fn with_null(ptrs: &[u64], at: usize, present: bool) -> Vec<u64> {
    if present {
        ptrs.to_vec()
    } else {
        [&ptrs[..at], &[0], &ptrs[at..]].concat()
    }
}

/// The first failure of a queued [`enqueue`] task, not yet reported.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Panics with the first failure of a queued [`enqueue`] task, if any.
pub fn check() {
    if let Some(e) = FAILED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        panic!("bakallm kernels (queued on cubecl's device thread): {e}");
    }
}

type Server = <CudaRuntime as cubecl::Runtime>::Server;

/// The handle of cubecl's device thread for `device` (the one its client uses).
fn runner(device: &cubecl::cuda::CudaDevice) -> cubecl::device_handle::DeviceHandle<Server> {
    use cubecl::device::Device;
    thread_local! {
        static RUNNERS: std::cell::RefCell<HashMap<cubecl::device::DeviceId, cubecl::device_handle::DeviceHandle<Server>>> = Default::default();
    }
    let id = device.to_id();
    RUNNERS.with(|r| r.borrow_mut().entry(id).or_insert_with(|| cubecl::device_handle::DeviceHandle::new(id)).clone())
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
const FILES: [(&str, &str); 11] = [
    ("common.cu", include_str!("cuda/common.cu")),
    ("attention.cu", include_str!("cuda/attention.cu")),
    ("tokens.cu", include_str!("cuda/tokens.cu")),
    ("norm.cu", include_str!("cuda/norm.cu")),
    ("gate.cu", include_str!("cuda/gate.cu")),
    ("optim.cu", include_str!("cuda/optim.cu")),
    ("flash_tiles.cu", include_str!("cuda/flash_tiles.cu")),
    ("flash_fwd.cu", include_str!("cuda/flash_fwd.cu")),
    ("flash_bwd.cu", include_str!("cuda/flash_bwd.cu")),
    ("flash_bwd_wg.cu", include_str!("cuda/flash_bwd_wg.cu")),
    ("glu_gemm.cu", include_str!("cuda/glu_gemm.cu")),
];

/// The module's source: the files built in, or with `BAKA_CUDA_SRC=DIR` each file that DIR holds
/// in place of the built-in one, so a kernel edit can be timed on a GPU machine without a Rust
/// toolchain (`bench/ab.sh`: `AB="new edit:BAKA_CUDA_SRC=DIR"`).
fn source() -> String {
    let dir = std::env::var_os("BAKA_CUDA_SRC").map(std::path::PathBuf::from);
    if let Some(d) = &dir {
        // a mistyped folder, or a file named as the kernels no longer are, would time the built-in
        // kernels under the edit's name
        let names = FILES.map(|(name, _)| name);
        assert!(names.iter().any(|n| d.join(n).is_file()), "BAKA_CUDA_SRC={}: holds none of {}", d.display(), names.join(", "));
        let entries = std::fs::read_dir(d).into_iter().flatten().flatten();
        let unknown: Vec<String> = entries.filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.ends_with(".cu") && !names.contains(&n.as_str())).collect();
        assert!(unknown.is_empty(), "BAKA_CUDA_SRC={}: {} not among the kernel files ({})", d.display(), unknown.join(", "), names.join(", "));
    }
    let file = |(name, built_in): &(&str, &str)| match &dir {
        Some(d) if d.join(name).is_file() => std::fs::read_to_string(d.join(name)).unwrap_or_else(|e| panic!("BAKA_CUDA_SRC: cannot read {}: {e}", d.join(name).display())),
        _ => built_in.to_string(),
    };
    FILES.iter().map(file).collect::<Vec<_>>().join("\n")
}

/// The kernel `name` of `cuda/*.cu` in the current context (compiled on first use).
fn function(name: &str) -> ds::CUfunction {
    // per context: module, and the functions looked up so far (raw handles as usize: Send)
    type Loaded = (usize, HashMap<String, usize>);
    static MODULES: OnceLock<Mutex<HashMap<usize, Loaded>>> = OnceLock::new();
    let ctx = current_context();
    let mut all = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let (module, fns) = all.entry(ctx as usize).or_insert_with(|| {
        // for the device's own architecture: the flash kernels' tensor-core instructions need sm_80 or newer
        let opts = cudarc::nvrtc::CompileOptions { arch: arch(), ..Default::default() };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(source(), opts).unwrap_or_else(|e| {
            let from = std::env::var("BAKA_CUDA_SRC").map_or(String::new(), |d| format!(" (with BAKA_CUDA_SRC={d})"));
            panic!("NVRTC, crates/bakallm-kernels/src/cuda/*.cu{from}: {e:?}")
        });
        let image = CString::new(ptx.to_src()).expect("PTX has no NUL");
        let module = unsafe { dr::module::load_data(image.as_ptr() as *const c_void) }.expect("cuModuleLoadData");
        (module as usize, HashMap::new())
    });
    let module = *module as ds::CUmodule;
    *fns.entry(name.to_string()).or_insert_with(|| unsafe { dr::module::get_function(module, CString::new(name).expect("kernel name")) }.unwrap_or_else(|e| panic!("kernel {name}: {e:?}")) as usize)
        as ds::CUfunction
}

/// Attribute `a` of device 0 (cubecl's device); `what` names it in the panic if the driver refuses.
fn attribute(a: ds::CUdevice_attribute, what: &str) -> i32 {
    current_context();
    let dev = dr::device::get(0).expect("cuDeviceGet");
    unsafe { dr::device::get_attribute(dev, a) }.unwrap_or_else(|e| panic!("cuDeviceGetAttribute, {what}: {e:?}"))
}

/// Device 0's compute capability (cubecl's device) as `(major, minor)`.
pub fn capability() -> (i32, i32) {
    use ds::CUdevice_attribute::{CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR as MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR as MINOR};
    static CC: OnceLock<(i32, i32)> = OnceLock::new();
    *CC.get_or_init(|| (attribute(MAJOR, "compute capability"), attribute(MINOR, "compute capability")))
}

/// The most dynamic shared memory one block may ask for on device 0 (bytes, opted in).
pub fn max_shared_per_block() -> u32 {
    use ds::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN as OPTIN;
    static MAX: OnceLock<u32> = OnceLock::new();
    *MAX.get_or_init(|| attribute(OPTIN, "shared memory per block") as u32)
}

/// Device 0's streaming multiprocessors: the grid of the kernels whose blocks loop over rows.
pub fn sm_count() -> u32 {
    use ds::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT as SMS;
    static N: OnceLock<u32> = OnceLock::new();
    *N.get_or_init(|| attribute(SMS, "multiprocessor count") as u32)
}

/// NVRTC's target: the newest virtual architecture this code uses that the device has (PTX, so
/// the driver compiles it for the device itself). On Hopper (9.0) that is `compute_90a`, whose
/// PTX may hold `wgmma` (the flash kernels' products at head dim 64) and runs on 9.0 devices only.
fn arch() -> Option<&'static str> {
    match capability() {
        (9, 0) => Some("compute_90a"),
        (9.., _) => Some("compute_90"),
        (8, _) => Some("compute_80"),
        _ => None,
    }
}

/// Whether bakallm's kernels are launched with programmatic dependent launch: from compute
/// capability 9.0 on, unless `BAKA_PDL=0`. A kernel may then be scheduled while the one before
/// it in the stream still runs (its blocks wait in `GRID_DEPENDENCY()`), which hides most of the
/// launch gap between two kernels.
fn dependent_launch() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| capability().0 >= 9 && super::env::PDL.get())
}

/// The calling thread's CUDA context; binds device 0's primary context (cubecl's) if none is.
fn current_context() -> ds::CUcontext {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| dr::init().expect("cuInit")); // before cubecl's first op too (capability())
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

/// [`launch`] with a 2-D grid and `shared` bytes of dynamic shared memory (above the default
/// 48 KiB, the kernel is allowed that much first). `stream` is the one cubecl handed the calling
/// task (`enqueue`), valid while it runs.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn launch_with(name: &str, grid: (u32, u32), block: u32, shared: u32, stream: ds::CUstream, args: &[Arg]) {
    let t0 = Instant::now();
    let f = function(name);
    if shared > 48 * 1024 {
        use ds::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES as MAX;
        unsafe { dr::function::set_function_attribute(f, MAX, shared as i32) }.unwrap_or_else(|e| panic!("kernel {name}: {shared} bytes of shared memory: {e:?}"));
    }
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
    let launched = if dependent_launch() {
        // every kernel begins with GRID_DEPENDENCY() (common.cu): it may be scheduled before the
        // kernel ahead of it ends, and waits for it before touching memory
        use ds::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION as PDL;
        let mut attr: ds::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = PDL;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = ds::CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: 1,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: shared,
            hStream: stream,
            attrs: &mut attr,
            numAttrs: 1,
        };
        unsafe { ds::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut()) }.result()
    } else {
        unsafe { dr::launch_kernel(f, (grid.0, grid.1, 1), (block, 1, 1), shared, stream, &mut params) }
    };
    launched.unwrap_or_else(|e| panic!("launch {name} (grid {grid:?}, block {block}): {e:?}"));
    HOST[1].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
    HOST[2].fetch_add(1, Relaxed);
}
