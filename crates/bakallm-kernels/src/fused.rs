//! bakallm's CUDA kernels (`cuda/*.cu`) as backend ops: on `CubeBackend` they launch in
//! cubecl's stream order, on `Fusion` they are custom ops (`super::fusion`). The math each
//! one does, and its reference in burn's ops, is in `super::prims`.

use super::cublas::{gemm, BlasBackend};
use super::nvrtc::{compact, enqueue, enqueue_all, launch, launch_2d, Arg};
use super::weight_copies::Part;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::DType;
use burn_cubecl::{element::BoolElement, tensor::CubeTensor, CubeBackend, FloatElement, IntElement};
use cubecl::cuda::CudaRuntime;

/// The ops of `cuda/*.cu`; see `super::prims` for what each computes.
pub trait FusedBackend: BlasBackend {
    /// Causal `softmax(s · scale + bias)` over the last dim of `s [b·heads, L, L]`; `bias [1|b, 1|heads, L, L]`.
    fn softmax_fwd(s: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f32, heads: usize) -> FloatTensor<Self>;
    /// Flash attention (`super::flash`, bf16, head dim 32 or 64): `[o, lse]` of `q, k, v
    /// [b·heads, L, hd]`, causal, with ALiBi's bias if `alibi` (`[heads + L]` f32, the slopes and
    /// then the positions, `super::flash::fwd`) is given.
    fn flash_fwd(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, alibi: Option<FloatTensor<Self>>, scale: f32, heads: usize) -> [FloatTensor<Self>; 2];
    /// Its `[dq, dk, dv]` from `[q, k, v, o, dout]` and `lse`.
    fn flash_bwd(qkvod: [FloatTensor<Self>; 5], lse: FloatTensor<Self>, alibi: Option<FloatTensor<Self>>, scale: f32, heads: usize) -> [FloatTensor<Self>; 3];
    /// `scale · p ⊙ (dp − rowsum(dp ⊙ p))`.
    fn softmax_bwd(p: FloatTensor<Self>, dp: FloatTensor<Self>, scale: f32) -> FloatTensor<Self>;
    /// `[loss, lse]` (`[n]`, f32) of `x [n, V]` against `t [n]`.
    fn ce_fwd(x: FloatTensor<Self>, t: IntTensor<Self>) -> [FloatTensor<Self>; 2];
    /// `(softmax(x) − onehot(t)) · g` in `x`'s dtype, from `lse` and `g` (`[n]`, f32).
    fn ce_bwd(x: FloatTensor<Self>, t: IntTensor<Self>, lse: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The LM head and the mean cross-entropy in one (`super::head`): `[losses [n] f32, dx [n, d],
    /// dw [d, V]]` of `x [n, d] · w [d, V]` against `t [n]`, `chunk` rows of logits at a time, the
    /// gradients under the mean's uniform 1/n (in `x`'s dtype and `w`'s).
    fn head_ce(x: FloatTensor<Self>, w: FloatTensor<Self>, t: IntTensor<Self>, chunk: usize) -> [FloatTensor<Self>; 3];
    /// `x [n] · g[0]` (`g [1]` f32), in place where `x`'s buffer is its own (a gradient formed in
    /// the forward) and then left as it is where `g[0]` is 1 (the loss the backward started from):
    /// no pass over it.
    fn scale_by(x: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The embedding gradient `[vocab, D]` (f32): rows of `g [n, D]` summed at `ids [n]`.
    fn embed_bwd(ids: IntTensor<Self>, g: FloatTensor<Self>, vocab: usize) -> FloatTensor<Self>;
    /// `x [b, L, heads·hd]` → `[b·heads, L, hd]`, rotated by the `(cos, sin)` tables `[L, hd]` if any.
    fn heads_split(x: FloatTensor<Self>, rot: Option<[FloatTensor<Self>; 2]>, heads: usize) -> FloatTensor<Self>;
    /// Its adjoint (the backward of the split; without tables, the head merge): `[b·heads, L, hd]`
    /// → `[b, L, heads·hd]`.
    fn heads_merge(g: FloatTensor<Self>, rot: Option<[FloatTensor<Self>; 2]>, heads: usize) -> FloatTensor<Self>;
    /// `[y, mean, rstd]` of LayerNorm (`b` given) or RMSNorm (no `b`) of `x [rows, D]`, with f32
    /// `w`, `b [D]`; `mean`, `rstd` `[rows]` f32.
    fn norm_fwd(x: FloatTensor<Self>, w: FloatTensor<Self>, b: Option<FloatTensor<Self>>, eps: f32) -> [FloatTensor<Self>; 3];
    /// `[dx, dw, db]` (`db` only for LayerNorm) from the upstream `g [rows, D]`.
    fn norm_bwd(g: FloatTensor<Self>, x: FloatTensor<Self>, w: FloatTensor<Self>, mean: FloatTensor<Self>, rstd: FloatTensor<Self>, layer: bool) -> Vec<FloatTensor<Self>>;
    /// `Σ x²` over every element of all `tensors` (f32, any shapes), as `[1]` f32.
    fn sum_squares(tensors: Vec<FloatTensor<Self>>) -> FloatTensor<Self>;
    /// `[p, m, v]` after one AdamW step of each f32 parameter `ps[i]` with gradient `gs[i]` and
    /// moments `mvs[i]` (`None`: the first step, for all), all with the scalars `h` ([`AdamScalars`]),
    /// one launch per 32 parameters. With `stats` (`[loss, norm]`, f32) the clip factor comes from
    /// the norm on the device, and a non-finite one skips the step. `copies[i]`, if given: the
    /// bf16 copy of `ps[i]` to write the new values into, at its place (`weight_copies`; the
    /// fusion op finds them, its callers pass none).
    #[allow(clippy::type_complexity)]
    fn adamw(
        ps: Vec<FloatTensor<Self>>,
        gs: Vec<FloatTensor<Self>>,
        mvs: Option<Vec<[FloatTensor<Self>; 2]>>,
        stats: Option<FloatTensor<Self>>,
        h: AdamScalars,
        copies: Vec<Option<(FloatTensor<Self>, Part)>>,
    ) -> Vec<[FloatTensor<Self>; 3]>;
    /// `x [b, l, d] · w [d, n]` with the f32 weight cast to `x`'s dtype: `[b, l, n]`.
    fn linear_fwd(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Its `[dx, dw]` from `g [b, l, n]`: `dx = g·wᵀ` in `g`'s dtype, `dw = xᵀ·g` in `w_dtype`
    /// (the master weight's; `w` may be its cast).
    fn linear_bwd(g: FloatTensor<Self>, x: FloatTensor<Self>, w: FloatTensor<Self>, w_dtype: DType) -> [FloatTensor<Self>; 2];
    /// The attention sublayer (`super::attention_block`): `[y, qkv, o, lse, [wq | wk | wv], wo]`
    /// of `h [b, L, d]` and f32 `ws = [wq, wk, wv, wo]`, with the q and k rotation tables and ALiBi's slopes and positions if any.
    fn attn_fwd(h: FloatTensor<Self>, ws: [FloatTensor<Self>; 4], rot: [Option<[FloatTensor<Self>; 2]>; 2], alibi: Option<FloatTensor<Self>>, heads: usize, scale: f32) -> [FloatTensor<Self>; 6];
    /// Its `[dh, dwq, dwk, dwv, dwo]` from `dy` and `saved = [qkv, o, lse, wqkv, wo]`.
    #[allow(clippy::too_many_arguments)]
    fn attn_bwd(
        dy: FloatTensor<Self>,
        h: FloatTensor<Self>,
        saved: [FloatTensor<Self>; 5],
        rot: [Option<[FloatTensor<Self>; 2]>; 2],
        alibi: Option<FloatTensor<Self>>,
        heads: usize,
        scale: f32,
        w_dtype: DType,
    ) -> [FloatTensor<Self>; 5];
    /// The gated MLP (`super::mlp`): `[y, h, [wg | wu], wd]` of `x [n, d]`, the weights cast.
    fn mlp_fwd(x: FloatTensor<Self>, wg: FloatTensor<Self>, wu: FloatTensor<Self>, wd: FloatTensor<Self>) -> [FloatTensor<Self>; 4];
    /// Its `[dx, dwg, dwu, dwd]` from `dy [n, d]` and what the forward kept; weight gradients in `w_dtype`.
    fn mlp_bwd(dy: FloatTensor<Self>, x: FloatTensor<Self>, h: FloatTensor<Self>, wcat: FloatTensor<Self>, wdc: FloatTensor<Self>, w_dtype: DType) -> [FloatTensor<Self>; 4];
    /// The MLP gate `silu(a) ⊙ u` (same shapes and dtype).
    fn silu_mul_fwd(a: FloatTensor<Self>, u: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Its `[da, du]` from the upstream `g`.
    fn silu_mul_bwd(a: FloatTensor<Self>, u: FloatTensor<Self>, g: FloatTensor<Self>) -> [FloatTensor<Self>; 2];
    /// Queues the copy of `x` (f32) to the host into staged read `id` (`super::staged`).
    fn stage_read(x: FloatTensor<Self>, id: usize);
    /// Each tensor's mean over the ranks of a data-parallel run (`super::nccl`, configured).
    fn all_reduce_mean(ts: Vec<FloatTensor<Self>>) -> Vec<FloatTensor<Self>>;
}

/// `adamw_f32`'s `Adam` struct (cuda/optim.cu): lr, β1, 1−β1, β2, 1−β2, eps, 1−lr·wd, 1−β1ᵗ, 1−β2ᵗ,
/// the gradient's scale (the clip factor), and the clip's max norm (used with `stats`).
pub type AdamScalars = [f32; 11];

type T = CubeTensor<CudaRuntime>;

fn float_name(t: &T) -> &'static str {
    dtype_name(t.dtype)
}

pub(super) fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 | DType::Flex32 => "f32",
        DType::BF16 => "bf16",
        d => panic!("bakallm kernels: unsupported float dtype {d:?}"),
    }
}

pub(super) fn int_name(t: &T) -> &'static str {
    match t.dtype {
        DType::I32 => "i32",
        DType::I64 => "i64",
        d => panic!("bakallm kernels: unsupported index dtype {d:?}"),
    }
}

/// The batch and head strides of `bias [1|b, 1|heads, L, L]` for scores `[bh, L, L]` (0: broadcast).
pub(super) fn bias_strides(what: &str, bias: &T, bh: usize, heads: usize, l: usize) -> [i64; 2] {
    let bs = bias.meta.shape().dims::<4>();
    assert!(
        bs[2] == l && bs[3] == l && bh.is_multiple_of(heads) && (bs[1] == 1 || bs[1] == heads) && (bs[0] == 1 || bs[0] * heads == bh),
        "{what}: bias {bs:?} for [{bh}, {l}, {l}] scores, {heads} heads"
    );
    [0, 1].map(|i| if bs[i] == 1 { 0 } else { bias.meta.strides()[i] as i64 })
}

/// A fresh compact tensor on `like`'s device.
pub(super) fn empty(like: &T, shape: Vec<usize>, dtype: DType) -> T {
    let n: usize = shape.iter().product();
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), Shape::from(shape), like.client.empty(n.max(1) * dtype.size()), dtype)
}

pub(super) fn grid(n: usize, per_block: usize) -> u32 {
    u32::try_from(n.div_ceil(per_block).max(1)).expect("bakallm kernels: grid exceeds u32")
}

pub(super) fn dim(v: usize, what: &str) -> i32 {
    i32::try_from(v).unwrap_or_else(|_| panic!("bakallm kernels: {what} = {v} exceeds i32"))
}

/// Threads per block: four warps, one row each, for the attention softmax; 256 per row for the
/// vocabulary-wide cross-entropy rows.
pub(super) const SOFTMAX_BLOCK: u32 = 128;
pub(super) const CE_BLOCK: u32 = 256;

impl<F: FloatElement, I: IntElement, BT: BoolElement> FusedBackend for CubeBackend<CudaRuntime, F, I, BT> {
    fn softmax_fwd(s: T, bias: T, scale: f32, heads: usize) -> T {
        let (s, bias) = (compact(s), compact(bias));
        let [bh, l, l2] = s.meta.shape().dims::<3>();
        assert_eq!(l, l2, "softmax_fwd: scores {:?} are not square", s.meta.shape());
        assert_eq!(s.dtype, bias.dtype, "softmax_fwd: scores and bias dtypes differ");
        let strides = bias_strides("softmax_fwd", &bias, bh, heads, l);
        let p = empty(&s, vec![bh, l, l], s.dtype);
        let (rows, dtype) = (bh * l, s.dtype);
        enqueue([&s, &bias, &p], move |[s, b, p], stream| {
            let name = kernel("softmax_fwd", dtype, &[s, b, p], &[l, strides[0] as usize, strides[1] as usize]);
            let args =
                [Arg::Ptr(s), Arg::Ptr(b), Arg::Ptr(p), Arg::I64(rows as i64), Arg::I32(dim(l, "L")), Arg::I32(dim(heads, "heads")), Arg::I64(strides[0]), Arg::I64(strides[1]), Arg::F32(scale)];
            launch(&name, grid(rows, SOFTMAX_BLOCK as usize / 32), SOFTMAX_BLOCK, stream, &args)
        });
        p
    }

    fn flash_fwd(q: T, k: T, v: T, alibi: Option<T>, scale: f32, heads: usize) -> [T; 2] {
        super::flash::fwd(super::flash::Qkv::Heads([q, k, v]), alibi, scale, heads, super::flash::OutLayout::Heads)
    }

    fn flash_bwd(qkvod: [T; 5], lse: T, alibi: Option<T>, scale: f32, heads: usize) -> [T; 3] {
        let [q, k, v, o, dout] = qkvod;
        match super::flash::bwd(super::flash::Qkv::Heads([q, k, v]), o, dout, lse, alibi, scale, heads, super::flash::OutLayout::Heads, [None, None], None) {
            super::flash::Qkv::Heads(g) => g,
            super::flash::Qkv::Fused { .. } => unreachable!("gradients come in q's layout"),
        }
    }

    fn softmax_bwd(p: T, dp: T, scale: f32) -> T {
        let (p, dp) = (compact(p), compact(dp));
        let [bh, l, _] = p.meta.shape().dims::<3>();
        assert_eq!(p.meta.shape(), dp.meta.shape(), "softmax_bwd: shapes differ");
        assert_eq!(p.dtype, dp.dtype, "softmax_bwd: dtypes differ");
        let ds = empty(&p, vec![bh, l, l], p.dtype);
        let (rows, dtype) = (bh * l, p.dtype);
        enqueue([&p, &dp, &ds], move |[p, dp, ds], stream| {
            let name = kernel("softmax_bwd", dtype, &[p, dp, ds], &[l]);
            let args = [Arg::Ptr(p), Arg::Ptr(dp), Arg::Ptr(ds), Arg::I64(rows as i64), Arg::I32(dim(l, "L")), Arg::F32(scale)];
            launch(&name, grid(rows, SOFTMAX_BLOCK as usize / 32), SOFTMAX_BLOCK, stream, &args)
        });
        ds
    }

    fn ce_fwd(x: T, t: T) -> [T; 2] {
        let (x, t) = (compact(x), compact(t));
        let [n, v] = x.meta.shape().dims::<2>();
        assert_eq!(t.meta.shape().num_elements(), n, "ce_fwd: {n} rows, {:?} targets", t.meta.shape());
        let (loss, lse) = (empty(&x, vec![n], DType::F32), empty(&x, vec![n], DType::F32));
        let (dtype, ints) = (x.dtype, int_name(&t));
        enqueue([&x, &t, &loss, &lse], move |[x, t, loss, lse], stream| {
            let name = format!("{}_{}", kernel("ce_fwd", dtype, &[x], &[v]), ints);
            launch(&name, grid(n, 1), CE_BLOCK, stream, &[Arg::Ptr(x), Arg::Ptr(t), Arg::Ptr(loss), Arg::Ptr(lse), Arg::I32(dim(v, "vocab"))])
        });
        [loss, lse]
    }

    fn ce_bwd(x: T, t: T, lse: T, g: T) -> T {
        let (x, t, lse, g) = (compact(x), compact(t), compact(lse), compact(g));
        let [n, v] = x.meta.shape().dims::<2>();
        assert!(lse.dtype == DType::F32 && g.dtype == DType::F32, "ce_bwd: lse and g must be f32");
        assert!([&t, &lse, &g].iter().all(|a| a.meta.shape().num_elements() == n), "ce_bwd: {n} rows");
        let dx = empty(&x, vec![n, v], x.dtype);
        let (dtype, ints) = (x.dtype, int_name(&t));
        enqueue([&x, &t, &lse, &g, &dx], move |[x, t, lse, g, dx], stream| {
            let name = format!("{}_{}", kernel("ce_bwd", dtype, &[x, dx], &[v]), ints);
            launch(&name, grid(n, 1), CE_BLOCK, stream, &[Arg::Ptr(x), Arg::Ptr(t), Arg::Ptr(lse), Arg::Ptr(g), Arg::Ptr(dx), Arg::I32(dim(v, "vocab"))])
        });
        dx
    }

    fn head_ce(x: T, w: T, t: T, chunk: usize) -> [T; 3] {
        let w_dtype = w.dtype;
        let wc = if w_dtype == x.dtype { w } else { Self::float_cast(w, x.dtype.into()) };
        super::head::head_ce(x, wc, w_dtype, t, chunk)
    }

    fn scale_by(x: T, g: T) -> T {
        let g = compact(g);
        assert!(g.dtype == DType::F32 && g.meta.shape().num_elements() == 1, "scale_by: g must be one f32, got {:?} {:?}", g.meta.shape(), g.dtype);
        let x = compact(x);
        let n = x.meta.shape().num_elements();
        // in place only where nothing else holds x's buffer and x covers all of it
        let y = if x.can_mut() && x.is_contiguous_buffer() { x.clone() } else { empty(&x, vec![n], x.dtype) };
        let name = format!("scale_by_{}", float_name(&x));
        enqueue([&x, &g, &y], move |[px, pg, py], stream| launch(&name, grid(n, 256).min(8192), 256, stream, &[Arg::Ptr(px), Arg::Ptr(py), Arg::Ptr(pg), Arg::I64(n as i64)]));
        y
    }

    fn embed_bwd(ids: T, g: T, vocab: usize) -> T {
        let (ids, g) = (compact(ids), compact(g));
        let [n, d] = g.meta.shape().dims::<2>();
        assert_eq!(ids.meta.shape().num_elements(), n, "embed_bwd: {n} rows, {:?} ids", ids.meta.shape());
        let dw = empty(&g, vec![vocab, d], DType::F32);
        let name = format!("embed_bwd_{}_{}", float_name(&g), int_name(&ids));
        enqueue([&ids, &g, &dw], move |[ids, g, dw], stream| {
            unsafe { cudarc::driver::result::memset_d8_async(dw, 0, vocab * d * 4, stream) }.expect("cuMemsetD8Async");
            launch(&name, grid(n * d, 256), 256, stream, &[Arg::Ptr(ids), Arg::Ptr(g), Arg::Ptr(dw), Arg::I64(n as i64), Arg::I32(dim(d, "D"))])
        });
        dw
    }

    fn heads_split(x: T, rot: Option<[T; 2]>, heads: usize) -> T {
        let x = compact(x);
        let [b, l, d] = x.meta.shape().dims::<3>();
        let y = empty(&x, vec![b * heads, l, d / heads], x.dtype);
        super::heads::cuda::run("heads_split", x, rot, y, [l, heads, d / heads])
    }

    fn heads_merge(g: T, rot: Option<[T; 2]>, heads: usize) -> T {
        let g = compact(g);
        let [bh, l, hd] = g.meta.shape().dims::<3>();
        let dx = empty(&g, vec![bh / heads, l, heads * hd], g.dtype);
        super::heads::cuda::run("heads_merge", g, rot, dx, [l, heads, hd])
    }

    fn norm_fwd(x: T, w: T, b: Option<T>, eps: f32) -> [T; 3] {
        super::norm::cuda::fwd(x, w, b, eps)
    }

    fn norm_bwd(g: T, x: T, w: T, mean: T, rstd: T, layer: bool) -> Vec<T> {
        super::norm::cuda::bwd(g, x, w, mean, rstd, layer, None)
    }

    fn stage_read(x: T, id: usize) {
        super::staged::cuda::stage_cube(x, id)
    }

    fn all_reduce_mean(ts: Vec<T>) -> Vec<T> {
        super::nccl::all_reduce_mean(ts, |t| empty(t, t.meta.shape().to_vec(), t.dtype))
    }

    fn sum_squares(tensors: Vec<T>) -> T {
        super::cuda_optim::sum_squares(tensors)
    }

    fn adamw(ps: Vec<T>, gs: Vec<T>, mvs: Option<Vec<[T; 2]>>, stats: Option<T>, h: AdamScalars, copies: Vec<Option<(T, Part)>>) -> Vec<[T; 3]> {
        super::cuda_optim::adamw(ps, gs, mvs, stats, h, copies)
    }

    fn linear_fwd(x: T, w: T) -> T {
        let ([b, l, d], n) = (x.meta.shape().dims::<3>(), w.meta.shape()[1]);
        let wc = if w.dtype == x.dtype { w } else { Self::float_cast(w, x.dtype.into()) };
        let wc = Self::float_reshape(wc, Shape::new([1, d, n]));
        let dtype = x.dtype;
        let y = gemm(Self::float_reshape(x, Shape::new([1, b * l, d])), wc, dtype);
        Self::float_reshape(y, Shape::new([b, l, n]))
    }

    fn linear_bwd(g: T, x: T, w: T, w_dtype: DType) -> [T; 2] {
        let ([b, l, n], d) = (g.meta.shape().dims::<3>(), w.meta.shape()[0]);
        let dtype = g.dtype;
        let wc = if w_dtype == dtype { w } else { Self::float_cast(w, dtype.into()) };
        let wc = Self::float_reshape(wc, Shape::new([1, d, n]));
        let (g, x) = (Self::float_reshape(g, Shape::new([1, b * l, n])), Self::float_reshape(x, Shape::new([1, b * l, d])));
        let dx = gemm(g.clone(), Self::float_swap_dims(wc, 1, 2), dtype);
        let dw = gemm(Self::float_swap_dims(x, 1, 2), g, w_dtype);
        [Self::float_reshape(dx, Shape::new([b, l, d])), Self::float_reshape(dw, Shape::new([d, n]))]
    }

    fn attn_fwd(h: T, ws: [T; 4], rot: [Option<[T; 2]>; 2], alibi: Option<T>, heads: usize, scale: f32) -> [T; 6] {
        super::attention_block::cuda::fwd(h, ws, rot, alibi, heads, scale, None, None)
    }

    fn attn_bwd(dy: T, h: T, saved: [T; 5], rot: [Option<[T; 2]>; 2], alibi: Option<T>, heads: usize, scale: f32, w_dtype: DType) -> [T; 5] {
        super::attention_block::cuda::bwd(dy, h, saved, rot, alibi, heads, scale, w_dtype, false).0
    }

    fn mlp_fwd(x: T, wg: T, wu: T, wd: T) -> [T; 4] {
        super::mlp::cuda::fwd(x, wg, wu, wd, None)
    }

    fn mlp_bwd(dy: T, x: T, h: T, wcat: T, wdc: T, w_dtype: DType) -> [T; 4] {
        super::mlp::cuda::bwd(dy, x, h, wcat, wdc, w_dtype)
    }

    fn silu_mul_fwd(a: T, u: T) -> T {
        let [y] = elementwise("silu_mul_fwd", [a, u]);
        y
    }

    fn silu_mul_bwd(a: T, u: T, g: T) -> [T; 2] {
        elementwise("silu_mul_bwd", [a, u, g])
    }
}

/// Launches the elementwise kernel `<kind>_<dtype>` over same-shaped `inputs`, into `M` fresh
/// outputs of their shape and dtype (one thread per element, or per 16 bytes with the `_v` kernel,
/// grid-strided).
fn elementwise<const N: usize, const M: usize>(kind: &'static str, inputs: [T; N]) -> [T; M] {
    let inputs = inputs.map(compact);
    let (shape, dtype) = (inputs[0].meta.shape().clone(), inputs[0].dtype);
    assert!(inputs.iter().all(|t| *t.meta.shape() == shape && t.dtype == dtype), "{kind}: operands differ in shape or dtype");
    let n = shape.num_elements();
    let outs = [(); M].map(|_| empty(&inputs[0], shape.to_vec(), dtype));
    let ts: Vec<&T> = inputs.iter().chain(&outs).collect();
    enqueue_all(&ts, move |p, stream| {
        let name = kernel(kind, dtype, p, &[n]);
        let len = if name.ends_with("_v") { n / width(dtype) } else { n };
        let args: Vec<Arg> = p.iter().map(|&p| Arg::Ptr(p)).chain([Arg::I64(len as i64)]).collect();
        launch(&name, grid(len, 256).min(8192), 256, stream, &args)
    });
    outs
}

/// Elements of `dtype` per 16-byte access.
pub(super) fn width(dtype: DType) -> usize {
    16 / dtype.size()
}

/// `<kind>_<dtype>`, or its 16-byte-access variant `<kind>_<dtype>_v`
/// (cuda/common.cu's `Vec`) where every buffer in `ptrs` is 16-byte aligned and every length in
/// `dims` (row lengths, strides, in elements) a multiple of the access.
pub(super) fn kernel(kind: &str, dtype: DType, ptrs: &[u64], dims: &[usize]) -> String {
    let w = width(dtype);
    let wide = ptrs.iter().all(|p| p % 16 == 0) && dims.iter().all(|d| d % w == 0);
    format!("{kind}_{}{}", dtype_name(dtype), if wide { "_v" } else { "" })
}

/// Queues `cast_many` (cuda/gate.cu): each f32 `src [rows, cols]` of `jobs` (at most 8) cast
/// to `dtype` into columns `[off, off + cols)` of its `dst [rows, ld]` (device pointers), one
/// launch. Call from an `enqueue` task.
pub(super) fn cast_many(dtype: DType, jobs: &[([u64; 2], [usize; 4])], stream: cudarc::driver::sys::CUstream) {
    assert!(!jobs.is_empty() && jobs.len() <= 8, "cast_many: {} jobs (1 to 8)", jobs.len());
    let u32_of = |v: usize| u32::try_from(v).expect("cast_many: a size over u32");
    let ptrs: Vec<u64> = jobs.iter().flat_map(|(p, _)| *p).collect();
    let dims: Vec<usize> = jobs.iter().flat_map(|(_, [_, cols, ld, off])| [*cols, *ld, *off]).collect();
    // `_v` moves 8 elements a thread: bf16 only (the f32 kernel is plain)
    let wide = dtype == DType::BF16 && ptrs.iter().all(|p| p % 16 == 0) && dims.iter().all(|d| d % 8 == 0);
    let name = format!("cast_many_{}{}", dtype_name(dtype), if wide { "_v" } else { "" });
    let w = if name.ends_with("_v") { 8 } else { 1 };
    let mut bytes = Vec::with_capacity(8 * 32);
    let mut most = 0;
    for &([src, dst], [rows, cols, ld, off]) in jobs {
        assert!(u32_of(rows) as u64 * u32_of(cols) as u64 <= u32::MAX as u64, "cast_many: [{rows}, {cols}] over u32 elements");
        bytes.extend(src.to_le_bytes().into_iter().chain(dst.to_le_bytes()));
        bytes.extend([rows, cols, ld, off].into_iter().flat_map(|v| u32_of(v).to_le_bytes()));
        most = most.max(rows * cols / w);
    }
    bytes.resize(8 * 32, 0);
    launch_2d(&name, (grid(most, 256).min(2048), jobs.len() as u32), 256, stream, &[Arg::Bytes(bytes)])
}

/// Item `i` of a `[k, rows, cols]` buffer as a `[rows, cols]` tensor (a view, no copy): weight
/// gradients written by one batched GEMM, handed out one per parameter.
pub(super) fn part(buf: &T, i: usize) -> T {
    let [_, rows, cols] = buf.meta.shape().dims::<3>();
    let t = burn_cubecl::kernel::slice(buf.clone(), &[i..i + 1, 0..rows, 0..cols]);
    CubeTensor::new_contiguous(t.client.clone(), t.device.clone(), Shape::new([rows, cols]), t.handle, t.dtype)
}
