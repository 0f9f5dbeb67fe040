//! Causal attention `softmax(q·kᵀ·scale + bias)·v` as one autodiff op with its own backward.
//!
//! Why: through burn's autodiff the scores go through ~7 separate passes each way (scale, bias,
//! max, subtract, exp, sum, divide and their backward), ~1.7 ms per layer forward alone at the
//! pristine shape on an H100. Here the forward is GEMM → one softmax kernel → GEMM and the backward
//! four GEMMs and one kernel (`prims`), keeping q, k, v and the probabilities for it. The flash
//! path (`train.attention = "flash"`, `super::flash`) does each direction in one kernel and keeps
//! only the output and each row's log-sum-exp.
//! Causal: keys after the query are masked in the kernels (never read); the bias (ALiBi, or more
//! −∞ masks) is a constant and gets no gradient.

use super::prims::{float, Alibi};
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

/// The steps [`attention_ad`] is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Scores by GEMM, the softmax (`prims::softmax_fwd`), output by GEMM; the probabilities kept.
    Gemm,
    /// Flash attention (`prims::flash_fwd`: the CUDA kernels keep no `[L, L]` tensor): ALiBi where
    /// its slopes and positions are given, else the causal mask alone (the bias is not read).
    Flash,
}

/// `q, k, v [b·heads, L, hd]`, `bias [1|b, 1|heads, L, L]` → `[b·heads, L, hd]`, on a training
/// backend (`Autodiff<B, C>`); `fused` picks the CUDA kernels where `B` has them. `slopes_pos`:
/// ALiBi's slopes and positions (`prims::Alibi`) where `bias` holds ALiBi.
#[allow(clippy::too_many_arguments)]
pub fn attention_ad<B: Prims, C: CheckpointStrategy>(
    q: Tensor<Autodiff<B, C>, 3>,
    k: Tensor<Autodiff<B, C>, 3>,
    v: Tensor<Autodiff<B, C>, 3>,
    bias: Tensor<B, 4>,
    slopes_pos: Option<Tensor<B, 1>>,
    heads: usize,
    scale: f32,
    fused: bool,
    path: Path,
) -> Tensor<Autodiff<B, C>, 3> {
    if path == Path::Flash {
        let alibi = slopes_pos.map(|slopes_pos| Alibi { table: bias, slopes_pos });
        return flash_ad(q, k, v, alibi, heads, scale, fused);
    }
    #[derive(Debug)]
    struct AttentionBackward {
        scale: f32,
        fused: bool,
    }
    impl<B: Prims> Backward<B, 3> for AttentionBackward {
        /// (q, k, v nodes, probabilities)
        type State = (NodeId, NodeId, NodeId, FloatTensor<B>);
        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let [nq, nk, nv] = ops.parents;
            let f = self.fused;
            let dy = float::<B, 3>(grads.consume::<B>(&ops.node));
            let (iq, ik, iv, p) = ops.state;
            let get = |id: NodeId, ck: &mut Checkpointer| float::<B, 3>(ck.retrieve_node_output(id));
            let (q, k, v, p) = (get(iq, ck), get(ik, ck), get(iv, ck), float::<B, 3>(p));
            let dp = B::matmul(dy.clone(), v.swap_dims(1, 2), f);
            if let Some(node) = nv {
                grads.register::<B>(node.id, B::matmul(p.clone().swap_dims(1, 2), dy, f).into_primitive().tensor());
            }
            let ds = B::softmax_bwd(p, dp, self.scale, f);
            if let Some(node) = nq {
                grads.register::<B>(node.id, B::matmul(ds.clone(), k, f).into_primitive().tensor());
            }
            if let Some(node) = nk {
                grads.register::<B>(node.id, B::matmul(ds.swap_dims(1, 2), q, f).into_primitive().tensor());
            }
        }
    }
    let [q, k, v] = [q, k, v].map(|t| t.into_primitive().tensor());
    let inner = |t: &FloatTensor<Autodiff<B, C>>| float::<B, 3>(t.primitive.clone());
    let p = B::softmax_fwd(B::matmul(inner(&q), inner(&k).swap_dims(1, 2), fused), bias, scale, heads, fused);
    let y = B::matmul(p.clone(), inner(&v), fused).into_primitive().tensor();
    let out = match (AttentionBackward { scale, fused }).prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&q), prep.checkpoint(&k), prep.checkpoint(&v), p.into_primitive().tensor());
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}

/// [`attention_ad`]'s flash path: the forward keeps `o` and each row's log-sum-exp, the backward
/// recomputes the probabilities from them.
fn flash_ad<B: Prims, C: CheckpointStrategy>(
    q: Tensor<Autodiff<B, C>, 3>,
    k: Tensor<Autodiff<B, C>, 3>,
    v: Tensor<Autodiff<B, C>, 3>,
    alibi: Option<Alibi<B>>,
    heads: usize,
    scale: f32,
    fused: bool,
) -> Tensor<Autodiff<B, C>, 3> {
    #[derive(Debug)]
    struct FlashBackward {
        scale: f32,
        heads: usize,
        fused: bool,
    }
    impl<B: Prims> Backward<B, 3> for FlashBackward {
        /// (q, k, v nodes, o, lse, ALiBi)
        type State = (NodeId, NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, Option<Alibi<B>>);
        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let dy = float::<B, 3>(grads.consume::<B>(&ops.node));
            let (iq, ik, iv, o, lse, alibi) = ops.state;
            let get = |id: NodeId, ck: &mut Checkpointer| float::<B, 3>(ck.retrieve_node_output(id));
            let (q, k, v) = (get(iq, ck), get(ik, ck), get(iv, ck));
            let g = B::flash_bwd(q, k, v, float(o), float(lse), dy, alibi, self.scale, self.heads, self.fused);
            for (node, g) in ops.parents.into_iter().zip(g) {
                if let Some(node) = node {
                    grads.register::<B>(node.id, g.into_primitive().tensor());
                }
            }
        }
    }
    let [q, k, v] = [q, k, v].map(|t| t.into_primitive().tensor());
    let inner = |t: &FloatTensor<Autodiff<B, C>>| float::<B, 3>(t.primitive.clone());
    let (o, lse) = B::flash_fwd(inner(&q), inner(&k), inner(&v), alibi.clone(), scale, heads, fused);
    let y = o.clone().into_primitive().tensor();
    let out = match (FlashBackward { scale, heads, fused }).prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&q), prep.checkpoint(&k), prep.checkpoint(&v), o.into_primitive().tensor(), lse.into_primitive().tensor(), alibi);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}

/// The same forward on an inference backend.
pub fn attention_fwd<B: Prims>(q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>, bias: Tensor<B, 4>, heads: usize, scale: f32, fused: bool) -> Tensor<B, 3> {
    let p = B::softmax_fwd(B::matmul(q, k.swap_dims(1, 2), fused), bias, scale, heads, fused);
    B::matmul(p, v, fused)
}

#[cfg(test)]
mod tests {
    use super::Path;
    use crate::backend::CpuTrain;
    use burn::prelude::*;
    use burn::tensor::activation::softmax;

    /// The op (burn reference steps, GEMM + softmax and flash) equals burn's autodiff of the plain
    /// formula: output and the gradients of q, k and v, with a causal + ALiBi-like per-head bias.
    #[test]
    fn fused_attention_matches_autodiff_of_the_formula() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (b, h, l, hd) = (2, 3, 5, 4);
        let data = |seed: usize| -> Vec<f32> { (0..b * h * l * hd).map(|i| (((i * 37 + seed * 11) % 29) as f32 - 14.0) / 9.0).collect() };
        let mut bias = vec![0f32; h * l * l];
        for (hh, i, j) in (0..h).flat_map(|hh| (0..l).flat_map(move |i| (0..l).map(move |j| (hh, i, j)))) {
            bias[(hh * l + i) * l + j] = if j > i { f32::NEG_INFINITY } else { -0.3 * (hh + 1) as f32 * (i - j) as f32 };
        }
        let bias = Tensor::<crate::backend::Cpu, 4>::from_data(TensorData::new(bias, [1, h, l, l]), &dev);
        let w: Vec<f32> = (0..b * h * l * hd).map(|i| ((i % 7) as f32 - 3.0) / 2.0).collect();
        let scale = 0.5f32;
        // the op: None = the plain formula with `bias`, Some(path)
        // the same ALiBi as slopes and positions (the flash kernels' form)
        let slopes_pos: Vec<f32> = (0..h).map(|hh| 0.3 * (hh + 1) as f32).chain((0..l).map(|i| i as f32)).collect();
        let slopes_pos = Tensor::<crate::backend::Cpu, 1>::from_data(TensorData::new(slopes_pos, [h + l]), &dev);
        let run = |op: Option<super::Path>, bias: Tensor<crate::backend::Cpu, 4>, alibi: Option<Tensor<crate::backend::Cpu, 1>>| {
            let t = |s| Tensor::<CpuTrain, 3>::from_data(TensorData::new(data(s), [b * h, l, hd]), &dev).require_grad();
            let (q, k, v) = (t(1), t(2), t(3));
            let y = if let Some(path) = op {
                super::attention_ad(q.clone(), k.clone(), v.clone(), bias.clone(), alibi.clone(), h, scale, true, path)
            } else {
                let s = q.clone().matmul(k.clone().swap_dims(1, 2)).reshape([b, h, l, l]).mul_scalar(scale) + Tensor::from_inner(bias.clone());
                softmax(s, 3).reshape([b * h, l, l]).matmul(v.clone())
            };
            let loss = (y.clone() * Tensor::from_data(TensorData::new(w.clone(), [b * h, l, hd]), &dev)).sum();
            let g = loss.backward();
            let vec = |t: Tensor<CpuTrain, 3>| t.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
            [y.into_data().to_vec::<f32>().unwrap(), vec(q), vec(k), vec(v)]
        };
        // the unbiased flash path reads no bias: the formula's is the causal mask alone
        let causal = Tensor::<crate::backend::Cpu, 4>::from_data(
            TensorData::new(bias.clone().into_data().to_vec::<f32>().unwrap().iter().map(|&x| if x.is_finite() { 0.0 } else { x }).collect(), [1, h, l, l]),
            &dev,
        );
        let zeros = causal.clone().zeros_like();
        let (want, want_causal) = (run(None, bias.clone(), None), run(None, causal, None));
        let cases = [(Path::Gemm, &want, bias.clone(), None), (Path::Flash, &want, bias.clone(), Some(slopes_pos)), (Path::Flash, &want_causal, zeros, None)];
        for (path, want, bias, alibi) in cases {
            let got = run(Some(path), bias, alibi);
            for (what, (a, b)) in ["y", "dq", "dk", "dv"].iter().zip(want.iter().zip(&got)) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() < 1e-5, "{path:?} {what}: {x} vs {y}");
                }
                assert!(a.iter().any(|x| x.abs() > 1e-2), "{what} must not be trivially zero");
            }
        }
    }
}
