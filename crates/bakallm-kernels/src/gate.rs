//! The MLP's gated SiLU `silu(a) ⊙ u` as one autodiff op with its own backward: one kernel each
//! way on CUDA (`prims::silu_mul_fwd`, `prims::silu_mul_bwd`).
//!
//! Why: through burn's autodiff, SiLU's backward is a chain of elementwise ops on the
//! `[tokens, d_ff]` activations (a cast to f32, sigmoid, products, a cast back). burn-fusion fused
//! that chain next to burn's own ops, but not once the linear layers became single ops
//! (`super::linear`): then it ran op by op, ~14 ms per step at the pristine shape (Nsight Compute).

use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;

/// `silu(a) ⊙ u` (same shapes) on a training backend; `fused` picks the CUDA kernels where `B`
/// has them.
pub fn silu_mul_ad<B: Prims, C: CheckpointStrategy, const D: usize>(a: Tensor<Autodiff<B, C>, D>, u: Tensor<Autodiff<B, C>, D>, fused: bool) -> Tensor<Autodiff<B, C>, D> {
    super::binary::binary_ad(a, u, B::silu_mul_fwd, B::silu_mul_bwd, fused)
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::prelude::*;
    use burn::tensor::activation::silu;

    /// The op (burn reference steps) equals burn's autodiff of `silu(a) ⊙ u`: output and both gradients.
    #[test]
    fn gate_op_matches_autodiff_of_the_formula() {
        let _serial = crate::serial();
        let dev = Default::default();
        let n = 40;
        let data =
            |k: u64| Tensor::<CpuTrain, 1>::from_data(TensorData::new((0..n).map(|i| (((i as u64 * 2654435761 + k) % 1000) as f32 / 125.0) - 4.0).collect::<Vec<f32>>(), [n]), &dev).reshape([2, 4, 5]);
        let up = data(3);
        let run = |ours: bool| {
            let (a, u) = (data(1).require_grad(), data(2).require_grad());
            let y = if ours { super::silu_mul_ad(a.clone(), u.clone(), false) } else { silu(a.clone()) * u.clone() };
            let grads = (y.clone() * up.clone()).sum().backward();
            let v = |t: Tensor<_, 3>| t.into_data().to_vec::<f32>().unwrap();
            [v(y.inner()), v(a.grad(&grads).unwrap()), v(u.grad(&grads).unwrap())]
        };
        let (ours, theirs) = (run(true), run(false));
        for (name, (a, b)) in ["y", "da", "du"].iter().zip(ours.iter().zip(&theirs)) {
            assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5 * (1.0 + q.abs())), "{name}: {a:?} vs {b:?}");
        }
        assert!(ours[1].iter().any(|v| v.abs() > 1e-2), "da must not vanish");
    }
}
