//! A linear layer `x [b, l, d] · w [d, n]` with an f32 master weight as one autodiff op: forward =
//! cast `w` to `x`'s dtype + one GEMM; backward = `dx = g·wᵀ` with the forward's cast kept, and
//! `dw = xᵀ·g`, written straight into f32 by cuBLAS (no cast of the gradient).
//!
//! Why: through burn's autodiff a bf16 linear was about ten ops each way (cast, reshapes,
//! unsqueeze, matmul, transposes, cast back). Each op is host work, and with ~85 linears per step
//! that host work, not the GPU, set the step time at the pristine shape. Keeping the cast for the
//! backward saves a cast kernel per linear and step (85 of the step's ~930 launches).

use super::prims::float;
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::DType;

/// `x [b, l, d] · w [d, n]` → `[b, l, n]` in `x`'s dtype, on a training backend; `fused` picks
/// the cuBLAS steps where `B` has them (`prims::linear_fwd`, `prims::linear_bwd`).
pub fn linear_ad<B: Prims, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 3>, w: Tensor<Autodiff<B, C>, 2>, fused: bool) -> Tensor<Autodiff<B, C>, 3> {
    #[derive(Debug)]
    struct LinearBackward {
        fused: bool,
        w_dtype: DType,
    }
    impl<B: Prims> Backward<B, 2> for LinearBackward {
        /// (x's node, the weight as cast in the forward)
        type State = (NodeId, FloatTensor<B>);
        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let [nx, nw] = ops.parents;
            let g = float::<B, 3>(grads.consume::<B>(&ops.node));
            let (x, wc) = (float::<B, 3>(ck.retrieve_node_output(ops.state.0)), float::<B, 2>(ops.state.1));
            let (dx, dw) = B::linear_bwd(g, x, wc, self.w_dtype, self.fused);
            if let Some(node) = nx {
                grads.register::<B>(node.id, dx.into_primitive().tensor());
            }
            if let Some(node) = nw {
                grads.register::<B>(node.id, dw.into_primitive().tensor());
            }
        }
    }
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    let (xi, wi) = (float::<B, 3>(x.primitive.clone()), float::<B, 2>(w.primitive.clone()));
    let w_dtype = wi.dtype();
    let wc = super::reference::to(wi, xi.dtype().into());
    let out = B::linear_fwd(xi, wc.clone(), fused).into_primitive().tensor();
    let out = match (LinearBackward { fused, w_dtype }).prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), wc.into_primitive().tensor());
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    float(out)
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::prelude::*;

    /// The op (burn reference steps) equals burn's autodiff of `x · w`: output and both gradients.
    #[test]
    fn linear_op_matches_autodiff_of_the_matmul() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (b, l, d, n) = (2, 5, 4, 3);
        let data = crate::test_values;
        let x0 = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 1), &dev).reshape([b, l, d]);
        let w0 = Tensor::<CpuTrain, 1>::from_data(data(d * n, 2), &dev).reshape([d, n]);
        let up = Tensor::<CpuTrain, 1>::from_data(data(b * l * n, 3), &dev).reshape([b, l, n]);
        let run = |ours: bool| {
            let (x, w) = (x0.clone().require_grad(), w0.clone().require_grad());
            let y = if ours { super::linear_ad(x.clone(), w.clone(), false) } else { x.clone().matmul(w.clone().unsqueeze::<3>()) };
            let grads = (y.clone() * up.clone()).sum().backward();
            let v = |t: Tensor<_, 3>| t.into_data().to_vec::<f32>().unwrap();
            (v(y.inner()), v(x.grad(&grads).unwrap()), w.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap())
        };
        let (ours, theirs) = (run(true), run(false));
        for (name, a, b) in [("y", &ours.0, &theirs.0), ("dx", &ours.1, &theirs.1), ("dw", &ours.2, &theirs.2)] {
            assert_eq!(a.len(), b.len(), "{name}");
            assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5), "{name}: {a:?} vs {b:?}");
        }
        assert!(ours.2.iter().any(|v| v.abs() > 1e-3), "dw must not vanish");
    }
}
