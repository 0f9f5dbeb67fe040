//! A linear layer `x [b, l, d] · w [d, n]` with an f32 master weight as one autodiff op: forward =
//! cast `w` to `x`'s dtype + one GEMM; backward = `dx = g·wᵀ` and `dw = xᵀ·g`, the latter written
//! straight into f32 by cuBLAS (no cast of the gradient).
//!
//! Why: through burn's autodiff a bf16 linear was about ten ops each way (cast, reshapes,
//! unsqueeze, matmul, transposes, cast back). Each op is host work, and with ~85 linears per step
//! that host work, not the GPU, set the step time at the pristine shape.

use super::prims;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;

/// `x [b, l, d] · w [d, n]` → `[b, l, n]` in `x`'s dtype, on a training backend; `fused` picks
/// the cuBLAS steps where `B` has them (`prims::linear_fwd`, `prims::linear_bwd`).
pub fn linear_ad<B: Backend, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 3>, w: Tensor<Autodiff<B, C>, 2>, fused: bool) -> Tensor<Autodiff<B, C>, 3> {
    super::binary::binary_ad(x, w, prims::linear_fwd, prims::linear_bwd, fused)
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::prelude::*;

    /// The op (burn reference steps) equals burn's autodiff of `x · w`: output and both gradients.
    #[test]
    fn linear_op_matches_autodiff_of_the_matmul() {
        let dev = Default::default();
        let (b, l, d, n) = (2, 5, 4, 3);
        let data = |len: usize, k: u64| TensorData::new((0..len).map(|i| (((i as u64 * 2654435761 + k) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>(), [len]);
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
