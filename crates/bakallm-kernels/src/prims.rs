//! The steps the fused autodiff ops are made of, as burn formulas on any inner (non-autodiff)
//! backend: the reference behind [`Prims`](crate::inner::Prims)' default methods, which the CPU
//! tests check the ops against and the GPU tests check the CUDA kernels against.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{DType, FloatDType, IndexingUpdateOp, TensorPrimitive};

/// Batched `a [n, m, k] · b [n, k, p]`: cuBLAS on CUDA, burn's matmul elsewhere.
pub fn matmul<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 3> {
    a.matmul(b)
}

/// Causal attention probabilities `softmax(s · scale + bias)` over the last dim of
/// `s [b·heads, L, L]`, keys after the query masked, with `bias [1|b, 1|heads, L, L]` (ALiBi; −∞
/// masks more).
pub fn softmax_fwd<B: Backend>(s: Tensor<B, 3>, bias: Tensor<B, 4>, scale: f32, heads: usize) -> Tensor<B, 3> {
    softmax(masked(s, Some(bias), scale, heads), 2)
}

/// The scores `s [b·heads, L, L]` scaled, biased (if `bias`) and causally masked (with `f32::MIN`,
/// not −∞: 0·∞ would be NaN where a backend blends).
fn masked<B: Backend>(s: Tensor<B, 3>, bias: Option<Tensor<B, 4>>, scale: f32, heads: usize) -> Tensor<B, 3> {
    let [bh, l, _] = s.dims();
    let future = Tensor::<B, 2, Bool>::tril_mask([l, l], 0, &s.device()) // true above the diagonal
        .reshape([1, 1, l, l])
        .expand([bh / heads, heads, l, l]);
    let s = s.reshape([bh / heads, heads, l, l]).mul_scalar(scale);
    let s = match bias {
        Some(b) => {
            let dt = s.dtype().into();
            s + super::reference::to(b, dt)
        }
        None => s,
    };
    s.mask_fill(future, f32::MIN).reshape([bh, l, l])
}

/// ALiBi, the attention's one bias beyond the causal mask, in the two forms its steps take: the
/// table `[1, H, L, L]` that burn's steps add (the mask's −∞ included), and `[H + L]` f32, the
/// heads' slopes and then each slot's position (NaN where a slot has none), from which the flash
/// kernels compute it per score (`cuda/flash_tiles.cu`, `fa_score`: slope·(p_j − p_i), 0 where
/// either has no position).
#[derive(Debug, Clone)]
pub struct Alibi<B: Backend> {
    pub table: Tensor<B, 4>,
    pub slopes_pos: Tensor<B, 1>,
}

/// Flash attention's forward (`train.attention = "flash"`): `(o, lse)`, the output of
/// [`softmax_fwd`]'s probabilities times `v` (`[b·heads, L, hd]`, `q`'s dtype) and each row's
/// log-sum-exp of its masked scores (`[b·heads, L]`, f32), which is all the backward needs. The
/// bias, if any, is added to the scaled scores (ALiBi); the causal mask is applied either way. The
/// kernels (bf16, head dim 32 or 64) never write the `[b·heads, L, L]` scores; this reference
/// does, in f32.
pub fn flash_fwd<B: Backend>(q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>, bias: Option<Tensor<B, 4>>, scale: f32, heads: usize) -> (Tensor<B, 3>, Tensor<B, 2>) {
    let ([bh, l, _], dtype) = (q.dims(), q.dtype());
    let f = |t: Tensor<B, 3>| t.cast(FloatDType::F32);
    let x = masked(f(q).matmul(f(k).swap_dims(1, 2)), bias, scale, heads);
    let m = x.clone().max_dim(2);
    let e = (x - m.clone()).exp();
    let z = e.clone().sum_dim(2);
    let o = (e / z.clone()).matmul(f(v)).cast(dtype);
    (o, (m + z.log()).reshape([bh, l]))
}

/// Its backward from the upstream `dout`: `[dq, dk, dv]` (`q`'s dtype), with the probabilities
/// recomputed as `p = exp(masked scores − lse)`, `ds = scale · p ⊙ (dout·vᵀ − rowsum(dout ⊙ o))`,
/// `dq = ds·k`, `dk = dsᵀ·q`, `dv = pᵀ·dout`.
#[allow(clippy::too_many_arguments)]
pub fn flash_bwd<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    o: Tensor<B, 3>,
    lse: Tensor<B, 2>,
    dout: Tensor<B, 3>,
    bias: Option<Tensor<B, 4>>,
    scale: f32,
    heads: usize,
) -> [Tensor<B, 3>; 3] {
    let dtype = q.dtype();
    let f = |t: Tensor<B, 3>| t.cast(FloatDType::F32);
    let (q, k, v, dout) = (f(q), f(k), f(v), f(dout));
    let x = masked(q.clone().matmul(k.clone().swap_dims(1, 2)), bias, scale, heads);
    let p = (x - lse.unsqueeze_dim::<3>(2)).exp();
    let delta = (dout.clone() * f(o)).sum_dim(2);
    let ds = (p.clone() * (dout.clone().matmul(v.swap_dims(1, 2)) - delta)).mul_scalar(scale);
    [ds.clone().matmul(k), ds.swap_dims(1, 2).matmul(q), p.swap_dims(1, 2).matmul(dout)].map(|t| t.cast(dtype))
}

/// Gradient of the scores from the probabilities `p` and their gradient `dp`:
/// `scale · p ⊙ (dp − Σ_j dp ⊙ p)`.
pub fn softmax_bwd<B: Backend>(p: Tensor<B, 3>, dp: Tensor<B, 3>, scale: f32) -> Tensor<B, 3> {
    let dot = (dp.clone() * p.clone()).sum_dim(2);
    ((dp - dot) * p).mul_scalar(scale)
}

/// Per-row `[loss, lse]` (`[n]`, f32) of logits `x [n, V]` against `t [n]`:
/// `lse = log Σ exp x`, `loss = lse − x[t]`.
pub fn ce_fwd<B: Backend>(x: Tensor<B, 2>, t: Tensor<B, 1, Int>) -> [Tensor<B, 1>; 2] {
    let n = t.dims()[0];
    let x = x.cast(FloatDType::F32);
    let m = x.clone().max_dim(1);
    let lse = (x.clone() - m.clone()).exp().sum_dim(1).log() + m;
    let picked = x.gather(1, t.reshape([n, 1]));
    [(lse.clone() - picked).reshape([n]), lse.reshape([n])]
}

/// Gradient of the summed `g`-weighted losses: `(softmax(x) − onehot(t)) · g`, in `x`'s dtype.
pub fn ce_bwd<B: Backend>(x: Tensor<B, 2>, t: Tensor<B, 1, Int>, lse: Tensor<B, 1>, g: Tensor<B, 1>) -> Tensor<B, 2> {
    let ([n, _], dtype) = (x.dims(), x.dtype());
    let g = g.reshape([n, 1]);
    let softmax = (x.cast(FloatDType::F32) - lse.reshape([n, 1])).exp();
    let d = (softmax * g.clone()).scatter(1, t.reshape([n, 1]), g.neg(), IndexingUpdateOp::Add);
    d.cast(dtype)
}

/// The LM head and the mean cross-entropy in one: `(losses [n] f32, dx [n, d], dw [d, V])` of
/// `x [n, d] · w [d, V]` (`w` cast to `x`'s dtype) against `t [n]`, both gradients those of the
/// mean loss (`dx` in `x`'s dtype, `dw` in `w`'s). On CUDA `chunk` rows of logits at a time
/// (`head::head_ce`); here the whole `[n, V]` at once.
pub fn head_ce<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, t: Tensor<B, 1, Int>, chunk: usize) -> (Tensor<B, 1>, Tensor<B, 2>, Tensor<B, 2>) {
    let _ = chunk;
    let (n, w_dtype) = (x.dims()[0], w.dtype());
    let wc = super::reference::to(w, x.dtype().into());
    let logits = x.clone().matmul(wc.clone());
    let [losses, lse] = ce_fwd(logits.clone(), t.clone());
    let g = Tensor::<B, 1>::full([n], 1.0 / n as f64, &x.device());
    let dl = ce_bwd(logits, t, lse, g);
    let dx = dl.clone().matmul(wc.transpose());
    let dw = x.transpose().matmul(dl);
    (losses, dx, super::reference::to(dw, w_dtype.into()))
}

/// The gated MLP `y = (silu(a) ⊙ u) · wd` with `h = [a | u] = x · [wg | wu]`, for `x [n, d]` and
/// f32 `wg, wu [d, F]`, `wd [F, d]`: `(y, h, [wg | wu], wd)`, the weights cast to `x`'s dtype (the
/// last three are what the backward needs).
pub fn mlp_fwd<B: Backend>(x: Tensor<B, 2>, wg: Tensor<B, 2>, wu: Tensor<B, 2>, wd: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let dt = x.dtype().into();
    let (wcat, wdc) = (super::reference::to(Tensor::cat(vec![wg, wu], 1), dt), super::reference::to(wd, dt));
    let h = x.matmul(wcat.clone());
    let f = h.dims()[1] / 2;
    let y = silu_mul_fwd(h.clone().narrow(1, 0, f), h.clone().narrow(1, f, f)).matmul(wdc.clone());
    (y, h, wcat, wdc)
}

/// Its gradients `(dx, dwg, dwu, dwd)` from `dy [n, d]` and what the forward kept; the weight
/// gradients in `w_dtype`.
pub fn mlp_bwd<B: Backend>(dy: Tensor<B, 2>, x: Tensor<B, 2>, h: Tensor<B, 2>, wcat: Tensor<B, 2>, wdc: Tensor<B, 2>, w_dtype: DType) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let f = h.dims()[1] / 2;
    let (a, u) = (h.clone().narrow(1, 0, f), h.narrow(1, f, f));
    let (da, du) = silu_mul_bwd(dy.clone().matmul(wdc.transpose()), a.clone(), u.clone());
    let w = |t: Tensor<B, 2>| super::reference::to(t, w_dtype.into());
    let dwd = silu_mul_fwd(a, u).transpose().matmul(dy);
    let dh = Tensor::cat(vec![da, du], 1);
    let dw = x.transpose().matmul(dh.clone());
    (dh.matmul(wcat.transpose()), w(dw.clone().narrow(1, 0, f)), w(dw.narrow(1, f, f)), w(dwd))
}

/// `x · g` for the upstream gradient `g [1]` of a scalar (in any float dtype; cast to `x`'s).
pub fn scale_by<B: Backend, const D: usize>(x: Tensor<B, D>, g: Tensor<B, 1>) -> Tensor<B, D> {
    let g = g.cast(x.dtype()).reshape([1; D]);
    x * g
}

/// Embedding gradient `[vocab, D]` (f32): row `r` of `g [n, D]` added at row `ids[r]`.
pub fn embed_bwd<B: Backend>(ids: Tensor<B, 1, Int>, g: Tensor<B, 2>, vocab: usize) -> Tensor<B, 2> {
    let d = g.dims()[1];
    Tensor::<B, 2>::zeros([vocab, d], &g.device()).select_assign(0, ids, g.cast(FloatDType::F32), IndexingUpdateOp::Add)
}

pub use super::ops::Rot;

/// `x [b, L, heads·hd]` → `[b·heads, L, hd]`, rotated by `rot` (`reference::rotate`) if given.
pub fn heads_split<B: Backend>(x: Tensor<B, 3>, rot: &Rot<B>, heads: usize) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let y = super::reference::rotate(x.reshape([b, l, heads, d / heads]).swap_dims(1, 2), rot);
    y.reshape([b * heads, l, d / heads])
}

/// The adjoint of [`heads_split`] (its backward; without `rot`, the head merge):
/// `g [b·heads, L, hd]` → `[b, L, heads·hd]`, `dx = g·cos + [u₂, −u₁]` with `u = g·sin`.
pub fn heads_merge<B: Backend>(g: Tensor<B, 3>, rot: &Rot<B>, heads: usize) -> Tensor<B, 3> {
    let [bh, l, hd] = g.dims();
    let g = g.reshape([bh / heads, heads, l, hd]);
    let g = match rot {
        None => g,
        Some((c, s)) => {
            let u = g.clone() * s.clone();
            let (u1, u2) = (u.clone().narrow(3, 0, hd / 2), u.narrow(3, hd / 2, hd / 2));
            g * c.clone() + Tensor::cat(vec![u2, u1.neg()], 3)
        }
    };
    g.swap_dims(1, 2).reshape([bh / heads, l, heads * hd])
}

/// `[y, mean, rstd]` of LayerNorm (`b` given) or RMSNorm (no `b`, mean 0) of `x [rows, D]` in f32:
/// `y = (x − mean)·rstd·w + b` in `x`'s dtype, `rstd = 1/√(var + eps)`, `mean`, `rstd` `[rows]`.
pub fn norm_fwd<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 1>, b: Option<Tensor<B, 1>>, eps: f32) -> [Tensor<B, 2>; 3] {
    let ([rows, d], dtype) = (x.dims(), x.dtype());
    let x = x.cast(FloatDType::F32);
    let mean = if b.is_some() { x.clone().mean_dim(1) } else { Tensor::zeros([rows, 1], &x.device()) };
    let c = x - mean.clone();
    let rstd = ((c.clone() * c.clone()).mean_dim(1) + eps as f64).sqrt().recip();
    let y = c * rstd.clone() * w.reshape([1, d]);
    let y = match b {
        Some(b) => y + b.reshape([1, d]),
        None => y,
    };
    [y.cast(dtype), mean, rstd]
}

/// Its backward from the upstream `g`: `[dx, dw]` plus `db` for LayerNorm (`layer`), with
/// `dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂))` (RMSNorm: without `mean(g·w)`), `x̂ = (x − mean)·rstd`.
/// `mean`, `rstd` are `[rows, 1]` as [`norm_fwd`] gives them.
pub fn norm_bwd<B: Backend>(g: Tensor<B, 2>, x: Tensor<B, 2>, w: Tensor<B, 1>, mean: Tensor<B, 2>, rstd: Tensor<B, 2>, layer: bool) -> Vec<Tensor<B, 2>> {
    let ([_rows, d], dtype) = (x.dims(), x.dtype());
    let g = g.cast(FloatDType::F32);
    let xh = (x.cast(FloatDType::F32) - mean) * rstd.clone();
    let gw = g.clone() * w.reshape([1, d]);
    let s2 = (gw.clone() * xh.clone()).mean_dim(1);
    let inner = if layer { gw.clone() - gw.mean_dim(1) } else { gw };
    let dx = ((inner - xh.clone() * s2) * rstd).cast(dtype);
    let mut out = vec![dx, (g.clone() * xh).sum_dim(0)];
    if layer {
        out.push(g.sum_dim(0));
    }
    out
}

/// `x [b, l, d] · w [d, n]` with the (f32) weight cast to `x`'s dtype.
pub fn linear_fwd<B: Backend>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    let ([b, l, d], n) = (x.dims(), w.dims()[1]);
    let wc = super::reference::to(w, x.dtype().into());
    x.reshape([b * l, d]).matmul(wc).reshape([b, l, n])
}

/// Its gradients from `g [b, l, n]`: `dx = g·wᵀ` (in `g`'s dtype), `dw = xᵀ·g` (in `w_dtype`, the
/// master weight's: `w` may be its cast).
pub fn linear_bwd<B: Backend>(g: Tensor<B, 3>, x: Tensor<B, 3>, w: Tensor<B, 2>, w_dtype: DType) -> (Tensor<B, 3>, Tensor<B, 2>) {
    let ([b, l, n], d) = (g.dims(), w.dims()[0]);
    let g = g.reshape([b * l, n]);
    let dx = g.clone().matmul(super::reference::to(w, g.dtype().into()).transpose());
    let dw = x.reshape([b * l, d]).transpose().matmul(g);
    (dx.reshape([b, l, d]), super::reference::to(dw, w_dtype.into()))
}

/// The MLP gate `silu(a) ⊙ u`.
pub fn silu_mul_fwd<B: Backend, const D: usize>(a: Tensor<B, D>, u: Tensor<B, D>) -> Tensor<B, D> {
    burn::tensor::activation::silu(a) * u
}

/// Its gradients from `g`: `du = g ⊙ silu(a)`, `da = g ⊙ u ⊙ σ(a) ⊙ (1 + a ⊙ (1 − σ(a)))`.
pub fn silu_mul_bwd<B: Backend, const D: usize>(g: Tensor<B, D>, a: Tensor<B, D>, u: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
    let s = burn::tensor::activation::sigmoid(a.clone());
    let du = g.clone() * a.clone() * s.clone();
    let da = g * u * s.clone() * ((s.neg() + 1.0) * a + 1.0);
    (da, du)
}

/// `Tensor` ⇄ float primitive, for the autodiff ops built from these steps.
pub fn float<B: Backend, const D: usize>(t: burn::tensor::ops::FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}
