//! One decoder layer as one autodiff op, one CUDA op each way (`LayerBackend`): the parallel
//! residual `y = x + attn(n) + mlp(n)`, `n = norm(x)` (BakaLLM pristine, GPT-NeoX), or the
//! sequential one `x' = x + attn(norm(x))`, `y = x' + mlp(norm'(x'))` (GPT-2).
//!
//! Why: as the norm, attention and MLP ops plus the adds, each layer was five or more burn ops
//! forward and backward, each a task for burn-fusion's and cubecl's threads, which the GPU waits
//! on at times (README), and the adds were kernels of their own. Here the residual rides on the
//! GEMMs: the output projection writes `x + attn` (cuBLAS's C read from `x`), the MLP's down
//! projection adds its input's residual; backward, the attention's input-gradient GEMM adds into
//! the MLP's (parallel), and the norms' backward kernels add the residual's gradient. The steps
//! are those of `norm`, `attention_block` and `mlp`, which stay the reference.

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
/// kept tensors, the MLP's `[h, [wg | wu], wd]` and, sequential, the second half's.
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

/// The CUDA side: `LayerBackend` on `CubeBackend` (the sublayers' CUDA steps in a row, the adds
/// folded into their GEMMs and the norms' backward) and on `Fusion` (one custom op each way).
#[cfg(feature = "cuda")]
mod cuda {
    use super::super::fusion::{attn_consts, attn_extras, custom_vec, inputs, outputs};
    use super::super::{attention_block, mlp, norm};
    use burn::prelude::*;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::DType;
    use burn_cubecl::{element::BoolElement, tensor::CubeTensor, CubeBackend, FloatElement, IntElement};
    use burn_fusion::{Fusion, FusionBackend};
    use cubecl::cuda::CudaRuntime;

    type T = CubeTensor<CudaRuntime>;
    type Rot<B> = [Option<[FloatTensor<B>; 2]>; 2];

    /// The forward's outputs: 14, and 4 more for the sequential residual's second half.
    const FWD_OUTS: usize = 14;
    const SEQ_OUTS: usize = 4;

    pub trait LayerBackend: Backend {
        /// `[y, n, mean, rstd, q, k, v, o, lse, wqkv, wo, h, wcat, wdc]`, then with `seq` (the
        /// sequential residual) `[x', n', mean', rstd']`, of `x [b, L, d]` and f32 `ws = [w, (b,)
        /// (w', (b',)) wq, wk, wv, wo, wg, wu, wd]` (no `b`: RMSNorm; `w', b'`: the MLP's norm, with
        /// `seq`); the key projection plus `k_add [L, d]` if given.
        #[allow(clippy::too_many_arguments)]
        fn layer_fwd(
            x: FloatTensor<Self>,
            ws: Vec<FloatTensor<Self>>,
            k_add: Option<FloatTensor<Self>>,
            rot: Rot<Self>,
            bias: Option<FloatTensor<Self>>,
            heads: usize,
            scale: f32,
            eps: f32,
            seq: bool,
        ) -> Vec<FloatTensor<Self>>;
        /// `[dx, dw, (db,) (dw', (db'),) dwq, dwk, dwv, dwo, dwg, dwu, dwd, (dk_add)]` from `dy`,
        /// `x`, the first norm's weight and the forward's outputs after `y` (sequential: then the
        /// MLP norm's weight).
        #[allow(clippy::too_many_arguments)]
        fn layer_bwd(
            dy: FloatTensor<Self>,
            x: FloatTensor<Self>,
            w: FloatTensor<Self>,
            saved: Vec<FloatTensor<Self>>,
            rot: Rot<Self>,
            bias: Option<FloatTensor<Self>>,
            heads: usize,
            scale: f32,
            layer: bool,
            k_add: bool,
            w_dtype: DType,
        ) -> Vec<FloatTensor<Self>>;
    }

    /// `t` (compact) seen as `shape`.
    fn view(t: T, shape: Vec<usize>) -> T {
        let t = super::super::nvrtc::compact(t);
        CubeTensor::new_contiguous(t.client.clone(), t.device.clone(), Shape::from(shape), t.handle, t.dtype)
    }

    /// The first `k` of `it`.
    fn take(it: &mut impl Iterator<Item = T>, k: usize, what: &str) -> Vec<T> {
        (0..k).map(|_| it.next().unwrap_or_else(|| panic!("layer: {what}"))).collect()
    }

    /// A norm's `(w, b)` from its one or two tensors.
    fn norm_w(ts: Vec<T>) -> (T, Option<T>) {
        let mut ts = ts.into_iter();
        (ts.next().expect("norm weight"), ts.next())
    }

    impl<F: FloatElement, I: IntElement, BT: BoolElement> LayerBackend for CubeBackend<CudaRuntime, F, I, BT> {
        fn layer_fwd(x: T, ws: Vec<T>, k_add: Option<T>, rot: Rot<Self>, bias: Option<T>, heads: usize, scale: f32, eps: f32, seq: bool) -> Vec<T> {
            let [b, l, d] = x.meta.shape().dims::<3>();
            let rows = b * l;
            let per = (ws.len() - 7) / (1 + seq as usize);
            let mut ws = ws.into_iter();
            let (nw, nb) = norm_w(take(&mut ws, per, "norm"));
            let mlp_norm = seq.then(|| norm_w(take(&mut ws, per, "MLP norm")));
            let [wq, wk, wv, wo, wg, wu, wd]: [T; 7] = take(&mut ws, 7, "7 matrices").try_into().expect("7 matrices");
            let [n, mean, rstd] = norm::cuda::fwd(view(x.clone(), vec![rows, d]), nw, nb, eps);
            // x' = x + attn(n), the residual added by the output projection
            let [x2, q, k, v, o, lse, wqkv, wo] = attention_block::cuda::fwd(view(n.clone(), vec![b, l, d]), [wq, wk, wv, wo], rot, bias, heads, scale, Some(x), k_add);
            let x2 = view(x2, vec![rows, d]);
            // the MLP reads n (parallel) or norm'(x') (sequential); y = x' + mlp(·)
            let (mlp_in, second) = match mlp_norm {
                None => (n.clone(), vec![]),
                Some((w2, b2)) => {
                    let [n2, mean2, rstd2] = norm::cuda::fwd(x2.clone(), w2, b2, eps);
                    (n2.clone(), vec![view(x2.clone(), vec![b, l, d]), n2, mean2, rstd2])
                }
            };
            let [y, h, wcat, wdc] = mlp::cuda::fwd(mlp_in, wg, wu, wd, Some(x2));
            let mut out = vec![view(y, vec![b, l, d]), n, mean, rstd, q, k, v, o, lse, wqkv, wo, h, wcat, wdc];
            out.extend(second);
            out
        }

        fn layer_bwd(dy: T, x: T, w: T, saved: Vec<T>, rot: Rot<Self>, bias: Option<T>, heads: usize, scale: f32, layer: bool, k_add: bool, w_dtype: DType) -> Vec<T> {
            let [b, l, d] = x.meta.shape().dims::<3>();
            let rows = b * l;
            let seq = saved.len() == FWD_OUTS - 1 + SEQ_OUTS + 1;
            let mut saved = saved.into_iter();
            let [n, mean, rstd, q, k, v, o, lse, wqkv, wo, h, wcat, wdc]: [T; 13] = take(&mut saved, 13, "13 saved").try_into().expect("13 saved");
            let attn_saved = [q, k, v, o, lse, wqkv, wo];
            let dy2 = view(dy.clone(), vec![rows, d]);
            let (n3, xr) = (view(n, vec![b, l, d]), view(x, vec![rows, d]));
            let (mut g, mats, dk_add) = if seq {
                // back through y = x' + mlp(norm'(x')), then x' = x + attn(norm(x))
                let [xs, n2, mean2, rstd2, w2]: [T; 5] = take(&mut saved, 5, "the second half's").try_into().expect("5 saved");
                let [dn2, dwg, dwu, dwd] = mlp::cuda::bwd(dy2.clone(), n2, h, wcat, wdc, w_dtype);
                let mut g2 = norm::cuda::bwd(dn2, view(xs, vec![rows, d]), w2, mean2, rstd2, layer, Some(dy2));
                let dx2 = g2.remove(0);
                let ([dn, dwq, dwk, dwv, dwo], dk_add) = attention_block::cuda::bwd(view(dx2.clone(), vec![b, l, d]), n3, attn_saved, rot, bias, heads, scale, w_dtype, None, k_add);
                let mut g = norm::cuda::bwd(view(dn, vec![rows, d]), xr, w, mean, rstd, layer, Some(dx2));
                g.extend(g2);
                (g, [dwq, dwk, dwv, dwo, dwg, dwu, dwd], dk_add)
            } else {
                let [dn, dwg, dwu, dwd] = mlp::cuda::bwd(dy2.clone(), view(n3.clone(), vec![rows, d]), h, wcat, wdc, w_dtype);
                // dn += the attention's input gradient, in place
                let ([dn, dwq, dwk, dwv, dwo], dk_add) = attention_block::cuda::bwd(dy, n3, attn_saved, rot, bias, heads, scale, w_dtype, Some(view(dn, vec![b, l, d])), k_add);
                let g = norm::cuda::bwd(view(dn, vec![rows, d]), xr, w, mean, rstd, layer, Some(dy2));
                (g, [dwq, dwk, dwv, dwo, dwg, dwu, dwd], dk_add)
            };
            g[0] = view(g[0].clone(), vec![b, l, d]);
            g.extend(mats);
            g.extend(dk_add);
            g
        }
    }

    impl<B: FusionBackend + LayerBackend> LayerBackend for Fusion<B> {
        fn layer_fwd(
            x: FloatTensor<Self>,
            ws: Vec<FloatTensor<Self>>,
            k_add: Option<FloatTensor<Self>>,
            rot: Rot<Self>,
            bias: Option<FloatTensor<Self>>,
            heads: usize,
            scale: f32,
            eps: f32,
            seq: bool,
        ) -> Vec<FloatTensor<Self>> {
            let ([b, l, d], dt, f) = (x.shape.dims::<3>(), x.dtype, ws[ws.len() - 1].shape[0]);
            let (rows, bh, hd, n_ws) = (b * l, b * heads, d / heads, ws.len());
            let head = (vec![bh, l, hd], dt);
            let mut outs = vec![
                (vec![b, l, d], dt),
                (vec![rows, d], dt),
                (vec![rows], DType::F32),
                (vec![rows], DType::F32),
                head.clone(),
                head.clone(),
                head,
                (vec![b, l, d], dt), // o, the heads side by side (`flash::OutLayout::Merged`)
                (vec![bh, l], DType::F32),
                (vec![d, 3 * d], dt),
                (vec![d, d], dt),
                (vec![rows, 2 * f], dt),
                (vec![d, 2 * f], dt),
                (vec![f, d], dt),
            ];
            if seq {
                outs.extend([(vec![b, l, d], dt), (vec![rows, d], dt), (vec![rows], DType::F32), (vec![rows], DType::F32)]);
            }
            let mut ins = vec![x];
            ins.extend(ws);
            let added = k_add.is_some();
            ins.extend(k_add);
            let mut flags = attn_extras(&mut ins, rot, bias, scale).to_vec();
            flags.extend([eps, n_ws as f32, added as u8 as f32, seq as u8 as f32]);
            custom_vec::<B>("layer_fwd", ins, outs, (&flags, heads), |d, f, heads, h| {
                let mut ins = inputs::<B>(d, h);
                let x = ins.next().expect("x");
                let ws = (0..f[5] as usize).map(|_| ins.next().expect("weights")).collect();
                let k_add = (f[6] != 0.0).then(|| ins.next().expect("k_add"));
                let (rot, bias) = attn_consts::<B>(f, &mut ins);
                outputs::<B>(d, h, B::layer_fwd(x, ws, k_add, rot, bias, heads, f[0], f[4], f[7] != 0.0));
            })
        }

        fn layer_bwd(
            dy: FloatTensor<Self>,
            x: FloatTensor<Self>,
            w: FloatTensor<Self>,
            saved: Vec<FloatTensor<Self>>,
            rot: Rot<Self>,
            bias: Option<FloatTensor<Self>>,
            heads: usize,
            scale: f32,
            layer: bool,
            k_add: bool,
            w_dtype: DType,
        ) -> Vec<FloatTensor<Self>> {
            let ([b, l, d], dt, f, n_saved) = (x.shape.dims::<3>(), x.dtype, saved[12].shape[0], saved.len());
            let norms = (1 + layer as usize) * (1 + (n_saved > FWD_OUTS - 1) as usize);
            // the weight gradients' dtype travels as the outputs' (read back in `run`)
            let mut outs = vec![(vec![b, l, d], dt)];
            outs.extend(vec![(vec![d], DType::F32); norms]);
            outs.extend(vec![(vec![d, d], w_dtype); 4]);
            outs.extend([(vec![d, f], w_dtype), (vec![d, f], w_dtype), (vec![f, d], w_dtype)]);
            if k_add {
                outs.push((vec![l, d], dt));
            }
            let mut ins = vec![dy, x, w];
            ins.extend(saved);
            let mut flags = attn_extras(&mut ins, rot, bias, scale).to_vec();
            flags.extend([layer as u8 as f32, k_add as u8 as f32, n_saved as f32]);
            custom_vec::<B>("layer_bwd", ins, outs, (&flags, heads), |d, f, heads, h| {
                let mut ins = inputs::<B>(d, h);
                let [dy, x, w] = [(); 3].map(|_| ins.next().expect("dy, x, w"));
                let saved = (0..f[6] as usize).map(|_| ins.next().expect("saved")).collect();
                let (rot, bias) = attn_consts::<B>(f, &mut ins);
                // the MLP's down projection's gradient, the last weight gradient
                let w_dtype = d.outputs[d.outputs.len() - 1 - (f[5] != 0.0) as usize].dtype;
                outputs::<B>(d, h, B::layer_bwd(dy, x, w, saved, rot, bias, heads, f[0], f[4] != 0.0, f[5] != 0.0, w_dtype));
            })
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
