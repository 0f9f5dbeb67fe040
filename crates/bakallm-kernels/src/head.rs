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
//! Per chunk: one GEMM for its logits, one kernel (`ce_grad_rows` with the rows in shared memory
//! where they fit, else `ce_grad`: cuda/tokens.cu) for its losses and its logits' gradient in place,
//! one GEMM for its rows of `dx` and one that adds its share of `dw` (f32, written by cuBLAS).
//! Every GEMM is a cuBLAS call on the device thread, in stream order.

use super::cublas::{side, RowGemm};
use super::fused::{dim, empty, grid, int_name, kernel, CE_BLOCK};
use super::gemm::Trans;
use super::nvrtc::{capability, compact, compact_rows, enqueue, launch_shared, max_shared_per_block, sm_count, Arg};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::CudaRuntime;

type T = CubeTensor<CudaRuntime>;

/// `ce_grad_rows`' blocks: with two row buffers one block of 1024 threads per SM, the next row's
/// copies in flight while it works on this one; with one (a row longer than half of what a block
/// may hold) blocks of 512, two per SM where they fit. The longest row it takes: a 50304-token
/// bf16 row is 98 KiB, two of them fit a Hopper SM's 227 KiB.
const CE_ROWS_BLOCK: [u32; 2] = [512, 1024];
const CE_ROW_MAX_BYTES: u64 = 112 << 10;
/// What a block of `ce_grad_rows` holds beside its row buffers (block_logsumexp's slots, the
/// row's log-sum-exp; 1,296 bytes in ptxas's report), rounded up.
const CE_ROWS_STATIC: u64 = 2 << 10;

/// How the chunk's cross-entropy kernel is launched: `ce_grad_rows` (`ce_grad_rows1_…` or
/// `…2_…`: its buffers) with blocks looping over the rows, at most `blocks` of them, or `ce_grad`,
/// one block per row (`blocks: None`).
#[derive(Debug, PartialEq)]
struct CeLaunch {
    name: String,
    block: u32,
    blocks: Option<u32>,
    smem: u32,
}

/// `ce_grad_rows` for rows of `v` logits of `size` bytes where they fit shared memory
/// (`max_shared` bytes per block), 16-byte accesses fit (`row`, the kernel's name with the dtype's
/// suffix, ends in `_v`) and the GPU has cp.async (`sm80`); `ce_grad` (`plain`) otherwise.
fn ce_launch(row: &str, plain: &str, v: usize, size: u64, max_shared: u64, sms: u32, sm80: bool) -> CeLaunch {
    let bytes = v as u64 * size;
    if !sm80 || !row.ends_with("_v") || bytes > CE_ROW_MAX_BYTES.min(max_shared.saturating_sub(CE_ROWS_STATIC)) {
        return CeLaunch { name: plain.to_string(), block: CE_BLOCK, blocks: None, smem: 0 };
    }
    let nb = if 2 * bytes + CE_ROWS_STATIC <= max_shared { 2 } else { 1 };
    let name = row.replacen("ce_grad_rows", &format!("ce_grad_rows{nb}"), 1);
    CeLaunch { name, block: CE_ROWS_BLOCK[nb as usize - 1], blocks: Some(sms * (3 - nb)), smem: (nb as u64 * bytes) as u32 }
}

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
        // the rows in shared memory (one read of the logits) where they fit, 16-byte accesses only
        let (row, plain) = (kernel("ce_grad_rows", dtype, &[pz], &[v]), kernel("ce_grad", dtype, &[pz], &[v]));
        let ce = ce_launch(&row, &plain, v, size, max_shared_per_block() as u64, sm_count(), capability().0 >= 8);
        let name = format!("{}_{ints}", ce.name);
        let gemm = |m, n, k, a, b, c, out, beta| RowGemm { batch: 1, m, n, k, a, b, c, dtype, out, beta }.run(device, stream as _);
        for start in (0..n).step_by(rows) {
            let (r, s) = (rows.min(n - start), start as u64);
            let xc = px + s * d as u64 * size;
            // logits [r, V] = x_c [r, d] · wc [d, V]
            gemm(r, v, d, side(xc, Trans::N, d), side(pw, Trans::N, ldw), side(pz, Trans::N, v), dtype, 0.0);
            // losses of the chunk; its logits become (softmax − onehot) / n
            let mut args = vec![Arg::Ptr(pz), Arg::Ptr(pt + s * int_size), Arg::Ptr(pl + s * 4), Arg::F32(scale), Arg::I32(dim(v, "vocab"))];
            let blocks = match ce.blocks {
                Some(most) => {
                    args.push(Arg::I32(dim(r, "rows")));
                    most.min(grid(r, 1))
                }
                None => grid(r, 1),
            };
            launch_shared(&name, blocks, ce.block, ce.smem, stream, &args);
            // dx_c [r, d] = dlogits [r, V] · wcᵀ [V, d]
            gemm(r, d, v, side(pz, Trans::N, v), side(pw, Trans::T, ldw), side(pdx + s * d as u64 * size, Trans::N, d), dtype, 0.0);
            // dw [d, V] (+)= x_cᵀ [d, r] · dlogits [r, V]
            gemm(d, v, r, side(xc, Trans::T, d), side(pz, Trans::N, v), side(pdw, Trans::N, v), w_dtype, if start == 0 { 0.0 } else { 1.0 });
        }
    });
    [losses, dx, dw]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which cross-entropy kernel a chunk gets: two row buffers where two rows fit (the pristine
    /// vocabulary in bf16 on a Hopper SM), one where only one does (an A100's 163 KiB), one block
    /// per row without shared memory where a row does not fit (f32 at that vocabulary), accesses
    /// are not 16-byte or the GPU predates cp.async.
    #[test]
    fn ce_launch_picks_the_buffers_that_fit() {
        let hopper = 227 << 10;
        let pick = |v, size, max, sm80, row: &str| ce_launch(row, "ce_grad_bf16_v", v, size, max, 132, sm80);
        let two = pick(50304, 2, hopper, true, "ce_grad_rows_bf16_v");
        assert_eq!(two, CeLaunch { name: "ce_grad_rows2_bf16_v".into(), block: 1024, blocks: Some(132), smem: 201216 });
        assert_eq!(pick(25000, 4, hopper, true, "ce_grad_rows_f32_v").name, "ce_grad_rows2_f32_v");
        let one = pick(50304, 2, 163 << 10, true, "ce_grad_rows_bf16_v");
        assert_eq!(one, CeLaunch { name: "ce_grad_rows1_bf16_v".into(), block: 512, blocks: Some(264), smem: 100608 });
        for plain in [pick(50304, 4, 163 << 10, true, "ce_grad_rows_f32_v"), pick(50304, 2, hopper, false, "ce_grad_rows_bf16_v"), pick(50305, 2, hopper, true, "ce_grad_rows_bf16")] {
            assert_eq!(plain, CeLaunch { name: "ce_grad_bf16_v".into(), block: CE_BLOCK, blocks: None, smem: 0 });
        }
    }
}
