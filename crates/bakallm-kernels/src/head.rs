//! The LM head and the token cross-entropy as one CUDA op over row chunks (`train.ce = "chunked"`).
//!
//! Why: at the pristine shape the head's logits `[16384, 50304]` are 1.65 GB in bf16 and the
//! cross-entropy's backward writes as much again; both live from the forward to the head's
//! backward and set the step's peak memory (H200, 2026-11-29, `bench/results` 29:51–52: the same
//! step with an 8192-token vocabulary reserved 8.2 GiB instead of 13.2). The loss is a mean, so its upstream gradient is
//! the same `1/n` for every row: the gradient of each chunk of logits can be formed in the forward,
//! right after its loss, and spent at once on its share of `dx` and `dw`. Only one chunk of logits
//! (`chunk` rows) ever exists; the autodiff op (`cross_entropy::head_ce_mean`) scales `dx` and `dw`
//! by the scalar upstream gradient in the backward.
//!
//! Per chunk: one GEMM for its logits, one kernel (`ce_grad`, or `ce_grad_row` with the row in
//! shared memory where it fits: cuda/tokens.cu) for its losses and its logits' gradient in place,
//! one GEMM for its rows of `dx` and one that adds its share of `dw` (f32, written by cuBLAS).
//! Every GEMM is a cuBLAS call on the device thread, in stream order.

use super::cublas::{side, RowGemm};
use super::fused::{empty, grid, int_name, kernel, CE_BLOCK};
use super::gemm::Trans;
use super::nvrtc::{compact, compact_rows, enqueue, launch_shared, max_shared_per_block, Arg};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::CudaRuntime;

type T = CubeTensor<CudaRuntime>;

/// Threads per row of `ce_grad_row`, and the longest row it takes: two such blocks share a Hopper
/// SM (228 KiB), one loading while the other computes (a 50304-token bf16 row is 98 KiB).
const CE_ROW_BLOCK: u32 = 512;
const CE_ROW_MAX_BYTES: u64 = 112 << 10;

/// `[losses [n] f32, dx [n, d], dw [d, V]]` of `x [n, d] · wc [d, V]` (`wc`: the weight cast to
/// `x`'s dtype) against `t [n]`, `chunk` rows at a time; `dw` in `w_dtype` (the master weight's).
pub fn head_ce(x: T, wc: T, w_dtype: DType, t: T, chunk: usize) -> [T; 3] {
    let ((x, t), (wc, ldw)) = ((compact(x), compact(t)), compact_rows(wc));
    let ([n, d], [d2, v]) = (x.meta.shape().dims::<2>(), wc.meta.shape().dims::<2>());
    assert!(d == d2 && n > 0 && v > 0 && chunk > 0, "head_ce: x [{n}, {d}] · w [{d2}, {v}], chunk {chunk}");
    assert_eq!(t.meta.shape().num_elements(), n, "head_ce: {n} rows, {:?} targets", t.meta.shape());
    assert_eq!(x.dtype, wc.dtype, "head_ce: the weight must be cast to x's dtype");
    let (dtype, rows) = (x.dtype, chunk.min(n));
    let losses = empty(&x, vec![n], DType::F32);
    let dx = empty(&x, vec![n, d], dtype);
    let dw = empty(&x, vec![d, v], w_dtype);
    let logits = empty(&x, vec![rows, v], dtype);
    let (ints, int_size, size, device) = (int_name(&t), t.dtype.size() as u64, dtype.size() as u64, x.device.index);
    let scale = 1.0 / n as f32;
    enqueue([&x, &wc, &t, &losses, &dx, &dw, &logits], move |[px, pw, pt, pl, pdx, pdw, pz], stream| {
        // the row in shared memory (one read of the logits) where it fits, 16-byte accesses only
        let row = kernel("ce_grad_row", dtype, &[pz], &[v]);
        let row_bytes = v as u64 * size;
        let in_smem = row.ends_with("_v") && row_bytes <= CE_ROW_MAX_BYTES.min(max_shared_per_block() as u64);
        let (name, block, smem) = match in_smem {
            true => (format!("{row}_{ints}"), CE_ROW_BLOCK, row_bytes as u32),
            false => (format!("{}_{ints}", kernel("ce_grad", dtype, &[pz], &[v])), CE_BLOCK, 0),
        };
        let gemm = |m, n, k, a, b, c, out, beta| RowGemm { batch: 1, m, n, k, a, b, c, dtype, out, beta }.run(device, stream as _);
        for start in (0..n).step_by(rows) {
            let (r, s) = (rows.min(n - start), start as u64);
            let xc = px + s * d as u64 * size;
            // logits [r, V] = x_c [r, d] · wc [d, V]
            gemm(r, v, d, side(xc, Trans::N, d), side(pw, Trans::N, ldw), side(pz, Trans::N, v), dtype, 0.0);
            // losses of the chunk; its logits become (softmax − onehot) / n
            let args = [Arg::Ptr(pz), Arg::Ptr(pt + s * int_size), Arg::Ptr(pl + s * 4), Arg::F32(scale), Arg::I32(super::fused::dim(v, "vocab"))];
            launch_shared(&name, grid(r, 1), block, smem, stream, &args);
            // dx_c [r, d] = dlogits [r, V] · wcᵀ [V, d]
            gemm(r, d, v, side(pz, Trans::N, v), side(pw, Trans::T, ldw), side(pdx + s * d as u64 * size, Trans::N, d), dtype, 0.0);
            // dw [d, V] (+)= x_cᵀ [d, r] · dlogits [r, V]
            gemm(d, v, r, side(xc, Trans::T, d), side(pz, Trans::N, v), side(pdw, Trans::N, v), w_dtype, if start == 0 { 0.0 } else { 1.0 });
        }
    });
    [losses, dx, dw]
}
