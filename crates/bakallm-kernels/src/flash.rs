//! Flash attention's launches (`cuda/flash_*.cu`, `train.attention = "flash"`): the causal attention
//! forward and backward on the tensor cores without the `[b·heads, L, L]` scores or probabilities
//! in memory. Why: at the pristine shape those are 200 MB per layer in bf16, written and read ~6
//! times per step (GEMM → softmax → GEMM and back), and the saved probabilities were ~2.4 GB of
//! the step's memory. The math, and its reference in burn's ops, is `prims::flash_fwd`/`flash_bwd`.

use super::fused::{dim, empty, grid};
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

/// `flash_bwd`'s dynamic shared memory in bytes. With `mma.sync`: the K, V and dSᵀ tiles, two Q
/// and two dO tiles (bf16, rows padded), and two blocks of 64 lse and 64 delta (f32): 64 KiB at
/// head dim 64, three blocks per SM. With `wgmma` ([`wgmma`]): K, V, P and dS unpadded (8 KiB
/// each), two Q|dO buffers of 18 KiB (each holds its tile's dQ rows in f32, with padding, once
/// read), the statistics, and 1 KiB to align the tiles to the 128-byte swizzle's 1,024-byte period:
/// 70 KiB, three blocks per SM.
fn bwd_smem(hd: usize) -> u32 {
    if wgmma(hd) {
        return ((4 * TILE * hd + 4 * TILE * (hd + 8)) * 2 + 4 * TILE * 4 + 1024) as u32;
    }
    let (td, ts) = (TILE * (hd + PAD), TILE * (TILE + PAD));
    ((6 * td + ts) * 2 + 4 * TILE * 4) as u32
}

/// Whether the flash kernels of head dim `hd` take their products with Hopper's `wgmma` (the
/// kernels' `FA_WGMMA`: head dim 64 on a 9.0 device, whose NVRTC target is `compute_90a`); the
/// others take `mma.sync`.
pub fn wgmma(hd: usize) -> bool {
    hd == 64 && super::nvrtc::capability() == (9, 0)
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
    /// The output's shape for `[b·heads, L, hd]` heads.
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

/// q, k and v (and, from the backward, their gradients) as the kernels take them: three
/// `[b·heads, L, hd]` tensors, or `Fused`, q, k and v side by side in the first `3·d` columns
/// (`d` = heads·hd) of one `x [b, L, W]`, rows `W` apart (the fused projection's output, `W` = 3d,
/// or the parallel layer's input projections, `W` = 3d + 2F; so no split runs before the forward
/// and no merge after the backward; the forward's rotations are applied to it in place,
/// `rotate_qk`, and the backward's adjoint by the kernels as they write dq and dk, `bwd`'s
/// `unrotate`).
#[allow(clippy::large_enum_variant)] // a value of one call, never stored
pub enum Qkv {
    Heads([T; 3]),
    Fused { x: T, d: usize },
}

impl Qkv {
    /// `[b·heads, L, hd]` of the heads, checked: bf16, head dim 32 or 64 on this GPU.
    fn dims(&self, what: &str, heads: usize) -> [usize; 3] {
        let dims = match self {
            Qkv::Heads([q, k, v]) => {
                let dims = q.meta.shape().dims::<3>();
                assert!([k, v].iter().all(|t| t.meta.shape() == q.meta.shape()), "{what}: q {dims:?} and k, v differ in shape");
                assert!(dims[0].is_multiple_of(heads), "{what}: b·heads {} is not a multiple of {heads} heads", dims[0]);
                dims
            }
            Qkv::Fused { x, d } => {
                let [b, l, w] = x.meta.shape().dims::<3>();
                assert!(d.is_multiple_of(heads) && 3 * d <= w, "{what}: the fused projection [{b}, {l}, {w}] holds no q, k, v of width {d} in {heads} heads");
                assert!(w.is_multiple_of(8), "{what}: the fused projection's rows ({w} wide) must start 16-byte aligned");
                [b * heads, l, d / heads]
            }
        };
        let dt = self.first().dtype;
        assert!(supports(dt, dims) && self.all().iter().all(|t| t.dtype == dt), "{what}: bf16, head dim 32 or 64 and b·heads ≤ 65535 only, got {dt:?} and {dims:?}");
        dims
    }

    fn first(&self) -> &T {
        match self {
            Qkv::Heads([q, ..]) => q,
            Qkv::Fused { x, .. } => x,
        }
    }

    fn all(&self) -> Vec<&T> {
        match self {
            Qkv::Heads(t) => t.iter().collect(),
            Qkv::Fused { x, .. } => vec![x],
        }
    }

    fn compact(self) -> Self {
        match self {
            Qkv::Heads(t) => Qkv::Heads(t.map(compact)),
            Qkv::Fused { x, d } => Qkv::Fused { x: compact(x), d },
        }
    }

    /// Empty gradients in the same layout.
    fn empty_like(&self) -> Self {
        match self {
            Qkv::Heads(t) => Qkv::Heads(t.each_ref().map(|t| empty(t, t.meta.shape().to_vec(), t.dtype))),
            Qkv::Fused { x, d } => Qkv::Fused { x: empty(x, x.meta.shape().to_vec(), x.dtype), d: *d },
        }
    }

    /// The row stride of the fused projection (None for separate heads).
    fn fused_ld(&self) -> Option<usize> {
        match self {
            Qkv::Heads(_) => None,
            Qkv::Fused { x, .. } => Some(x.meta.shape().dims::<3>()[2]),
        }
    }
}

/// The three pointers of q, k and v from their tensors' (`ptrs`, as [`Qkv::all`] lists them; one
/// tensor, its rows `fused_ld` apart, if given), and the kernels' `qh` (heads per row) and `qld`
/// (row stride).
fn qkv_ptrs(fused_ld: Option<usize>, ptrs: &[u64], heads: usize, [_, _, hd]: [usize; 3]) -> ([u64; 3], i32, i32) {
    match fused_ld {
        Some(ld) => {
            let part = (heads * hd * 2) as u64; // bytes from q's columns to k's (bf16)
            ([ptrs[0], ptrs[0] + part, ptrs[0] + 2 * part], dim(heads, "heads"), dim(ld, "the fused projection's row stride"))
        }
        None => ([ptrs[0], ptrs[1], ptrs[2]], 1, dim(hd, "head dim")),
    }
}

/// The pointers of the rotation tables of q and k (`[cos, sin]` each where `has` says so) from the
/// front of `p`, where they lie in that order, and how many of `p` they are.
pub(super) fn rot_ptrs(has: [bool; 2], p: &[u64]) -> ([Option<[u64; 2]>; 2], usize) {
    let mut at = 0;
    let tables = has.map(|h| {
        h.then(|| {
            at += 2;
            [p[at - 2], p[at - 1]]
        })
    });
    (tables, at)
}

/// `(⌈L/rows⌉, b·heads)` blocks of `rows` queries or keys.
fn blocks(rows: usize, [bh, l, _]: [usize; 3]) -> (u32, u32) {
    (grid(l, rows), bh as u32)
}

/// o and dO as `layout` has them for `[b·heads, L, hd]` heads.
fn check_outs(what: &str, outs: &[&T], dims: [usize; 3], layout: OutLayout, heads: usize, dtype: DType) {
    let out = layout.shape(dims, heads);
    assert!(outs.iter().all(|t| t.meta.shape().dims::<3>().as_slice() == out.as_slice() && t.dtype == dtype), "{what}: o and dO must be {out:?} ({layout:?}) in {dtype:?}");
}

/// The kernels load 16 bytes at a time from `ptrs`.
fn check_aligned(what: &str, ptrs: &[u64]) {
    assert!(ptrs.iter().all(|p| p % 16 == 0), "{what}: buffers must be 16-byte aligned");
}

/// ALiBi's `[heads + L]` f32 (the heads' slopes, then each slot's position, NaN where it has none),
/// checked, and the kernels' name suffix.
fn alibi_args(what: &str, alibi: Option<&T>, [_, l, hd]: [usize; 3], heads: usize) -> String {
    match alibi {
        Some(a) => {
            assert!(a.dtype == DType::F32 && a.meta.shape().dims::<1>() == [heads + l], "{what}: ALiBi's slopes and positions must be [{heads} + {l}] f32, got {:?} {:?}", a.meta.shape(), a.dtype);
            format!("hd{hd}_alibi")
        }
        None => format!("hd{hd}"),
    }
}

/// The arguments both kernels take after their pointers.
fn tail(l: usize, heads: usize, scale: f32, layout: OutLayout, qh: i32, qld: i32) -> [Arg; 6] {
    [Arg::I32(dim(l, "L")), Arg::I32(dim(heads, "heads")), Arg::F32(scale), Arg::I32(layout.heads_per_row(heads)), Arg::I32(qh), Arg::I32(qld)]
}

/// `[o, lse]` of `qkv` (bf16), causal, with ALiBi's bias if `alibi` (`[heads + L]` f32: the
/// slopes, then each slot's position, NaN where it has none) is given; `o` in `layout`.
pub fn fwd(qkv: Qkv, alibi: Option<T>, scale: f32, heads: usize, layout: OutLayout) -> [T; 2] {
    let (qkv, alibi) = (qkv.compact(), alibi.map(compact));
    let dims @ [bh, l, _] = qkv.dims("flash_fwd", heads);
    let dt = qkv.first().dtype;
    let name = alibi_args("flash_fwd", alibi.as_ref(), dims, heads);
    let (o, lse) = (empty(qkv.first(), layout.shape(dims, heads), dt), empty(qkv.first(), vec![bh, l], DType::F32));
    let mut ts = qkv.all();
    let n_in = ts.len();
    ts.extend(&alibi);
    ts.extend([&o, &lse]);
    let (biased, fused) = (alibi.is_some(), qkv.fused_ld());
    enqueue_all(&ts, move |p, stream| {
        let ([q, k, v], qh, qld) = qkv_ptrs(fused, &p[..n_in], heads, dims);
        let [a, o, lse] = with_null(&p[n_in..], 0, biased).try_into().expect("3 pointers");
        check_aligned("flash_fwd", &[q, k, v, o]);
        let args = [q, k, v, a, o, lse].map(Arg::Ptr).into_iter().chain(tail(l, heads, scale, layout, qh, qld));
        launch_2d(&format!("flash_fwd_{name}"), blocks(FWD_ROWS, dims), 128, stream, &args.collect::<Vec<_>>())
    });
    [o, lse]
}

/// The gradients of `qkv` (in its layout) from `qkv`, `o` and `dout` (in `layout`), the forward's
/// `lse` and the same `alibi` (if any): the row dots `rowsum(dout ⊙ o)`, then one pass over the key
/// blocks (dq summed in f32), then dq to bf16. With `unrotate`, q's and k's rotation tables
/// (`[cos, sin]` `[L, hd]` bf16 each, leading dims of 1 allowed, as `rotate_qk` takes them), dq
/// and dk come out rotated back (the rotation's adjoint, `rotate_qk`'s): the gradients of q and k
/// as they were before it. The gradients go into `into` if given (`Fused` like `qkv`: its first 3d
/// columns written, the rest left as they are), else into new tensors.
#[allow(clippy::too_many_arguments)]
pub fn bwd(qkv: Qkv, o: T, dout: T, lse: T, alibi: Option<T>, scale: f32, heads: usize, layout: OutLayout, unrotate: [Option<[T; 2]>; 2], into: Option<Qkv>) -> Qkv {
    let (qkv, alibi) = (qkv.compact(), alibi.map(compact));
    let unrotate = unrotate.map(|r| r.map(|t| t.map(compact)));
    let [o, dout, lse] = [o, dout, lse].map(compact);
    let dims @ [bh, l, hd] = qkv.dims("flash_bwd", heads);
    let dt = qkv.first().dtype;
    check_outs("flash_bwd", &[&o, &dout], dims, layout, heads, dt);
    assert!(lse.dtype == DType::F32 && lse.meta.shape().num_elements() == bh * l, "flash_bwd: lse must be [b·heads, L] f32");
    let name = alibi_args("flash_bwd", alibi.as_ref(), dims, heads);
    let n = bh * l * hd;
    // dQ's f32 accumulator: [bh, L, hd] in rows, full tiles of 64 in the wgmma backward's own order
    // (flash_bwd_wg.cu's add_dq_frag); only the kernels read it
    let (delta, acc) = (empty(&o, vec![bh, l], DType::F32), empty(&o, vec![bh, l, hd], DType::F32));
    let grads = match into {
        Some(g) => {
            let g = g.compact();
            assert!(g.fused_ld() == qkv.fused_ld() && g.dims("flash_bwd's gradients", heads) == dims, "flash_bwd: the gradients' buffer must have q's layout");
            g
        }
        None => qkv.empty_like(),
    };
    let mut ts = qkv.all();
    let n_in = ts.len();
    ts.extend(&alibi);
    ts.extend([&o, &dout, &lse, &delta, &acc]);
    for t in unrotate.iter().flatten().flatten() {
        let shape = t.meta.shape();
        let (cols, rows) = (shape.as_slice().last().copied().unwrap_or(0), shape.num_elements() / hd);
        assert!(t.dtype == dt && rows >= l && cols == hd, "flash_bwd: rotation tables must be [≥ {l}, {hd}] (any leading 1s) in {dt:?}, got {shape:?} {:?}", t.dtype);
        ts.push(t);
    }
    ts.extend(grads.all());
    let (biased, fused, has) = (alibi.is_some(), qkv.fused_ld(), unrotate.each_ref().map(|r| r.is_some()));
    enqueue_all(&ts, move |p, stream| {
        let ([q, k, v], qh, qld) = qkv_ptrs(fused, &p[..n_in], heads, dims);
        let rest = with_null(&p[n_in..], 0, biased);
        let [a, o, dout, lse, delta, acc] = rest[..6].try_into().expect("6 pointers");
        // [cos, sin] of q, then of k (nulls where absent)
        let (rot, tables) = rot_ptrs(has, &rest[6..]);
        let [[cq, sq], [ck, sk]] = rot.map(|r| r.unwrap_or([0, 0]));
        let ([dq, dk, dv], ..) = qkv_ptrs(fused, &rest[6 + tables..], heads, dims);
        check_aligned("flash_bwd", &[q, k, v, dout, o, dk, dv, acc, dq, cq, sq, ck, sk]);
        let oh = layout.heads_per_row(heads);
        // delta, and the dQ accumulator zeroed
        let dot = [Arg::Ptr(o), Arg::Ptr(dout), Arg::Ptr(delta), Arg::Ptr(acc), Arg::I64((bh * l) as i64), Arg::I32(dim(l, "L")), Arg::I32(oh)];
        launch(&format!("flash_dot_hd{hd}"), grid(bh * l * (hd / 8), 128), 128, stream, &dot);
        let ptrs = [q, k, v, a, dout, lse, delta, acc, dk, dv, ck, sk].map(Arg::Ptr);
        let args = ptrs.into_iter().chain(tail(l, heads, scale, layout, qh, qld));
        launch_with(&format!("flash_bwd_{name}"), blocks(TILE, dims), 128, bwd_smem(hd), stream, &args.collect::<Vec<_>>());
        let (l, hd) = (Arg::I32(dim(l, "L")), Arg::I32(dim(hd, "head dim")));
        let to_bf16 = [Arg::Ptr(acc), Arg::Ptr(dq), Arg::I64(n as i64), l, hd, Arg::I32(qh), Arg::I32(qld), Arg::Ptr(cq), Arg::Ptr(sq)];
        launch("flash_dq", grid(n / 16, 256), 256, stream, &to_bf16)
    });
    grads
}
