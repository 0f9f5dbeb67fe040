//! LayerNorm / RMSNorm as one autodiff op: one CUDA kernel forward (bf16 in and out, f32 math,
//! keeping the per-row mean and 1/std) and one backward (dx, and dw/db summed per block).
//!
//! Why: through burn's ops a norm is a cast to f32, two reductions, the elementwise affine and a
//! cast back, and its backward about ten kernels more (cubecl's profile at the pristine shape),
//! repeated for 13 norms per step.

use super::prims::float;
use crate::inner::Prims;
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

impl<B: Prims, const N: usize> Backward<B, N> for NormBackward {
    /// (x, w, mean, rstd)
    type State = [FloatTensor<B>; 4];
    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = float::<B, 2>(grads.consume::<B>(&ops.node));
        let [x, w, mean, rstd] = ops.state;
        let d = B::norm_bwd(g, float(x), float(w), float(mean), float(rstd), N == 3, self.fused);
        // parents: x, then the [D] weight and bias (their gradients come as [1, D])
        for (i, (node, d)) in ops.parents.into_iter().zip(d).enumerate() {
            if let Some(node) = node {
                let d = if i == 0 {
                    d.into_primitive().tensor()
                } else {
                    {
                        let n = d.dims()[1];
                        d.reshape([n]).into_primitive().tensor()
                    }
                };
                grads.register::<B>(node.id, d);
            }
        }
    }
}

/// LayerNorm (`b` given) or RMSNorm of `x [rows, D]` (any float dtype; output in it) with f32
/// `w`, `b [D]`, on a training backend; `fused` picks the CUDA kernels where `B` has them.
pub fn norm_ad<B: Prims, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 2>, w: Tensor<Autodiff<B, C>, 1>, b: Option<Tensor<Autodiff<B, C>, 1>>, eps: f32, fused: bool) -> Tensor<Autodiff<B, C>, 2> {
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let b = b.map(|b| b.into_primitive().tensor());
    let [y, mean, rstd] = B::norm_fwd(float(x.primitive.clone()), float(w.primitive.clone()), b.as_ref().map(|b| float(b.primitive.clone())), eps, fused);
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

/// The CUDA steps of [`norm_ad`] (`FusedBackend::norm_fwd`/`norm_bwd` on `CubeBackend`, and the
/// layer op's): the kernels of cuda/norm.cu.
#[cfg(feature = "cuda")]
pub(super) mod cuda {
    use super::super::fused::{dim, empty, grid, kernel, width, SOFTMAX_BLOCK};
    use super::super::nvrtc::{compact, enqueue_all, launch, launch_shared, with_null, Arg};
    use burn::tensor::DType;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::cuda::CudaRuntime;

    type T = CubeTensor<CudaRuntime>;

    /// `[y, mean, rstd]` of `x [rows, D]` with f32 `w`, `b` (`[D]`; no `b`: RMSNorm).
    pub fn fwd(x: T, w: T, b: Option<T>, eps: f32) -> [T; 3] {
        let (x, w, b) = (compact(x), compact(w), b.map(compact));
        let [rows, d] = x.meta.shape().dims::<2>();
        assert!(w.dtype == DType::F32 && w.meta.shape().num_elements() == d, "norm_fwd: weight {:?} {:?} for D {d}", w.meta.shape(), w.dtype);
        let (y, mean, rstd) = (empty(&x, vec![rows, d], x.dtype), empty(&x, vec![rows], DType::F32), empty(&x, vec![rows], DType::F32));
        let tail = [Arg::I64(rows as i64), Arg::I32(dim(d, "D")), Arg::F32(eps), Arg::I32(b.is_none() as i32)];
        let blocks = grid(rows, SOFTMAX_BLOCK as usize / 32);
        let mut ts = vec![&x, &w];
        ts.extend(&b);
        ts.extend([&y, &mean, &rstd]);
        let layer = b.is_some();
        enqueue_all(&ts, move |p, stream| {
            // without a bias the pointers are x, w, y, mean, rstd; the kernel takes 0 as "RMSNorm"
            let p = with_null(p, 2, layer);
            // the `_v` kernel reads x, y and the weights w, b by 16-byte accesses
            let name = kernel("norm_fwd", x.dtype, &[p[0], p[1], p[2], p[3]], &[d]);
            launch(&name, blocks, SOFTMAX_BLOCK, stream, &[p.into_iter().map(Arg::Ptr).collect(), tail.to_vec()].concat())
        });
        [y, mean, rstd]
    }

    /// `[dx, dw]` plus `db` for LayerNorm (`layer`) from the upstream `g`; `dx` plus `res` if given
    /// (the residual's gradient, in the layer op).
    pub fn bwd(g: T, x: T, w: T, mean: T, rstd: T, layer: bool, res: Option<T>) -> Vec<T> {
        let [g, x, w, mean, rstd] = [g, x, w, mean, rstd].map(compact);
        let res = res.map(compact);
        let [rows, d] = x.meta.shape().dims::<2>();
        assert_eq!(g.meta.shape(), x.meta.shape(), "norm_bwd: gradient and input shapes differ");
        assert!(res.as_ref().is_none_or(|r| r.meta.shape() == x.meta.shape() && r.dtype == x.dtype), "norm_bwd: residual gradient differs from the input");
        // RMSNorm has no shift, so no db: the kernels take 0 for it
        let (dx, dw, db) = (empty(&x, vec![rows, d], x.dtype), empty(&x, vec![d], DType::F32), layer.then(|| empty(&x, vec![d], DType::F32)));
        // 64 rows per block of 8 warps (pristine step on an H200, `bench/results`
        // 2026-12-04-h200-norm-head.jsonl: 0.49 ms; 32 rows 0.55, 16 rows 0.70, 128 rows 0.70 ms:
        // smaller blocks add atomics on the same columns, larger ones leave SMs idle)
        const ROWS_PER_BLOCK: usize = 64;
        let dtype = x.dtype;
        assert!(d <= crate::MAX_FUSED_NORM_D, "norm_bwd: D = {d} exceeds the shared-memory sums ({} floats)", 2 * crate::MAX_FUSED_NORM_D);
        let mut ts = vec![&g, &x, &w, &mean, &rstd];
        ts.extend(&res);
        ts.push(&dw);
        ts.extend(&db);
        ts.push(&dx);
        let summed = res.is_some();
        enqueue_all(&ts, move |p, stream| {
            let p = with_null(&with_null(p, 5, summed), 7, layer);
            let [g, x, w, m, r, res, dw, db, dx] = p[..].try_into().expect("9 pointers");
            let mut name = kernel("norm_bwd", dtype, &[g, x, w, dx, res], &[d]);
            // the `_v` kernel pads its shared sums (one float per access, cuda/norm.cu): where that
            // would pass the 48 KiB of shared memory a launch gets by default, the plain one runs
            let padded = 2 * (d + d / width(dtype)) * 4;
            if name.ends_with("_v") && padded > 48 * 1024 {
                name.truncate(name.len() - 2);
            }
            let shared = if name.ends_with("_v") { padded } else { 2 * d * 4 } as u32;
            // the sums start from zero: one small kernel for both (a memset each cost more in gaps)
            launch("norm_zero", 1, 256, stream, &[Arg::Ptr(dw), Arg::Ptr(db), Arg::I32(dim(d, "D"))]);
            let ptrs = [g, x, w, m, r, res, dx, dw, db].map(Arg::Ptr);
            let args = [&ptrs[..], &[Arg::I64(rows as i64), Arg::I32(dim(d, "D")), Arg::I32(!layer as i32), Arg::I32(ROWS_PER_BLOCK as i32)]].concat();
            launch_shared(&name, grid(rows, ROWS_PER_BLOCK), 256, shared, stream, &args)
        });
        [dx, dw].into_iter().chain(db).collect()
    }
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
        let _serial = crate::serial();
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
                let v = |t: Option<Tensor<crate::backend::Cpu, 2>>| t.map(|t| t.into_data().to_vec::<f32>().unwrap()).unwrap_or_default();
                let v1 = |t: Option<Tensor<crate::backend::Cpu, 1>>| t.map(|t| t.into_data().to_vec::<f32>().unwrap()).unwrap_or_default();
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
