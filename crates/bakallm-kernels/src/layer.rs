//! One decoder layer as one autodiff op, one CUDA op each way (`LayerBackend`): the parallel
//! residual `y = x + attn(n) + mlp(n)`, `n = norm(x)` (BakaLLM pristine, GPT-NeoX), or the
//! sequential one `x' = x + attn(norm(x))`, `y = x' + mlp(norm'(x'))` (GPT-2).
//!
//! Why: as the norm, attention and MLP ops plus the adds, each layer was five or more burn ops
//! forward and backward, each a task for burn-fusion's and cubecl's threads, which the GPU waits
//! on at times (README), and the adds were kernels of their own. Here the residual rides on the
//! GEMMs: the output projection writes `x + attn` (cuBLAS's C read from `x`), the MLP's down
//! projection adds its input's residual, and the norms' backward kernels add the residual's
//! gradient. The parallel residual's input projections are one GEMM each way (`layer_parallel.rs`).
//! The steps are those of `norm`, `attention_block` and `mlp`, which stay the reference.

use super::attention_block::{self as attn};
use super::prims::{self, float};
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::DType;

/// A norm's f32 `(weight, bias)` (`[D]`; no bias: RMSNorm).
pub type NormW<B> = (Tensor<B, 1>, Option<Tensor<B, 1>>);

/// The layer's f32 weights: the (attention's) norm, the attention's `[wq, wk, wv, wo]`, the
/// MLP's `[wg, wu, wd]`, the MLP's own norm for the sequential residual (`None`: parallel, the
/// MLP reads the shared norm's output; its kind matches the first's), and what is added to the
/// key projection before the head split, `[L, d]` in the activations' dtype (linspace: its ramp
/// times its scale).
pub struct Weights<B: Backend> {
    pub norm: NormW<B>,
    pub attn: [Tensor<B, 2>; 4],
    pub mlp: [Tensor<B, 2>; 3],
    pub mlp_norm: Option<NormW<B>>,
    pub k_add: Option<Tensor<B, 2>>,
}

/// The layer's gradients: `x`'s, the norms' `[dw, (db), (dw', (db'))]`, the seven matrices' (in
/// the masters' dtype) and `k_add`'s if it was given.
pub struct Grads<B: Backend> {
    pub dx: Tensor<B, 3>,
    pub norm: Vec<Tensor<B, 1>>,
    pub mats: [Tensor<B, 2>; 7],
    pub k_add: Option<Tensor<B, 2>>,
}

/// The attention's constants and the norms' epsilon.
#[derive(Debug, Clone)]
pub struct Consts<B: Backend> {
    pub attn: attn::Consts<B>,
    pub eps: f32,
}

/// What the backward needs of the sequential residual's second half: `x' [b, L, d]` (the MLP
/// norm's input), `n' [b·L, d]`, that norm's `[mean, rstd]` and its weight.
#[derive(Debug, Clone)]
pub struct SeqSaved<B: Backend> {
    pub x: Tensor<B, 3>,
    pub n: Tensor<B, 2>,
    pub stats: [Tensor<B, 1>; 2],
    pub w: Tensor<B, 1>,
}

/// What the backward needs: `n [b·L, d]`, the norm's `[mean, rstd]` (`[b·L]`), the attention's
/// kept tensors, the MLP's `[h, [wg | wu], wd]` and, sequential, the second half's. (The parallel
/// layer's CUDA op keeps q, k, v and h in one buffer and their weights in another, each in both
/// places: `layer_parallel.rs`.)
#[derive(Debug, Clone)]
pub struct Saved<B: Backend> {
    pub n: Tensor<B, 2>,
    pub stats: [Tensor<B, 1>; 2],
    pub attn: attn::Saved<B>,
    pub mlp: [Tensor<B, 2>; 3],
    pub seq: Option<SeqSaved<B>>,
    /// Whether the forward added a `k_add`.
    pub k_add: bool,
}

/// `(y, saved)` of `x [b, L, d]`; one CUDA op with `fused` on the CUDA backend, the steps of the
/// three sublayers in burn's ops elsewhere.
pub fn layer_fwd<B: Backend>(x: Tensor<B, 3>, w: Weights<B>, c: &Consts<B>) -> (Tensor<B, 3>, Saved<B>) {
    let [b, l, d] = x.dims();
    let (rows, [wg, wu, wd]) = (b * l, w.mlp);
    let flat = |t: Tensor<B, 3>| t.reshape([rows, d]);
    let [n, mean, rstd] = prims::norm_fwd(flat(x.clone()), w.norm.0, w.norm.1, c.eps);
    let k_add = w.k_add.is_some();
    let (a, attn) = attn::block_fwd(n.clone().reshape([b, l, d]), w.attn, w.k_add, &c.attn);
    // the MLP's input and the residual it adds to
    let (mlp_in, res, seq) = match w.mlp_norm {
        None => (n.clone(), x + a, None),
        Some((w2, b2)) => {
            let x2 = x + a;
            let [n2, mean2, rstd2] = prims::norm_fwd(flat(x2.clone()), w2.clone(), b2, c.eps);
            (n2.clone(), x2.clone(), Some(SeqSaved { x: x2, n: n2, stats: [mean2.reshape([rows]), rstd2.reshape([rows])], w: w2 }))
        }
    };
    let (m, h, wcat, wdc) = prims::mlp_fwd(mlp_in, wg, wu, wd);
    let y = res + m.reshape([b, l, d]);
    (y, Saved { n, stats: [mean.reshape([rows]), rstd.reshape([rows])], attn, mlp: [h, wcat, wdc], seq, k_add })
}

/// Its gradients from `dy [b, L, d]`: `dx`, the norms' `[dw, (db)]` each (`db` for LayerNorm,
/// `layer`), the seven matrices' (in `w_dtype`) and `k_add`'s; `norm_w` is the first norm's weight.
#[allow(clippy::too_many_arguments)]
pub fn layer_bwd<B: Backend>(dy: Tensor<B, 3>, x: Tensor<B, 3>, norm_w: Tensor<B, 1>, s: Saved<B>, c: &Consts<B>, layer: bool, w_dtype: DType) -> Grads<B> {
    let [b, l, d] = dy.dims();
    let (rows, [h, wcat, wdc], [mean, rstd]) = (b * l, s.mlp, s.stats);
    let flat = |t: Tensor<B, 3>| t.reshape([rows, d]);
    let norm_bwd = |g: Tensor<B, 2>, x: Tensor<B, 3>, w: Tensor<B, 1>, [m, r]: [Tensor<B, 1>; 2]| {
        let mut g = prims::norm_bwd(g, flat(x), w, m.reshape([rows, 1]), r.reshape([rows, 1]), layer).into_iter();
        let dx = g.next().expect("dx").reshape([b, l, d]);
        (dx, g.map(|t| t.reshape([d])).collect::<Vec<_>>())
    };
    let n = s.n.reshape([b, l, d]);
    let (dx, norm, mats, k_add) = match s.seq {
        None => {
            let (dn_m, dwg, dwu, dwd) = prims::mlp_bwd(flat(dy.clone()), flat(n.clone()), h, wcat, wdc, w_dtype);
            let (dn_a, [dwq, dwk, dwv, dwo], k_add) = attn::block_bwd(dy.clone(), n, s.attn, &c.attn, w_dtype, s.k_add);
            let (dn, norm) = norm_bwd(flat(dn_a) + dn_m, x, norm_w, [mean, rstd]);
            (dy + dn, norm, [dwq, dwk, dwv, dwo, dwg, dwu, dwd], k_add)
        }
        Some(q) => {
            // y = x' + mlp(norm'(x')), x' = x + attn(norm(x)): back through the second half, then the first
            let (dn2, dwg, dwu, dwd) = prims::mlp_bwd(flat(dy.clone()), q.n, h, wcat, wdc, w_dtype);
            let (dx2, norm2) = norm_bwd(dn2, q.x, q.w, q.stats);
            let dx2 = dy + dx2;
            let (dn_a, [dwq, dwk, dwv, dwo], k_add) = attn::block_bwd(dx2.clone(), n, s.attn, &c.attn, w_dtype, s.k_add);
            let (dn, mut norm) = norm_bwd(flat(dn_a), x, norm_w, [mean, rstd]);
            norm.extend(norm2);
            (dx2 + dn, norm, [dwq, dwk, dwv, dwo, dwg, dwu, dwd], k_add)
        }
    };
    Grads { dx, norm, mats, k_add }
}

#[derive(Debug)]
struct LayerBackward {
    fused: bool,
    w_dtype: DType,
    /// LayerNorm (the norms have a bias).
    layer: bool,
}

impl<B: Prims, const N: usize> Backward<B, N> for LayerBackward {
    /// (x, the first norm's weight, what the forward kept, the constants)
    type State = (FloatTensor<B>, FloatTensor<B>, Saved<B>, Consts<B>);
    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = float::<B, 3>(grads.consume::<B>(&ops.node));
        let (x, norm_w, saved, c) = ops.state;
        // parents: x, the norms' weights (and biases), the seven matrices (and k_add)
        let g = B::layer_bwd(dy, float(x), float(norm_w), saved, &c, self.layer, self.w_dtype, self.fused);
        let mut ds = vec![g.dx.into_primitive().tensor()];
        ds.extend(g.norm.into_iter().map(|t| t.into_primitive().tensor()));
        ds.extend(g.mats.map(|t| t.into_primitive().tensor()));
        ds.extend(g.k_add.map(|t| t.into_primitive().tensor()));
        for (node, d) in ops.parents.into_iter().zip(ds) {
            if let Some(node) = node {
                grads.register::<B>(node.id, d);
            }
        }
    }
}

/// The layer as one node of `Autodiff<B, C>`'s graph: `x [b, L, d]` and all weights tracked.
pub fn layer_ad<B: Prims, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 3>, w: Weights<Autodiff<B, C>>, c: Consts<B>, fused: bool) -> Tensor<Autodiff<B, C>, 3> {
    let x = x.into_primitive().tensor();
    let (layer, seq) = (w.norm.1.is_some(), w.mlp_norm.is_some());
    // the norms' weights (and biases): the first norm's, then the MLP's (sequential)
    let norms: Vec<_> = std::iter::once(w.norm).chain(w.mlp_norm).flat_map(|(w, b)| std::iter::once(w).chain(b)).map(|t| t.into_primitive().tensor()).collect();
    let mats: Vec<_> = w.attn.into_iter().chain(w.mlp).map(|t| t.into_primitive().tensor()).collect();
    let k_add = w.k_add.map(|t| t.into_primitive().tensor());
    let inner = |i: usize| float::<B, 1>(norms[i].primitive.clone());
    let norm_at = |i: usize| (inner(i), layer.then(|| inner(i + 1)));
    let mat = |i: usize| float::<B, 2>(mats[i].primitive.clone());
    let weights = Weights {
        norm: norm_at(0),
        attn: [0, 1, 2, 3].map(mat),
        mlp: [4, 5, 6].map(mat),
        mlp_norm: seq.then(|| norm_at(1 + layer as usize)),
        k_add: k_add.as_ref().map(|t| float(t.primitive.clone())),
    };
    let w_dtype = weights.attn[0].dtype();
    let (y, saved) = B::layer_fwd(float::<B, 3>(x.primitive.clone()), weights, &c, fused);
    let y = y.into_primitive().tensor();
    let state = (x.primitive.clone(), norms[0].primitive.clone(), saved, c);
    let bw = LayerBackward { fused, w_dtype, layer };
    let mut parents = vec![x.node.clone()];
    parents.extend(norms.iter().map(|t| t.node.clone()));
    parents.extend(mats.iter().map(|m| m.node.clone()));
    parents.extend(k_add.map(|t| t.node));
    macro_rules! node {
        ($($n:literal)*) => {
            match parents.len() {
                $($n => match bw.prepare::<C>(<[_; $n]>::try_from(parents).expect("parents")).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => prep.finish(state, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },)*
                n => unreachable!("{n} parents"),
            }
        };
    }
    // x, 1–4 norm tensors, 7 matrices, k_add
    float(node!(9 10 11 12 13 14))
}

#[cfg(feature = "cuda")]
pub(super) use cuda::LayerBackend;

/// The CUDA side (`LayerBackend` on `CubeBackend` and `Fusion`).
#[cfg(feature = "cuda")]
#[path = "layer_cuda.rs"]
mod cuda;

/// The parallel residual's CUDA steps, its input projections as one GEMM.
#[cfg(feature = "cuda")]
#[path = "layer_parallel.rs"]
mod parallel;

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
