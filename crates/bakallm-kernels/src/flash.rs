//! Flash attention's launches (`cuda/flash.cu`, `train.attention = "flash"`): the causal attention
//! forward and backward on the tensor cores without the `[b·heads, L, L]` scores or probabilities
//! in memory. Why: at the pristine shape those are 200 MB per layer in bf16, written and read ~6
//! times per step (GEMM → softmax → GEMM and back), and the saved probabilities were ~2.4 GB of
//! the step's memory. The math, and its reference in burn's ops, is `prims::flash_fwd`/`flash_bwd`.

use super::fused::{bias_strides, dim, empty, grid};
use super::nvrtc::{compact, enqueue_all, launch, launch_2d, launch_with, with_null, Arg};
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::CudaRuntime;

type T = CubeTensor<CudaRuntime>;

/// Keys per tile and per backward block (`FA_B`), queries per forward block (`FA_BM`), and the
/// padding of a shared row (`FA_PAD`).
const TILE: usize = 64;
const FWD_ROWS: usize = 128;
const PAD: usize = 8;

/// `flash_bwd`'s dynamic shared memory in bytes: the K, V and dSᵀ tiles, two Q and two dO tiles
/// (bf16, rows padded), and two blocks of 64 lse and 64 delta (f32): 64 KiB at head dim 64,
/// three blocks per SM.
fn bwd_smem(hd: usize) -> u32 {
    let (td, ts) = (TILE * (hd + PAD), TILE * (TILE + PAD));
    ((6 * td + ts) * 2 + 4 * TILE * 4) as u32
}

/// Whether the kernels take `[b·heads, L, hd]` activations of `dtype` on this GPU (bf16, head dim
/// 32 or 64, b·heads within the grid's 65535 rows, sm_80 or newer); elsewhere the attention takes
/// the GEMM + softmax kernels.
pub fn supports(dtype: DType, [bh, _, hd]: [usize; 3]) -> bool {
    super::flash_fits(dtype == DType::BF16, hd) && bh <= 65535 && super::nvrtc::capability().0 >= 8
}

/// Where the output (and its gradient) lies: `Heads`, `[b·heads, L, hd]` like q, k and v, or
/// `Merged`, `[b, L, heads·hd]`, the heads side by side as the output projection reads them (then
/// no merge runs after the forward and no split before the backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutLayout {
    Heads,
    Merged,
}

impl OutLayout {
    /// The output's shape for q's `[b·heads, L, hd]`.
    fn shape(self, [bh, l, hd]: [usize; 3], heads: usize) -> Vec<usize> {
        match self {
            OutLayout::Heads => vec![bh, l, hd],
            OutLayout::Merged => vec![bh / heads, l, heads * hd],
        }
    }

    /// The kernels' `oh`: heads per row of the output.
    fn heads_per_row(self, heads: usize) -> i32 {
        match self {
            OutLayout::Heads => 1,
            OutLayout::Merged => dim(heads, "heads"),
        }
    }
}

/// `(⌈L/rows⌉, b·heads)` blocks of `rows` queries or keys, and the shape checks both kernels share:
/// k and v shaped as q, `outs` (o, dO) as `layout` has it.
fn blocks(what: &str, rows: usize, q: &T, others: &[&T], outs: &[&T], layout: OutLayout, heads: usize) -> ((u32, u32), [usize; 3]) {
    let [bh, l, hd] = q.meta.shape().dims::<3>();
    assert!(bh.is_multiple_of(heads), "{what}: b·heads {bh} is not a multiple of {heads} heads");
    assert!(others.iter().all(|t| t.meta.shape() == q.meta.shape()), "{what}: q {:?} and k, v differ in shape", q.meta.shape());
    let out = layout.shape([bh, l, hd], heads);
    assert!(outs.iter().all(|t| t.meta.shape().dims::<3>().as_slice() == out.as_slice()), "{what}: o and dO must be {out:?} ({layout:?})");
    let all = || others.iter().chain(outs);
    assert!(supports(q.dtype, [bh, l, hd]) && all().all(|t| t.dtype == q.dtype), "{what}: bf16, head dim 32 or 64 and b·heads ≤ 65535 only, got {:?}, {hd} and {bh}", q.dtype);
    ((grid(l, rows), bh as u32), [bh, l, hd])
}

/// The kernels load 16 bytes at a time from `ptrs`.
fn check_aligned(what: &str, ptrs: &[u64]) {
    assert!(ptrs.iter().all(|p| p % 16 == 0), "{what}: buffers must be 16-byte aligned");
}

/// The bias's batch and head strides (zeros without one) and the kernels' name suffix.
fn bias_args(what: &str, bias: Option<&T>, q: &T, [bh, l, hd]: [usize; 3], heads: usize) -> ([i64; 2], String) {
    match bias {
        Some(b) => {
            assert_eq!(b.dtype, q.dtype, "{what}: bias and q dtypes differ");
            (bias_strides(what, b, bh, heads, l), format!("hd{hd}_bias"))
        }
        None => ([0, 0], format!("hd{hd}")),
    }
}

/// The arguments both kernels take after their pointers.
fn tail(l: usize, heads: usize, strides: [i64; 2], scale: f32, layout: OutLayout) -> [Arg; 6] {
    [Arg::I32(dim(l, "L")), Arg::I32(dim(heads, "heads")), Arg::I64(strides[0]), Arg::I64(strides[1]), Arg::F32(scale), Arg::I32(layout.heads_per_row(heads))]
}

/// `[o, lse]` of `q, k, v [b·heads, L, hd]` (bf16), causal, with `bias [1|b, 1|heads, L, L]` added
/// if given; `o` in `layout`.
pub fn fwd(q: T, k: T, v: T, bias: Option<T>, scale: f32, heads: usize, layout: OutLayout) -> [T; 2] {
    let [q, k, v] = [q, k, v].map(compact);
    let bias = bias.map(compact);
    let (blocks, dims @ [bh, l, _]) = blocks("flash_fwd", FWD_ROWS, &q, &[&k, &v], &[], layout, heads);
    let (strides, name) = bias_args("flash_fwd", bias.as_ref(), &q, dims, heads);
    let (o, lse) = (empty(&q, layout.shape(dims, heads), q.dtype), empty(&q, vec![bh, l], DType::F32));
    let mut ts = vec![&q, &k, &v];
    ts.extend(&bias);
    ts.extend([&o, &lse]);
    let biased = bias.is_some();
    enqueue_all(&ts, move |p, stream| {
        let p = with_null(p, 3, biased);
        check_aligned("flash_fwd", &[p[0], p[1], p[2], p[4]]);
        let args = p.into_iter().map(Arg::Ptr).chain(tail(l, heads, strides, scale, layout));
        launch_2d(&format!("flash_fwd_{name}"), blocks, 128, stream, &args.collect::<Vec<_>>())
    });
    [o, lse]
}

/// `[dq, dk, dv]` from `[q, k, v, o, dout]` (o and dout in `layout`), the forward's `lse` and the
/// same `bias` (if any): the row dots `rowsum(dout ⊙ o)`, then one pass over the key blocks (dq
/// summed in f32), then dq to bf16.
pub fn bwd(qkvod: [T; 5], lse: T, bias: Option<T>, scale: f32, heads: usize, layout: OutLayout) -> [T; 3] {
    let [q, k, v, o, dout] = qkvod.map(compact);
    let (lse, bias) = (compact(lse), bias.map(compact));
    let (blocks, dims @ [bh, l, hd]) = blocks("flash_bwd", TILE, &q, &[&k, &v], &[&o, &dout], layout, heads);
    assert!(lse.dtype == DType::F32 && lse.meta.shape().num_elements() == bh * l, "flash_bwd: lse must be [b·heads, L] f32");
    let (strides, name) = bias_args("flash_bwd", bias.as_ref(), &q, dims, heads);
    let n = bh * l * hd;
    let (delta, acc) = (empty(&q, vec![bh, l], DType::F32), empty(&q, vec![bh, l, hd], DType::F32));
    let [dq, dk, dv] = [(); 3].map(|_| empty(&q, vec![bh, l, hd], q.dtype));
    let mut ts = vec![&q, &k, &v];
    ts.extend(&bias);
    ts.extend([&o, &dout, &lse, &delta, &acc, &dq, &dk, &dv]);
    let biased = bias.is_some();
    enqueue_all(&ts, move |p, stream| {
        let [q, k, v, b, o, dout, lse, delta, acc, dq, dk, dv] = with_null(p, 3, biased).try_into().expect("12 pointers");
        check_aligned("flash_bwd", &[q, k, v, dout, o, dk, dv, acc, dq]);
        unsafe { cudarc::driver::result::memset_d8_async(acc, 0, n * 4, stream) }.expect("cuMemsetD8Async");
        let dot = [Arg::Ptr(o), Arg::Ptr(dout), Arg::Ptr(delta), Arg::I64((bh * l) as i64), Arg::I32(dim(l, "L")), Arg::I32(layout.heads_per_row(heads))];
        launch(&format!("flash_dot_hd{hd}"), grid(bh * l * (hd / 8), 128), 128, stream, &dot);
        let ptrs = [q, k, v, b, dout, lse, delta, acc, dk, dv].map(Arg::Ptr);
        let args = ptrs.into_iter().chain(tail(l, heads, strides, scale, layout));
        launch_with(&format!("flash_bwd_{name}"), blocks, 128, bwd_smem(hd), stream, &args.collect::<Vec<_>>());
        launch("flash_dq", grid(n / 8, 256), 256, stream, &[Arg::Ptr(acc), Arg::Ptr(dq), Arg::I64(n as i64)])
    });
    [dq, dk, dv]
}
