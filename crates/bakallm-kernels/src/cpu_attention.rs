//! Causal multi-head self-attention on the CPU as one op each way (`train.attention` other than
//! "burn"): the CPU counterpart of the CUDA attention ops, between burn's projections.
//!
//! Why: through burn's ops a layer's attention is ~20 passes each way over q, k, v and the
//! `[b, H, L, L]` scores (the rotation's narrow, cat, neg, mul and add; the head split's strided
//! copies; scale, bias, softmax's max, subtract, exp, sum and divide; the backward of each), most
//! of them burn-flex's strided iteration over `swap_dims` views. Here one task per (sample, head)
//! reads its rows of the projections `[b, L, d]`, rotates q and k (RoPE, xPos), forms the scores of
//! the keys at or before each query (the causal mask is never formed), adds the bias where it holds
//! more than the mask (ALiBi), and writes `softmax · v`; it keeps the rotated q, k, v and the
//! probabilities. Backward, the same task forms `dv = pᵀ·dy`, `ds = p ⊙ (dy·vᵀ − rowsum)`, `dq` and
//! `dk`, and unrotates them. Each task writes its own buffers and sums in a fixed order, so the
//! result does not depend on the number of threads (CPU runs stay bit-exact).
//!
//! The reference is `reference::attention`, against which the tests check the values and the
//! gradients of the input and of every weight, for each position scheme.

use super::host::{primitive_values, tensor, values};
use super::host_loss::exp_shifted_any;
use super::ops::{AttnKernel, AttnWeights, BakaOps, Kernels, Positions, Rot};
use super::reference as r;
use super::staged::read_now;
use crate::backend::{Cpu, CpuTrain};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use rayon::prelude::*;
use std::sync::Arc;

/// The shape, scale and position tables of one call, on the host.
#[derive(Debug)]
pub struct Consts {
    pub b: usize,
    pub l: usize,
    pub heads: usize,
    pub hd: usize,
    pub scale: f32,
    /// `[cos, sin]` `[L, hd]` that rotate q and k (RoPE, xPos).
    pub rot_q: Option<[Vec<f32>; 2]>,
    pub rot_k: Option<[Vec<f32>; 2]>,
    /// The logits' bias `[1 or H, L, L]` (ALiBi), read at and below the diagonal; `None`: the
    /// causal mask alone.
    pub bias: Option<Vec<f32>>,
}

impl Consts {
    /// The constants of `h [b, L, d]`'s attention, or `None` where this op does not apply: not
    /// f32, an odd head dim with a rotation, or a bias that is not `[1, 1 or H, L, L]`.
    pub fn new<B: Backend>(h: &Tensor<B, 3>, w: &AttnWeights<B>, pos: &Positions<B>) -> Option<Self> {
        let [b, l, d] = h.dims();
        let (heads, hd) = (w.heads, d / w.heads);
        let rotates = pos.rot_q.is_some() || pos.rot_k.is_some();
        let [b1, hb, l1, l2] = pos.bias.dims();
        if h.dtype() != DType::F32 || heads * hd != d || (rotates && hd % 2 == 1) || b1 != 1 || (hb != 1 && hb != heads) || (l1, l2) != (l, l) {
            return None;
        }
        let table = |rot: &Rot<B>| rot.as_ref().map(|(c, s)| [read_now(c.clone()), read_now(s.clone())]);
        let (rot_q, rot_k) = (table(&pos.rot_q), table(&pos.rot_k));
        if [&rot_q, &rot_k].iter().any(|t| t.as_ref().is_some_and(|[c, s]| c.len() != l * hd || s.len() != l * hd)) {
            return None;
        }
        Some(Self { b, l, heads, hd, scale: w.scale(), rot_q, rot_k, bias: pos.slopes_pos.is_some().then(|| read_now(pos.bias.clone())) })
    }

    /// The bias rows `[L, L]` of head `h`, if any.
    fn bias(&self, h: usize) -> Option<&[f32]> {
        let n = self.l * self.l;
        self.bias.as_ref().map(|b| if b.len() == n { &b[..] } else { &b[h * n..(h + 1) * n] })
    }
}

/// What the backward needs, per (sample, head) task: rotated q, k and v `[b·H, L, hd]` and the
/// probabilities `[b·H, L, L]` (zero above the diagonal).
#[derive(Debug)]
pub struct Saved {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    p: Vec<f32>,
}

/// `(y [b, L, d], saved)` of the projections `q, k, v [b, L, d]` (row-major f32).
pub fn forward(q: &[f32], k: &[f32], v: &[f32], c: &Consts) -> (Vec<f32>, Saved) {
    let (n, tasks) = (c.l * c.hd, c.b * c.heads);
    let mut s = Saved { q: vec![0.0; tasks * n], k: vec![0.0; tasks * n], v: vec![0.0; tasks * n], p: vec![0.0; tasks * c.l * c.l] };
    let mut o = vec![0f32; tasks * n];
    let blocks = s.q.par_chunks_mut(n).zip(s.k.par_chunks_mut(n)).zip(s.v.par_chunks_mut(n)).zip(s.p.par_chunks_mut(c.l * c.l)).zip(o.par_chunks_mut(n));
    blocks.enumerate().for_each(|(t, ((((qt, kt), vt), pt), ot))| {
        let (bi, h) = (t / c.heads, t % c.heads);
        split(q, bi, h, c, c.rot_q.as_ref(), qt);
        split(k, bi, h, c, c.rot_k.as_ref(), kt);
        split(v, bi, h, c, None, vt);
        widest_fwd(Fwd { q: qt, k: kt, v: vt, p: pt, o: ot, l: c.l, hd: c.hd, scale: c.scale, bias: c.bias(h) });
    });
    (merge(&o, c), s)
}

/// `[dq, dk, dv]` `[b, L, d]` from the output gradient `dy [b, L, d]`.
pub fn backward(dy: &[f32], s: &Saved, c: &Consts) -> [Vec<f32>; 3] {
    let (n, tasks) = (c.l * c.hd, c.b * c.heads);
    let (mut dq, mut dk, mut dv) = (vec![0f32; tasks * n], vec![0f32; tasks * n], vec![0f32; tasks * n]);
    let blocks = dq.par_chunks_mut(n).zip(dk.par_chunks_mut(n)).zip(dv.par_chunks_mut(n)).enumerate();
    blocks.for_each(|(t, ((dqt, dkt), dvt))| {
        let (bi, h) = (t / c.heads, t % c.heads);
        let mut dyt = vec![0f32; n];
        split(dy, bi, h, c, None, &mut dyt);
        let (q, k, v) = (&s.q[t * n..(t + 1) * n], &s.k[t * n..(t + 1) * n], &s.v[t * n..(t + 1) * n]);
        widest_bwd(Bwd { dy: &dyt, q, k, v, p: &s.p[t * c.l * c.l..(t + 1) * c.l * c.l], dq: dqt, dk: dkt, dv: dvt, l: c.l, hd: c.hd, scale: c.scale });
        unrotate(dqt, c.rot_q.as_ref(), c.hd);
        unrotate(dkt, c.rot_k.as_ref(), c.hd);
    });
    [merge(&dq, c), merge(&dk, c), merge(&dv, c)]
}

/// Head `h` of sample `bi` of `x [b, L, d]` into `out [L, hd]`, rotated by `rot`:
/// `x ⊙ cos + [−x₂, x₁] ⊙ sin` (the reference's `rotate`, term by term).
fn split(x: &[f32], bi: usize, h: usize, c: &Consts, rot: Option<&[Vec<f32>; 2]>, out: &mut [f32]) {
    let (l, hd, d, half) = (c.l, c.hd, c.heads * c.hd, c.hd / 2);
    for (i, dst) in out.chunks_exact_mut(hd).enumerate().take(l) {
        let src = &x[(bi * l + i) * d + h * hd..][..hd];
        match rot {
            None => dst.copy_from_slice(src),
            Some([cos, sin]) => {
                let (cs, sn) = (&cos[i * hd..][..hd], &sin[i * hd..][..hd]);
                for j in 0..hd {
                    let partner = if j < half { -src[j + half] } else { src[j - half] };
                    dst[j] = src[j] * cs[j] + partner * sn[j];
                }
            }
        }
    }
}

/// The gradient `g [L, hd]` of a rotated block, in place, as that of the block before the
/// rotation: `g ⊙ cos + [g₂ ⊙ sin₂, −g₁ ⊙ sin₁]`.
fn unrotate(g: &mut [f32], rot: Option<&[Vec<f32>; 2]>, hd: usize) {
    let Some([cos, sin]) = rot else { return };
    let half = hd / 2;
    let mut row = vec![0f32; hd];
    for (i, gi) in g.chunks_exact_mut(hd).enumerate() {
        let (cs, sn) = (&cos[i * hd..][..hd], &sin[i * hd..][..hd]);
        for j in 0..hd {
            row[j] = if j < half { gi[j] * cs[j] + gi[j + half] * sn[j + half] } else { gi[j] * cs[j] - gi[j - half] * sn[j - half] };
        }
        gi.copy_from_slice(&row);
    }
}

/// The per-task blocks `[b·H, L, hd]` as `[b, L, d]` (heads side by side), one task per sample.
fn merge(blocks: &[f32], c: &Consts) -> Vec<f32> {
    let (l, hd, d) = (c.l, c.hd, c.heads * c.hd);
    let mut out = vec![0f32; c.b * l * d];
    out.par_chunks_mut(l * d).enumerate().for_each(|(bi, o)| {
        for h in 0..c.heads {
            let block = &blocks[(bi * c.heads + h) * l * hd..][..l * hd];
            for (i, row) in block.chunks_exact(hd).enumerate() {
                o[i * d + h * hd..][..hd].copy_from_slice(row);
            }
        }
    });
    out
}

/// One task's forward: rotated `q, k`, `v` `[L, hd]` in; probabilities `p [L, L]` (zeroed) and
/// output `o [L, hd]` (zeroed) out.
struct Fwd<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    p: &'a mut [f32],
    o: &'a mut [f32],
    l: usize,
    hd: usize,
    scale: f32,
    bias: Option<&'a [f32]>,
}

#[inline(always)]
fn fwd_any(t: Fwd) {
    let Fwd { q, k, v, p, o, l, hd, scale, bias } = t;
    let kt = transpose(k, l, hd);
    for i in 0..l {
        // scores of keys 0..=i: Σ_c q[i, c] · kᵀ[c, 0..=i], c in order
        let row = &mut p[i * l..i * l + i + 1];
        for (c, &a) in q[i * hd..][..hd].iter().enumerate() {
            axpy(row, a, &kt[c * l..c * l + i + 1]);
        }
        match bias {
            Some(bias) => row.iter_mut().zip(&bias[i * l..]).for_each(|(s, &b)| *s = *s * scale + b),
            None => row.iter_mut().for_each(|s| *s *= scale),
        }
        let (_, sum) = exp_shifted_any(row);
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|p| *p *= inv);
        let oi = &mut o[i * hd..][..hd];
        for (j, &pj) in row.iter().enumerate() {
            axpy(oi, pj, &v[j * hd..][..hd]);
        }
    }
}

/// One task's backward: `dy`, the kept rotated `q, k`, `v` `[L, hd]` and `p [L, L]` in; the
/// gradients of the rotated q and k and of v (`[L, hd]`, zeroed) out.
struct Bwd<'a> {
    dy: &'a [f32],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    p: &'a [f32],
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    l: usize,
    hd: usize,
    scale: f32,
}

#[inline(always)]
fn bwd_any(t: Bwd) {
    let Bwd { dy, q, k, v, p, dq, dk, dv, l, hd, scale } = t;
    let vt = transpose(v, l, hd);
    let mut dsrow = vec![0f32; l];
    for i in 0..l {
        let (dyi, qi, pi) = (&dy[i * hd..][..hd], &q[i * hd..][..hd], &p[i * l..i * l + i + 1]);
        // dv[j] += p[i, j] · dy[i]
        for (j, &pj) in pi.iter().enumerate() {
            axpy(&mut dv[j * hd..][..hd], pj, dyi);
        }
        // dp[i, j] = Σ_c dy[i, c] · vᵀ[c, j]; ds = p ⊙ (dp − Σ_j p·dp) · scale
        let ds = &mut dsrow[..i + 1];
        ds.fill(0.0);
        for (c, &a) in dyi.iter().enumerate() {
            axpy(ds, a, &vt[c * l..c * l + i + 1]);
        }
        let rowsum = dot(pi, ds);
        ds.iter_mut().zip(pi).for_each(|(g, &pj)| *g = pj * (*g - rowsum) * scale);
        // dq[i] = Σ_j ds[j] · k[j]; dk[j] += ds[j] · q[i]
        let dqi = &mut dq[i * hd..][..hd];
        for (j, &g) in ds.iter().enumerate() {
            axpy(dqi, g, &k[j * hd..][..hd]);
            axpy(&mut dk[j * hd..][..hd], g, qi);
        }
    }
}

/// `y += a · x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}

/// `Σ a ⊙ b` over eight lanes combined in a fixed order (the same at any vector width).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).fold(0.0, |s, v| s + v);
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().fold(0.0, |s, &v| s + v) + tail
}

/// `x [rows, cols]` transposed.
#[inline(always)]
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for (i, row) in x.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}

widest! {
    /// [`fwd_any`] at the CPU's widest vectors.
    fn widest_fwd = fwd_any(t: Fwd)
}

widest! {
    /// [`bwd_any`] at the CPU's widest vectors.
    fn widest_bwd = bwd_any(t: Bwd)
}

/// [`BakaOps::self_attention`] on either CPU backend: burn's projections around `core` (this
/// op), or the reference where `k` asks for burn's attention or [`Consts::new`] declines.
pub fn self_attention<B: BakaOps>(h: Tensor<B, 3>, w: &AttnWeights<B>, pos: &Positions<B>, k: &Kernels, core: fn([Tensor<B, 3>; 3], Consts) -> Tensor<B, 3>) -> Tensor<B, 3> {
    let c = if k.attention == AttnKernel::Burn { None } else { Consts::new(&h, w, pos) };
    let Some(c) = c else { return r::attention(h, w, pos, k) };
    let (q, key, v) = (B::dense(h.clone(), w.q.clone(), k), r::k_proj(h.clone(), w, pos, k), B::dense(h, w.v.clone(), k));
    B::dense(core([q, key, v], c), w.o.clone(), k)
}

/// The op on the inference backend: the forward alone.
pub fn core_fwd([q, k, v]: [Tensor<Cpu, 3>; 3], c: Consts) -> Tensor<Cpu, 3> {
    let dims = q.dims();
    let (y, _) = forward(&values(q), &values(k), &values(v), &c);
    tensor(y, dims)
}

/// The op on the training backend: autodiff sees one node whose backward is [`backward`].
pub fn core_train([q, k, v]: [Tensor<CpuTrain, 3>; 3], c: Consts) -> Tensor<CpuTrain, 3> {
    #[derive(Debug)]
    struct AttentionBackward(Arc<Consts>);
    impl Backward<Cpu, 3> for AttentionBackward {
        type State = Arc<Saved>;
        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let c = &self.0;
            let dy = primitive_values(grads.consume::<Cpu>(&ops.node));
            for (node, g) in ops.parents.into_iter().zip(backward(&dy, &ops.state, c)) {
                if let Some(node) = node {
                    grads.register::<Cpu>(node.id, tensor(g, [c.b, c.l, c.heads * c.hd]).into_primitive().tensor());
                }
            }
        }
    }
    let dims = q.dims();
    let [q, k, v] = [q, k, v].map(|t| t.into_primitive().tensor());
    let read = |t: &burn::tensor::ops::FloatTensor<CpuTrain>| primitive_values(t.primitive.clone());
    let (y, saved) = forward(&read(&q), &read(&k), &read(&v), &c);
    let y = tensor(y, dims).into_primitive().tensor();
    let out = match AttentionBackward(Arc::new(c)).prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(Arc::new(saved), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
#[path = "cpu_attention_tests.rs"]
mod tests;
