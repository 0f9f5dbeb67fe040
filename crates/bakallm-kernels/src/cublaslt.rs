//! [`RowGemm`](super::cublas::RowGemm) through cuBLASLt with the algorithm chosen once per shape.
//!
//! Why: `cublasGemmStridedBatchedEx` chooses its algorithm on every call, 13–17 µs of host time
//! each on cubecl's device thread (255 calls per pristine step: 3.4–4.3 ms of the ~32 ms that
//! thread spends per step, and the GPU waits on that thread at times).
//! Here the descriptors and an algorithm are kept per (shape, layout, dtypes, alignment): the
//! fastest of the heuristic's first 16, timed on the shape's first call (`BAKA_CUBLASLT_TUNE=N`:
//! of its first N); a call is one `cublasLtMatmul`. `BAKA_CUBLASLT=0` goes back to `GemmEx`.

use super::cublas::{RowGemm, Side};
use super::gemm::Trans;
use burn::tensor::DType;
use cudarc::cublaslt::sys as lt;
use cudarc::driver::sys as ds;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

/// cuBLASLt's workspace in bytes, one per device, allocated once (outside cubecl's pool):
/// `BAKA_CUBLASLT_WORKSPACE` MiB, default 0: none, which leaves the heuristic the algorithms that
/// need no workspace and spares the memsets cuBLAS issues before most GEMMs with one; measured
/// 0.1–0.3 ms per step faster at every branch (docs/performance.md, 2026-12-05).
fn workspace_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| (super::env::CUBLASLT_WORKSPACE.get() as usize) << 20)
}

/// Whether [`RowGemm::run`] goes through here (`BAKA_CUBLASLT`, default on).
pub(super) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::env::CUBLASLT.get())
}

/// How many of the heuristic's algorithms are timed on a shape's first call, the fastest kept
/// (`BAKA_CUBLASLT_TUNE`, default and most 16; 1: the heuristic's first, untimed). At the pristine
/// shape the heuristic's first were 1.1 ms per step slower than the fastest of 8 (README).
fn candidates() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| super::env::CUBLASLT_TUNE.get() as usize)
}

/// The descriptors and algorithm of one GEMM shape.
struct Plan {
    desc: lt::cublasLtMatmulDesc_t,
    layouts: [lt::cublasLtMatrixLayout_t; 3],
    algo: lt::cublasLtMatmulAlgo_t,
}
// Used under the mutex below only.
unsafe impl Send for Plan {}

struct Device {
    handle: lt::cublasLtHandle_t,
    workspace: u64,
    plans: HashMap<Key, Option<Plan>>,
}
unsafe impl Send for Device {}

/// Everything a plan depends on: sizes, ops, leading dims, batch strides, dtypes, pointer
/// alignments (the heuristic may pick kernels that need 16-byte operands).
type Key = ([usize; 4], [u8; 2], [usize; 6], [u8; 2], [u8; 4]);

fn cuda(d: DType) -> lt::cudaDataType {
    match d {
        DType::F32 | DType::Flex32 => lt::cudaDataType::CUDA_R_32F,
        DType::BF16 => lt::cudaDataType::CUDA_R_16BF,
        DType::F16 => lt::cudaDataType::CUDA_R_16F,
        d => panic!("cublasLt matmul: unsupported dtype {d:?}"),
    }
}

/// The largest power of two (up to 256) dividing `ptr`: what the heuristic may assume.
fn align(ptr: u64) -> u8 {
    (ptr | 256).trailing_zeros() as u8
}

/// Runs `g` on `stream` with C read from `src` (D is `g.c`); false if cuBLASLt has no algorithm
/// for it (the caller uses `GemmEx`).
pub(super) fn run(g: &RowGemm, src: u64, device: usize, stream: ds::CUstream) -> bool {
    static DEVICES: Mutex<Option<HashMap<usize, Device>>> = Mutex::new(None);
    let mut all = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let dev = all.get_or_insert_with(HashMap::new).entry(device).or_insert_with(|| {
        let (mut handle, mut workspace) = (std::ptr::null_mut(), 0);
        unsafe {
            lt::cublasLtCreate(&mut handle).result().expect("cublasLtCreate");
            if workspace_bytes() > 0 {
                ds::cuMemAlloc_v2(&mut workspace, workspace_bytes()).result().expect("cuMemAlloc (cuBLASLt workspace)");
            }
        }
        Device { handle, workspace, plans: HashMap::new() }
    });
    let (a, b, c) = (g.a, g.b, g.c);
    let key: Key = (
        [g.batch, g.m, g.n, g.k],
        [a.op as u8, b.op as u8],
        [a.ld, b.ld, c.ld, a.stride, b.stride, c.stride],
        [cuda(g.dtype) as u8, cuda(g.out) as u8],
        [align(a.ptr), align(b.ptr), align(c.ptr), align(src)],
    );
    let (handle, workspace) = (dev.handle, dev.workspace);
    let plan = dev.plans.entry(key).or_insert_with(|| unsafe { plan(handle, g, src, workspace, stream) });
    let Some(p) = plan else { return false };
    let (alpha, beta) = (1.0f32, g.beta);
    // column-major, as cublas.rs: Cᵀ (n × m) = Bᵀ (n × k) · Aᵀ (k × m)
    unsafe {
        lt::cublasLtMatmul(
            handle,
            p.desc,
            &alpha as *const f32 as *const c_void,
            b.ptr as *const c_void,
            p.layouts[0],
            a.ptr as *const c_void,
            p.layouts[1],
            &beta as *const f32 as *const c_void,
            src as *const c_void,
            p.layouts[2],
            c.ptr as *mut c_void,
            p.layouts[2],
            &p.algo,
            dev.workspace as *mut c_void,
            workspace_bytes(),
            stream as _,
        )
        .result()
        .unwrap_or_else(|e| panic!("cublasLtMatmul: {e:?} (b {} m {} k {} n {})", g.batch, g.m, g.k, g.n));
    }
    true
}

/// The descriptors of `g` (C read from `src`) and the fastest of the heuristic's first
/// [`candidates`] algorithms, timed on `stream` (None if it has none).
unsafe fn plan(handle: lt::cublasLtHandle_t, g: &RowGemm, src: u64, workspace: u64, stream: ds::CUstream) -> Option<Plan> {
    use lt::cublasLtMatmulDescAttributes_t::{CUBLASLT_MATMUL_DESC_TRANSA, CUBLASLT_MATMUL_DESC_TRANSB};
    use lt::cublasLtMatmulPreferenceAttributes_t::*;
    use lt::cublasLtMatrixLayoutAttribute_t::{CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET};
    let ok = |s: lt::cublasStatus_t, what: &str| s.result().unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (ty, out) = (cuda(g.dtype), cuda(g.out));
    let compute = if ty == lt::cudaDataType::CUDA_R_32F { lt::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32 } else { lt::cublasComputeType_t::CUBLAS_COMPUTE_32F };
    let mut desc = std::ptr::null_mut();
    ok(lt::cublasLtMatmulDescCreate(&mut desc, compute, lt::cudaDataType::CUDA_R_32F), "cublasLtMatmulDescCreate");
    let trans = |t: Trans| -> i32 {
        if t == Trans::N {
            0
        } else {
            1
        }
    };
    let set_desc = |attr, v: i32| ok(lt::cublasLtMatmulDescSetAttribute(desc, attr, &v as *const i32 as *const c_void, 4), "cublasLtMatmulDescSetAttribute");
    set_desc(CUBLASLT_MATMUL_DESC_TRANSA, trans(g.b.op));
    set_desc(CUBLASLT_MATMUL_DESC_TRANSB, trans(g.a.op));
    // the stored (not transposed) shape of each column-major operand
    let layout = |dt, s: Side, rows: usize, cols: usize| {
        let (rows, cols) = if s.op == Trans::N { (rows, cols) } else { (cols, rows) };
        let mut l = std::ptr::null_mut();
        ok(lt::cublasLtMatrixLayoutCreate(&mut l, dt, rows as u64, cols as u64, s.ld as i64), "cublasLtMatrixLayoutCreate");
        if g.batch > 1 {
            let (count, stride) = (g.batch as i32, s.stride as i64);
            ok(lt::cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count as *const i32 as *const c_void, 4), "batch count");
            ok(lt::cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride as *const i64 as *const c_void, 8), "batch stride");
        }
        l
    };
    let layouts = [layout(ty, g.b, g.n, g.k), layout(ty, g.a, g.k, g.m), layout(out, Side { op: Trans::N, ..g.c }, g.n, g.m)];
    let mut pref = std::ptr::null_mut();
    ok(lt::cublasLtMatmulPreferenceCreate(&mut pref), "cublasLtMatmulPreferenceCreate");
    let ws = workspace_bytes() as u64;
    ok(lt::cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws as *const u64 as *const c_void, 8), "workspace preference");
    for (attr, ptr) in [
        (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, g.b.ptr),
        (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, g.a.ptr),
        (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, src),
        (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, g.c.ptr),
    ] {
        let bytes = 1u32 << align(ptr);
        ok(lt::cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes as *const u32 as *const c_void, 4), "alignment preference");
    }
    let mut results: Vec<lt::cublasLtMatmulHeuristicResult_t> = vec![std::mem::zeroed(); candidates()];
    let mut found = 0;
    let status = lt::cublasLtMatmulAlgoGetHeuristic(handle, desc, layouts[0], layouts[1], layouts[2], layouts[2], pref, results.len() as i32, results.as_mut_ptr(), &mut found);
    lt::cublasLtMatmulPreferenceDestroy(pref);
    if status != lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS || found == 0 {
        return None;
    }
    results.truncate(found as usize);
    let mut plan = Plan { desc, layouts, algo: results[0].algo };
    if results.len() > 1 {
        plan.algo = fastest(handle, &plan, &results, g, src, workspace, stream);
    }
    Some(plan)
}

/// The algorithm of `results` whose calls of `g` (into a scratch output, so an accumulating GEMM
/// is not run twice on its output) take the least time on `stream`: each run once, then 3 times
/// between events. Waits for the stream: once per shape, in the first step.
unsafe fn fastest(handle: lt::cublasLtHandle_t, p: &Plan, results: &[lt::cublasLtMatmulHeuristicResult_t], g: &RowGemm, src: u64, workspace: u64, stream: ds::CUstream) -> lt::cublasLtMatmulAlgo_t {
    let bytes = ((g.batch - 1) * g.c.stride + (g.m - 1) * g.c.ld + g.n) * g.out.size();
    let (mut scratch, mut events) = (0, [std::ptr::null_mut(); 2]);
    ds::cuMemAlloc_v2(&mut scratch, bytes).result().expect("cuMemAlloc (cuBLASLt timing scratch)");
    for e in &mut events {
        ds::cuEventCreate(e, 0).result().expect("cuEventCreate");
    }
    let (alpha, beta) = (1.0f32, g.beta);
    let call = |algo: &lt::cublasLtMatmulAlgo_t| {
        lt::cublasLtMatmul(
            handle,
            p.desc,
            &alpha as *const f32 as *const c_void,
            g.b.ptr as *const c_void,
            p.layouts[0],
            g.a.ptr as *const c_void,
            p.layouts[1],
            &beta as *const f32 as *const c_void,
            src as *const c_void,
            p.layouts[2],
            scratch as *mut c_void,
            p.layouts[2],
            algo,
            workspace as *mut c_void,
            workspace_bytes(),
            stream as _,
        ) == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS
    };
    let mut best = (f32::INFINITY, results[0].algo);
    for r in results {
        if !call(&r.algo) {
            continue;
        }
        ds::cuEventRecord(events[0], stream).result().expect("cuEventRecord");
        let ok = (0..3).all(|_| call(&r.algo));
        ds::cuEventRecord(events[1], stream).result().expect("cuEventRecord");
        ds::cuEventSynchronize(events[1]).result().expect("cuEventSynchronize");
        let mut ms = 0.0;
        ds::cuEventElapsedTime_v2(&mut ms, events[0], events[1]).result().expect("cuEventElapsedTime");
        if ok && ms < best.0 {
            best = (ms, r.algo);
        }
    }
    for e in events {
        ds::cuEventDestroy_v2(e);
    }
    ds::cuMemFree_v2(scratch);
    best.1
}
