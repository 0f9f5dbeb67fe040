//! LayerNorm / RMSNorm as one autodiff op: one CUDA kernel forward (bf16 in and out, f32 math,
//! keeping the per-row mean and 1/std) and one backward (dx, and dw/db summed per block).
//!
//! Why: through burn's ops a norm is a cast to f32, two reductions, the elementwise affine and a
//! cast back, and its backward about ten kernels more (cubecl's profile at the pristine shape),
//! repeated for 13 norms per step.

use super::prims::{self, float};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

#[derive(Debug)]
struct NormBackward {
    fused: bool,
}

impl<B: Backend, const N: usize> Backward<B, N> for NormBackward {
    /// (x, w, mean, rstd)
    type State = [FloatTensor<B>; 4];
    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = float::<B, 2>(grads.consume::<B>(&ops.node));
        let [x, w, mean, rstd] = ops.state;
        let d = prims::norm_bwd(g, float(x), float(w), float(mean), float(rstd), N == 3, self.fused);
        // parents: x, then the [D] weight and bias (their gradients come as [1, D])
        for (i, (node, d)) in ops.parents.into_iter().zip(d).enumerate() {
            if let Some(node) = node {
                let d = if i == 0 { d.into_primitive().tensor() } else { { let n = d.dims()[1]; d.reshape([n]).into_primitive().tensor() } };
                grads.register::<B>(node.id, d);
            }
        }
    }
}

/// LayerNorm (`b` given) or RMSNorm of `x [rows, D]` (any float dtype; output in it) with f32
/// `w`, `b [D]`, on a training backend; `fused` picks the CUDA kernels where `B` has them.
pub fn norm_ad<B: Backend, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 2>, w: Tensor<Autodiff<B, C>, 1>, b: Option<Tensor<Autodiff<B, C>, 1>>, eps: f32, fused: bool) -> Tensor<Autodiff<B, C>, 2> {
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let b = b.map(|b| b.into_primitive().tensor());
    let [y, mean, rstd] = prims::norm_fwd::<B>(float(x.primitive.clone()), float(w.primitive.clone()), b.as_ref().map(|b| float(b.primitive.clone())), eps, fused);
    let y = y.into_primitive().tensor();
    let state = |x: &FloatTensor<Autodiff<B, C>>, w: &FloatTensor<Autodiff<B, C>>| [x.primitive.clone(), w.primitive.clone(), mean.into_primitive().tensor(), rstd.into_primitive().tensor()];
    let out = match b {
        Some(b) => match (NormBackward { fused }).prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state(&x, &w), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        None => match (NormBackward { fused }).prepare::<C>([x.node.clone(), w.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state(&x, &w), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    };
    float(out)
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::nn::{LayerNormConfig, RmsNormConfig};
    use burn::prelude::*;

    /// The op (burn reference steps) equals burn's LayerNorm and RmsNorm modules through autodiff:
    /// output and the gradients of x, the weight and the bias.
    #[test]
    fn norm_op_matches_burns_modules() {
        let dev = Default::default();
        let (rows, d) = (6, 10);
        let xs: Vec<f32> = (0..rows * d).map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0).collect();
        let ws: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 7.0).collect();
        let bs: Vec<f32> = (0..d).map(|i| i as f32 / 10.0 - 0.3).collect();
        let up: Vec<f32> = (0..rows * d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
        for layer in [true, false] {
            let run = |op: bool| {
                let x = Tensor::<CpuTrain, 2>::from_data(TensorData::new(xs.clone(), [rows, d]), &dev).require_grad();
                let w = Tensor::<CpuTrain, 1>::from_data(TensorData::new(ws.clone(), [d]), &dev).require_grad();
                let b = Tensor::<CpuTrain, 1>::from_data(TensorData::new(bs.clone(), [d]), &dev).require_grad();
                let y = if op {
                    super::norm_ad(x.clone(), w.clone(), layer.then(|| b.clone()), 1e-5, true)
                } else if layer {
                    let mut m = LayerNormConfig::new(d).with_epsilon(1e-5).init::<CpuTrain>(&dev);
                    m.gamma = burn::module::Param::from_tensor(w.clone());
                    m.beta = Some(burn::module::Param::from_tensor(b.clone()));
                    m.forward(x.clone())
                } else {
                    let mut m = RmsNormConfig::new(d).with_epsilon(1e-5).init::<CpuTrain>(&dev);
                    m.gamma = burn::module::Param::from_tensor(w.clone());
                    m.forward(x.clone())
                };
                let g = (y.clone() * Tensor::from_data(TensorData::new(up.clone(), [rows, d]), &dev)).sum().backward();
                let v = |t: Option<Tensor<burn::backend::NdArray, 2>>| t.map(|t| t.into_data().to_vec::<f32>().unwrap()).unwrap_or_default();
                let v1 = |t: Option<Tensor<burn::backend::NdArray, 1>>| t.map(|t| t.into_data().to_vec::<f32>().unwrap()).unwrap_or_default();
                [y.into_data().to_vec::<f32>().unwrap(), v(x.grad(&g)), v1(w.grad(&g)), if layer { v1(b.grad(&g)) } else { vec![] }]
            };
            let (want, got) = (run(false), run(true));
            for (what, (a, g)) in ["y", "dx", "dw", "db"].iter().zip(want.iter().zip(&got)) {
                assert_eq!(a.len(), g.len(), "layer {layer} {what}");
                for (p, q) in a.iter().zip(g) {
                    assert!((p - q).abs() < 1e-4 * (1.0 + p.abs()), "layer {layer} {what}: {p} vs {q}");
                }
            }
        }
    }
}
