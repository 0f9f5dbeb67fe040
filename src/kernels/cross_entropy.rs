//! Token cross-entropy with a closed-form backward, as an autodiff op.
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

use super::prims::{self, float};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};

/// Per-token losses `lse − logits[target]` (`[n]`, f32) of `logits [n, v]` (any float dtype) and
/// `targets [n]`; the gradient reaches `logits` in their own dtype. `fused`: one CUDA kernel each
/// way where `B` has it (`prims::ce_fwd`, `prims::ce_bwd`).
pub fn token_losses<B: Backend, C: CheckpointStrategy>(logits: Tensor<Autodiff<B, C>, 2>, targets: Tensor<B, 1, Int>, fused: bool) -> Tensor<Autodiff<B, C>, 1> {
    #[derive(Debug)]
    struct CrossEntropyBackward {
        fused: bool,
    }
    impl<B: Backend> Backward<B, 1> for CrossEntropyBackward {
        /// (logits, lse `[n]`, targets `[n]`)
        type State = (FloatTensor<B>, FloatTensor<B>, IntTensor<B>);
        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node] = ops.parents;
            let g = float::<B, 1>(grads.consume::<B>(&ops.node));
            let Some(node) = node else { return };
            let (logits, lse, targets) = ops.state;
            let d = prims::ce_bwd(float(logits), Tensor::from_primitive(targets), float(lse), g, self.fused);
            grads.register::<B>(node.id, d.into_primitive().tensor());
        }
    }
    let x = logits.into_primitive().tensor();
    let [losses, lse] = prims::ce_fwd(float::<B, 2>(x.primitive.clone()), targets.clone(), fused);
    let losses = losses.into_primitive().tensor();
    let out = match (CrossEntropyBackward { fused }).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, lse.into_primitive().tensor(), targets.into_primitive()), losses),
        OpsKind::UnTracked(prep) => prep.finish(losses),
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
        let dev = Default::default();
        let (n, v) = (6, 11);
        let xs: Vec<f32> = (0..n * v).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
        let ts: Vec<i64> = vec![0, 10, 3, 3, 7, 1];
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32).collect(); // a non-uniform upstream gradient
        let run = |closed: bool| {
            let x = Tensor::<CpuTrain, 2>::from_data(TensorData::new(xs.clone(), [n, v]), &dev).require_grad();
            let t = Tensor::<CpuTrain, 1, Int>::from_data(TensorData::new(ts.clone(), [n]), &dev);
            let l = if closed {
                super::token_losses(x.clone(), t.inner(), true)
            } else {
                log_softmax(x.clone(), 1).gather(1, t.reshape([n, 1])).reshape([n]).neg()
            };
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
}
