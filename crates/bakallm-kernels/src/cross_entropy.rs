//! Token cross-entropy with a closed-form backward, as an autodiff op; and the LM head fused with
//! it (`head_ce_mean`, `train.ce = "chunked"`).
//!
//! Why: through autodiff, `-log_softmax(logits)[target]` keeps an f32 copy of the `[n, vocab]`
//! log-probabilities for the backward and spends it in ~8 passes over them (zeros + scatter for
//! the gather, a reduce and elementwise ops for log_softmax, the casts); at the pristine shape
//! that is 16384 × 50304 values per step. Here the forward keeps only the per-token log-sum-exp
//! (`[n]` f32) next to the logits the LM head keeps anyway, and the backward is the textbook
//! `(softmax − onehot) · g` in one elementwise pass plus a scatter of `−g` at the targets.
//!
//! With `fused` (`train.ce = "fused"`, the CUDA default) each direction is one kernel reading the
//! bf16 logits directly (`prims::ce_fwd`/`ce_bwd`). In burn's ops (`"closed-form"`) it measured no
//! faster than autodiff (H100, pristine shape, 2026-11-23: about +1 ms per 131–147 ms step; two
//! 3.9 ms copies of the `[n, vocab]` tensor in cubecl's profile).

use super::prims::float;
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};

/// Per-token losses `lse − logits[target]` (`[n]`, f32) of `logits [n, v]` (any float dtype) and
/// `targets [n]`; the gradient reaches `logits` in their own dtype. `fused`: one CUDA kernel each
/// way where `B` has it (`prims::ce_fwd`, `prims::ce_bwd`).
pub fn token_losses<B: Prims, C: CheckpointStrategy>(logits: Tensor<Autodiff<B, C>, 2>, targets: Tensor<B, 1, Int>, fused: bool) -> Tensor<Autodiff<B, C>, 1> {
    #[derive(Debug)]
    struct CrossEntropyBackward {
        fused: bool,
    }
    impl<B: Prims> Backward<B, 1> for CrossEntropyBackward {
        /// (logits, lse `[n]`, targets `[n]`)
        type State = (FloatTensor<B>, FloatTensor<B>, IntTensor<B>);
        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node] = ops.parents;
            let g = float::<B, 1>(grads.consume::<B>(&ops.node));
            let Some(node) = node else { return };
            let (logits, lse, targets) = ops.state;
            let d = B::ce_bwd(float(logits), Tensor::from_primitive(targets), float(lse), g, self.fused);
            grads.register::<B>(node.id, d.into_primitive().tensor());
        }
    }
    let x = logits.into_primitive().tensor();
    let [losses, lse] = B::ce_fwd(float::<B, 2>(x.primitive.clone()), targets.clone(), fused);
    let losses = losses.into_primitive().tensor();
    let out = match (CrossEntropyBackward { fused }).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, lse.into_primitive().tensor(), targets.into_primitive()), losses),
        OpsKind::UnTracked(prep) => prep.finish(losses),
    };
    float(out)
}

/// Mean token cross-entropy `[1]` (f32) of the LM head `x [n, d] · w [d, V]` against `targets
/// [n]` as one op: the forward also forms both gradients of the mean (`prims::head_ce`; with
/// `fused`, `chunk` rows of logits at a time, so the `[n, V]` logits and their gradient never exist
/// whole), and the backward only scales them by the upstream gradient. `x` in the compute dtype,
/// `w` the f32 master weight.
pub fn head_ce_mean<B: Prims, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 2>, w: Tensor<Autodiff<B, C>, 2>, targets: Tensor<B, 1, Int>, chunk: usize, fused: bool) -> Tensor<Autodiff<B, C>, 1> {
    let (losses, dx, dw) = B::head_ce(x.clone().inner(), w.clone().inner(), targets, chunk, fused);
    loss_with_grads(x, w, losses.mean(), dx, dw, fused)
}

/// A loss `[1]` of `x` and `w` computed outside autodiff, as an op whose backward hands them `dx`
/// and `dw` (the loss's gradients, formed with it) times the upstream gradient
/// (`Prims::scale_by`): [`head_ce_mean`] on any backend, and the CPU's host head + loss.
pub fn loss_with_grads<B: Prims, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    w: Tensor<Autodiff<B, C>, 2>,
    loss: Tensor<B, 1>,
    dx: Tensor<B, 2>,
    dw: Tensor<B, 2>,
    fused: bool,
) -> Tensor<Autodiff<B, C>, 1> {
    #[derive(Debug)]
    struct HeadCeBackward {
        fused: bool,
    }
    impl<B: Prims> Backward<B, 2> for HeadCeBackward {
        /// (dx, dw) of the mean loss
        type State = (FloatTensor<B>, FloatTensor<B>);
        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let g = float::<B, 1>(grads.consume::<B>(&ops.node));
            for (node, d) in ops.parents.into_iter().zip([ops.state.0, ops.state.1]) {
                if let Some(node) = node {
                    // in place, and no pass at all where g is 1 (CUDA)
                    grads.register::<B>(node.id, B::scale_by(float::<B, 2>(d), g.clone(), self.fused).into_primitive().tensor());
                }
            }
        }
    }
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    let loss = loss.into_primitive().tensor();
    let out = match (HeadCeBackward { fused }).prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((dx.into_primitive().tensor(), dw.into_primitive().tensor()), loss),
        OpsKind::UnTracked(prep) => prep.finish(loss),
    };
    float(out)
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::prelude::*;
    use burn::tensor::activation::log_softmax;

    #[test]
    fn closed_form_matches_autodiff_of_log_softmax() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (n, v) = (6, 11);
        let xs: Vec<f32> = (0..n * v).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
        let ts: Vec<i64> = vec![0, 10, 3, 3, 7, 1];
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32).collect(); // a non-uniform upstream gradient
        let run = |closed: bool| {
            let x = Tensor::<CpuTrain, 2>::from_data(TensorData::new(xs.clone(), [n, v]), &dev).require_grad();
            let t = Tensor::<CpuTrain, 1, Int>::from_data(TensorData::new(ts.clone(), [n]), &dev);
            let l = if closed { super::token_losses(x.clone(), t.inner(), true) } else { log_softmax(x.clone(), 1).gather(1, t.reshape([n, 1])).reshape([n]).neg() };
            let loss = (l.clone() * Tensor::from_data(TensorData::new(w.clone(), [n]), &dev)).sum();
            let g = x.grad(&loss.backward()).unwrap();
            (l.into_data().to_vec::<f32>().unwrap(), g.into_data().to_vec::<f32>().unwrap())
        };
        let ((l0, g0), (l1, g1)) = (run(false), run(true));
        for (a, b) in l0.iter().zip(&l1).chain(g0.iter().zip(&g1)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(g1.iter().any(|&x| x < -0.1), "the target terms must carry −g");
    }

    /// The head + cross-entropy op (burn reference steps) equals autodiff of `log_softmax(x · w)`'s
    /// mean: the loss, and both gradients under a non-unit upstream gradient.
    #[test]
    fn head_op_matches_autodiff_of_the_head_and_loss() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (n, d, v) = (7, 5, 13);
        let data = crate::test_values;
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 5 % v as i64).collect();
        let run = |ours: bool| {
            let x = Tensor::<CpuTrain, 1>::from_data(data(n * d, 1), &dev).reshape([n, d]).require_grad();
            let w = Tensor::<CpuTrain, 1>::from_data(data(d * v, 2), &dev).reshape([d, v]).require_grad();
            let t = Tensor::<CpuTrain, 1, Int>::from_data(TensorData::new(ts.clone(), [n]), &dev);
            let loss = if ours { super::head_ce_mean(x.clone(), w.clone(), t.inner(), 3, true) } else { log_softmax(x.clone().matmul(w.clone()), 1).gather(1, t.reshape([n, 1])).neg().mean() };
            let grads = (loss.clone() * 3.0).backward();
            let v = |t: Tensor<_, 2>| t.into_data().to_vec::<f32>().unwrap();
            (loss.into_scalar(), v(x.grad(&grads).unwrap()), v(w.grad(&grads).unwrap()))
        };
        let ((l0, dx0, dw0), (l1, dx1, dw1)) = (run(false), run(true));
        assert!((l0 - l1).abs() < 1e-5, "loss {l1} vs {l0}");
        for (what, a, b) in [("dx", &dx0, &dx1), ("dw", &dw0, &dw1)] {
            assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5), "{what}: {b:?} vs {a:?}");
            assert!(a.iter().any(|x| x.abs() > 1e-2), "{what} must not vanish");
        }
    }
}
