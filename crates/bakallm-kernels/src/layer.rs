//! One parallel-residual decoder layer `y = x + attn(n) + mlp(n)`, `n = norm(x)` (BakaLLM
//! pristine, GPT-NeoX), as one autodiff op: one CUDA op each way (`LayerBackend`).
//!
//! Why: as the norm, attention and MLP ops plus two adds, each layer was five burn ops forward
//! and five backward (`n`'s two gradients and `x`'s two are summed by burn), each a task for
//! burn-fusion's and cubecl's threads, which the GPU waits on at times (README), and the four
//! adds were kernels of their own. Here the residual rides on the GEMMs: the output projection
//! writes `x + attn` (cuBLAS's C read from `x`), the MLP's down projection adds into it; backward,
//! the attention's input-gradient GEMM adds into the MLP's, and the norm's backward kernel adds
//! `dy`. The steps are those of `norm`, `attention_block` and `mlp`, which stay the reference.

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

/// The layer's f32 weights: the norm's `(w, b)` (`[D]`; no `b`: RMSNorm), the attention's
/// `[wq, wk, wv, wo]` and the MLP's `[wg, wu, wd]`; and what is added to the key projection
/// before the head split, `[L, d]` in the activations' dtype (linspace: its ramp times its scale).
pub struct Weights<B: Backend> {
    pub norm: (Tensor<B, 1>, Option<Tensor<B, 1>>),
    pub attn: [Tensor<B, 2>; 4],
    pub mlp: [Tensor<B, 2>; 3],
    pub k_add: Option<Tensor<B, 2>>,
}

/// The layer's gradients: `x`'s, the norm's `[dw, (db)]`, the seven matrices' (in the masters'
/// dtype) and `k_add`'s if it was given.
pub struct Grads<B: Backend> {
    pub dx: Tensor<B, 3>,
    pub norm: Vec<Tensor<B, 1>>,
    pub mats: [Tensor<B, 2>; 7],
    pub k_add: Option<Tensor<B, 2>>,
}

/// The attention's constants and the norm's epsilon.
#[derive(Debug, Clone)]
pub struct Consts<B: Backend> {
    pub attn: attn::Consts<B>,
    pub eps: f32,
}

/// What the backward needs: `n [b·L, d]`, the norm's `[mean, rstd]` (`[b·L]`), the attention's
/// kept tensors and the MLP's `[h, [wg | wu], wd]`.
#[derive(Debug, Clone)]
pub struct Saved<B: Backend> {
    pub n: Tensor<B, 2>,
    pub stats: [Tensor<B, 1>; 2],
    pub attn: attn::Saved<B>,
    pub mlp: [Tensor<B, 2>; 3],
    /// Whether the forward added a `k_add`.
    pub k_add: bool,
}

/// `(y, saved)` of `x [b, L, d]`; one CUDA op with `fused` on the CUDA backend, the steps of the
/// three sublayers in burn's ops elsewhere.
pub fn layer_fwd<B: Backend>(x: Tensor<B, 3>, w: Weights<B>, c: &Consts<B>) -> (Tensor<B, 3>, Saved<B>) {
    let [b, l, d] = x.dims();
    let (rows, [wg, wu, wd]) = (b * l, w.mlp);
    let [n, mean, rstd] = prims::norm_fwd(x.clone().reshape([rows, d]), w.norm.0, w.norm.1, c.eps);
    let k_add = w.k_add.is_some();
    let (a, attn) = attn::block_fwd(n.clone().reshape([b, l, d]), w.attn, w.k_add, &c.attn);
    let (m, h, wcat, wdc) = prims::mlp_fwd(n.clone(), wg, wu, wd);
    let y = x + a + m.reshape([b, l, d]);
    (y, Saved { n, stats: [mean.reshape([rows]), rstd.reshape([rows])], attn, mlp: [h, wcat, wdc], k_add })
}

/// Its gradients from `dy [b, L, d]`: `dx`, the norm's `[dw, db]` (`db` for LayerNorm, `layer`),
/// the seven matrices' (in `w_dtype`) and `k_add`'s; `norm_w` is the norm's weight.
#[allow(clippy::too_many_arguments)]
pub fn layer_bwd<B: Backend>(dy: Tensor<B, 3>, x: Tensor<B, 3>, norm_w: Tensor<B, 1>, s: Saved<B>, c: &Consts<B>, layer: bool, w_dtype: DType) -> Grads<B> {
    let [b, l, d] = dy.dims();
    let (rows, [h, wcat, wdc], [mean, rstd]) = (b * l, s.mlp, s.stats);
    let (dn_m, dwg, dwu, dwd) = prims::mlp_bwd(dy.clone().reshape([rows, d]), s.n.clone(), h, wcat, wdc, w_dtype);
    let (dn_a, [dwq, dwk, dwv, dwo], k_add) = attn::block_bwd(dy.clone(), s.n.reshape([b, l, d]), s.attn, &c.attn, w_dtype, s.k_add);
    let dn = dn_a.reshape([rows, d]) + dn_m;
    let mut g = prims::norm_bwd(dn, x.reshape([rows, d]), norm_w, mean.reshape([rows, 1]), rstd.reshape([rows, 1]), layer).into_iter();
    let dx = dy + g.next().expect("dx").reshape([b, l, d]);
    Grads { dx, norm: g.map(|t| t.reshape([d])).collect(), mats: [dwq, dwk, dwv, dwo, dwg, dwu, dwd], k_add }
}

#[derive(Debug)]
struct LayerBackward {
    fused: bool,
    w_dtype: DType,
    /// LayerNorm (the norm has a bias).
    layer: bool,
}

impl<B: Prims, const N: usize> Backward<B, N> for LayerBackward {
    /// (x, the norm's weight, what the forward kept, the constants)
    type State = (FloatTensor<B>, FloatTensor<B>, Saved<B>, Consts<B>);
    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = float::<B, 3>(grads.consume::<B>(&ops.node));
        let (x, norm_w, saved, c) = ops.state;
        // parents: x, the norm's weight (and bias), the seven matrices (and k_add)
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
    let (nw, nb) = (w.norm.0.into_primitive().tensor(), w.norm.1.map(|b| b.into_primitive().tensor()));
    let mats: Vec<_> = w.attn.into_iter().chain(w.mlp).map(|t| t.into_primitive().tensor()).collect();
    let k_add = w.k_add.map(|t| t.into_primitive().tensor());
    let inner = |i: usize| float::<B, 2>(mats[i].primitive.clone());
    let weights = Weights {
        norm: (float(nw.primitive.clone()), nb.as_ref().map(|b| float(b.primitive.clone()))),
        attn: [0, 1, 2, 3].map(inner),
        mlp: [4, 5, 6].map(inner),
        k_add: k_add.as_ref().map(|t| float(t.primitive.clone())),
    };
    let w_dtype = weights.attn[0].dtype();
    let (y, saved) = B::layer_fwd(float::<B, 3>(x.primitive.clone()), weights, &c, fused);
    let y = y.into_primitive().tensor();
    let state = (x.primitive.clone(), nw.primitive.clone(), saved, c);
    let bw = LayerBackward { fused, w_dtype, layer: nb.is_some() };
    let mut parents = vec![x.node.clone(), nw.node.clone()];
    parents.extend(nb.map(|b| b.node));
    parents.extend(mats.iter().map(|m| m.node.clone()));
    parents.extend(k_add.map(|t| t.node));
    macro_rules! node {
        ($n:literal) => {
            match bw.prepare::<C>(<[_; $n]>::try_from(parents).expect("parents")).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(state, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        };
    }
    let out = match parents.len() {
        9 => node!(9),
        10 => node!(10),
        11 => node!(11),
        n => unreachable!("{n} parents"),
    };
    float(out)
}

#[cfg(feature = "cuda")]
pub(super) use cuda::LayerBackend;

/// The CUDA side: `LayerBackend` on `CubeBackend` (the sublayers' CUDA steps in a row, the adds
/// folded into their GEMMs and the norm's backward) and on `Fusion` (one custom op each way).
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

    pub trait LayerBackend: Backend {
        /// `[y, n, mean, rstd, q, k, v, o, lse, wqkv, wo, h, wcat, wdc]` of `x [b, L, d]` and f32
        /// `ws = [w, (b,) wq, wk, wv, wo, wg, wu, wd]` (no `b`: RMSNorm), the key projection plus
        /// `k_add [L, d]` if given.
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
        ) -> Vec<FloatTensor<Self>>;
        /// `[dx, dw, (db,) dwq, dwk, dwv, dwo, dwg, dwu, dwd, (dk_add)]` from `dy`, `x`, the norm's
        /// weight and the forward's outputs after `y`.
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

    impl<F: FloatElement, I: IntElement, BT: BoolElement> LayerBackend for CubeBackend<CudaRuntime, F, I, BT> {
        fn layer_fwd(x: T, ws: Vec<T>, k_add: Option<T>, rot: Rot<Self>, bias: Option<T>, heads: usize, scale: f32, eps: f32) -> Vec<T> {
            let [b, l, d] = x.meta.shape().dims::<3>();
            let mut ws = ws.into_iter();
            let has_b = ws.len() == 9;
            let nw = ws.next().expect("norm weight");
            let nb = has_b.then(|| ws.next().expect("norm bias"));
            let [wq, wk, wv, wo, wg, wu, wd] = [(); 7].map(|_| ws.next().expect("7 matrices"));
            let [n, mean, rstd] = norm::cuda::fwd(view(x.clone(), vec![b * l, d]), nw, nb, eps);
            // y = x + attn(n), then + mlp(n) in place
            let [y, q, k, v, o, lse, wqkv, wo] = attention_block::cuda::fwd(view(n.clone(), vec![b, l, d]), [wq, wk, wv, wo], rot, bias, heads, scale, Some(x), k_add);
            let [y, h, wcat, wdc] = mlp::cuda::fwd(n.clone(), wg, wu, wd, Some(view(y, vec![b * l, d])));
            vec![view(y, vec![b, l, d]), n, mean, rstd, q, k, v, o, lse, wqkv, wo, h, wcat, wdc]
        }

        fn layer_bwd(dy: T, x: T, w: T, saved: Vec<T>, rot: Rot<Self>, bias: Option<T>, heads: usize, scale: f32, layer: bool, k_add: bool, w_dtype: DType) -> Vec<T> {
            let [b, l, d] = x.meta.shape().dims::<3>();
            let [n, mean, rstd, q, k, v, o, lse, wqkv, wo, h, wcat, wdc]: [T; 13] = saved.try_into().expect("13 saved");
            let dy2 = view(dy.clone(), vec![b * l, d]);
            let [dn, dwg, dwu, dwd] = mlp::cuda::bwd(dy2.clone(), n.clone(), h, wcat, wdc, w_dtype);
            // dn += the attention's input gradient, in place
            let ([dn, dwq, dwk, dwv, dwo], dk_add) =
                attention_block::cuda::bwd(dy, view(n, vec![b, l, d]), [q, k, v, o, lse, wqkv, wo], rot, bias, heads, scale, w_dtype, Some(view(dn, vec![b, l, d])), k_add);
            let mut g = norm::cuda::bwd(view(dn, vec![b * l, d]), view(x, vec![b * l, d]), w, mean, rstd, layer, Some(dy2));
            g[0] = view(g[0].clone(), vec![b, l, d]);
            g.extend([dwq, dwk, dwv, dwo, dwg, dwu, dwd]);
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
        ) -> Vec<FloatTensor<Self>> {
            let ([b, l, d], dt, f) = (x.shape.dims::<3>(), x.dtype, ws[ws.len() - 1].shape[0]);
            let (rows, bh, hd, has_b) = (b * l, b * heads, d / heads, ws.len() == 9);
            let head = (vec![bh, l, hd], dt);
            let outs = vec![
                (vec![b, l, d], dt),
                (vec![rows, d], dt),
                (vec![rows], DType::F32),
                (vec![rows], DType::F32),
                head.clone(),
                head.clone(),
                head.clone(),
                head,
                (vec![bh, l], DType::F32),
                (vec![d, 3 * d], dt),
                (vec![d, d], dt),
                (vec![rows, 2 * f], dt),
                (vec![d, 2 * f], dt),
                (vec![f, d], dt),
            ];
            let mut ins = vec![x];
            ins.extend(ws);
            let added = k_add.is_some();
            ins.extend(k_add);
            let mut flags = attn_extras(&mut ins, rot, bias, scale).to_vec();
            flags.extend([eps, has_b as u8 as f32, added as u8 as f32]);
            custom_vec::<B>("layer_fwd", ins, outs, (&flags, heads), |d, f, heads, h| {
                let mut ins = inputs::<B>(d, h);
                let x = ins.next().expect("x");
                let ws = (0..8 + f[5] as usize).map(|_| ins.next().expect("weights")).collect();
                let k_add = (f[6] != 0.0).then(|| ins.next().expect("k_add"));
                let (rot, bias) = attn_consts::<B>(f, &mut ins);
                outputs::<B>(d, h, B::layer_fwd(x, ws, k_add, rot, bias, heads, f[0], f[4]));
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
            let ([b, l, d], dt, f) = (x.shape.dims::<3>(), x.dtype, saved[12].shape[0]);
            // the weight gradients' dtype travels as the outputs' (read back in `run`)
            let mut outs = vec![(vec![b, l, d], dt)];
            outs.extend(vec![(vec![d], DType::F32); 1 + layer as usize]);
            outs.extend(vec![(vec![d, d], w_dtype); 4]);
            outs.extend([(vec![d, f], w_dtype), (vec![d, f], w_dtype), (vec![f, d], w_dtype)]);
            if k_add {
                outs.push((vec![l, d], dt));
            }
            let mut ins = vec![dy, x, w];
            ins.extend(saved);
            let mut flags = attn_extras(&mut ins, rot, bias, scale).to_vec();
            flags.extend([layer as u8 as f32, k_add as u8 as f32]);
            custom_vec::<B>("layer_bwd", ins, outs, (&flags, heads), |d, f, heads, h| {
                let mut ins = inputs::<B>(d, h);
                let [dy, x, w] = [(); 3].map(|_| ins.next().expect("dy, x, w"));
                let saved = (0..13).map(|_| ins.next().expect("saved")).collect();
                let (rot, bias) = attn_consts::<B>(f, &mut ins);
                // the MLP's down projection's gradient, the last weight gradient
                let w_dtype = d.outputs[d.outputs.len() - 1 - (f[5] != 0.0) as usize].dtype;
                outputs::<B>(d, h, B::layer_bwd(dy, x, w, saved, rot, bias, heads, f[0], f[4] != 0.0, f[5] != 0.0, w_dtype));
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use crate::ops::{AttnWeights, Kernels, MlpWeights, NormWeights, Positions, Rot};
    use crate::test_positions::{positions, Scheme};
    use burn::prelude::*;

    /// The op (its burn steps and hand-written backward) equals the reference layer in burn's ops
    /// (`reference::parallel_layer`) through autodiff, for LayerNorm with RoPE, RMSNorm with ALiBi
    /// and either norm with linspace (its ramp times a learned scale added to k; 9 to 11 tracked
    /// inputs): output and every gradient, the scale's included.
    #[test]
    fn layer_op_matches_the_reference_layer() {
        let dev = Default::default();
        let (b, l, d, f, heads) = (2, 5, 8, 12, 2);
        let data = crate::test_values;
        for (kind, layer) in [(Scheme::Rope, true), (Scheme::Alibi, false), (Scheme::Linspace, true), (Scheme::Linspace, false)] {
            let linspace = kind == Scheme::Linspace;
            let t = positions::<crate::backend::Cpu>(kind, l, 0, heads, d / heads, 1e4, 512.0, burn::tensor::FloatDType::F32, &dev);
            let ac = super::attn::Consts { rot: [t.rot_q.clone(), t.rot_k.clone()], bias: t.biased.then(|| t.bias.clone()), heads, scale: 0.5 };
            let up = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 9), &dev).reshape([b, l, d]);
            let run = |ours: bool| {
                let m = |len, k, shape: [usize; 2]| Tensor::<CpuTrain, 1>::from_data(data(len, k), &dev).reshape(shape).require_grad();
                let x = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 1), &dev).reshape([b, l, d]).require_grad();
                let nw = Tensor::<CpuTrain, 1>::from_data(data(d, 2), &dev).add_scalar(1.5).require_grad();
                let nb = layer.then(|| Tensor::<CpuTrain, 1>::from_data(data(d, 3), &dev).require_grad());
                let attn = [4, 5, 6, 7].map(|k| m(d * d, k, [d, d]));
                let mlp = [m(d * f, 8, [d, f]), m(d * f, 10, [d, f]), m(f * d, 11, [f, d])];
                let scale = linspace.then(|| m(d, 12, [1, d]));
                let ramp = t.k_ramp.clone().map(Tensor::<CpuTrain, 3>::from_inner);
                let y = if ours {
                    let k_add = ramp.clone().zip(scale.clone()).map(|(r, s)| (r * s.unsqueeze::<3>()).reshape([l, d]));
                    let w = super::Weights { norm: (nw.clone(), nb.clone()), attn: attn.clone(), mlp: mlp.clone(), k_add };
                    super::layer_ad(x.clone(), w, super::Consts { attn: ac.clone(), eps: 1e-5 }, false)
                } else {
                    // the reference (`reference::parallel_layer`, burn's ops), differentiated by autodiff
                    let lift = |r: &Rot<crate::backend::Cpu>| r.as_ref().map(|(c, s)| (Tensor::from_inner(c.clone()), Tensor::from_inner(s.clone())));
                    let pos = Positions::<CpuTrain> { rot_q: lift(&t.rot_q), rot_k: lift(&t.rot_k), bias: Tensor::from_inner(t.bias.clone()), biased: t.biased, k_ramp: ramp.clone() };
                    let n = NormWeights { weight: nw.clone(), bias: nb.clone(), eps: 1e-5 };
                    let a = AttnWeights { q: attn[0].clone(), k: attn[1].clone(), v: attn[2].clone(), o: attn[3].clone(), k_scale: scale.clone(), heads };
                    let m = MlpWeights { gate: mlp[0].clone(), up: mlp[1].clone(), down: mlp[2].clone() };
                    crate::reference::parallel_layer(x.clone(), &n, &a, &m, &pos, &Kernels::REFERENCE)
                };
                let grads = (y.clone() * up.clone()).sum().backward();
                let v = |t: TensorData| t.to_vec::<f32>().unwrap();
                let mut all = vec![v(y.into_data()), v(x.grad(&grads).unwrap().into_data()), v(nw.grad(&grads).unwrap().into_data())];
                all.extend(nb.iter().map(|t| v(t.grad(&grads).unwrap().into_data())));
                all.extend(attn.iter().chain(&mlp).chain(&scale).map(|t| v(t.grad(&grads).unwrap().into_data())));
                all
            };
            let (ours, theirs) = (run(true), run(false));
            assert_eq!(ours.len(), 10 + layer as usize + linspace as usize);
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4 * (1.0 + q.abs())), "{kind:?} output {i}: {a:?} vs {b:?}");
                assert!(a.iter().any(|v| v.abs() > 1e-3), "{kind:?} output {i} must not vanish");
            }
        }
    }
}
