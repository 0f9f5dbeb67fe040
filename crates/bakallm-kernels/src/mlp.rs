//! The gated MLP `down(silu(x·Wg) ⊙ (x·Wu))` as one autodiff op: one CUDA op each way
//! (`prims::mlp_fwd`, `prims::mlp_bwd`; the CUDA steps below).
//!
//! Why: as three linear ops and a gate op the MLP kept `silu(a) ⊙ u` (`[tokens, d_ff]`, 100 MB per
//! layer at the pristine shape) for the down projection's weight gradient, and ran the gate and up
//! projections as two GEMMs each way plus an add of their input gradients. Here the gate and up
//! weights are cast side by side into one `[d, 2·d_ff]` operand: one GEMM forward, one for the
//! input gradient, one batched call for both weight gradients; and the gate's backward kernel
//! recomputes `silu(a) ⊙ u` for the down projection's weight gradient, so the forward keeps only
//! the projections `h = [a | u]`, as before.

use super::prims::float;
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::DType;

/// `down(silu(x·wg) ⊙ (x·wu))` for `x [b, l, d]` (compute dtype) and f32 master weights `wg, wu
/// [d, F]`, `wd [F, d]`, on a training backend; `fused` picks the CUDA steps where `B` has them.
pub fn mlp_ad<B: Prims, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 3>,
    wg: Tensor<Autodiff<B, C>, 2>,
    wu: Tensor<Autodiff<B, C>, 2>,
    wd: Tensor<Autodiff<B, C>, 2>,
    fused: bool,
) -> Tensor<Autodiff<B, C>, 3> {
    #[derive(Debug)]
    struct MlpBackward {
        fused: bool,
        w_dtype: DType,
    }
    impl<B: Prims> Backward<B, 4> for MlpBackward {
        /// (x's node, h = [a | u], the cast weights [wg | wu] and wd)
        type State = (NodeId, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);
        fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let g = float::<B, 3>(grads.consume::<B>(&ops.node));
            let [b, l, d] = g.dims();
            let (x, h, wcat, wdc) = ops.state;
            let x = float::<B, 3>(ck.retrieve_node_output(x)).reshape([b * l, d]);
            let (dx, dwg, dwu, dwd) = B::mlp_bwd(g.reshape([b * l, d]), x, float(h), float(wcat), float(wdc), self.w_dtype, self.fused);
            let ds = [dx.reshape([b, l, d]).into_primitive().tensor(), dwg.into_primitive().tensor(), dwu.into_primitive().tensor(), dwd.into_primitive().tensor()];
            for (node, d) in ops.parents.into_iter().zip(ds) {
                if let Some(node) = node {
                    grads.register::<B>(node.id, d);
                }
            }
        }
    }
    let [b, l, d] = x.dims();
    let [x, wg, wu, wd] = [x.into_primitive().tensor(), wg.into_primitive().tensor(), wu.into_primitive().tensor(), wd.into_primitive().tensor()];
    let (g, u, dn) = (float::<B, 2>(wg.primitive.clone()), float::<B, 2>(wu.primitive.clone()), float::<B, 2>(wd.primitive.clone()));
    let w_dtype = g.dtype();
    let (y, h, wcat, wdc) = B::mlp_fwd(float::<B, 3>(x.primitive.clone()).reshape([b * l, d]), g, u, dn, fused);
    let y = y.reshape([b, l, d]).into_primitive().tensor();
    let parents = [x.node.clone(), wg.node.clone(), wu.node.clone(), wd.node.clone()];
    let out = match (MlpBackward { fused, w_dtype }).prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), h.into_primitive().tensor(), wcat.into_primitive().tensor(), wdc.into_primitive().tensor());
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}

/// The CUDA steps of [`mlp_ad`] (`FusedBackend::mlp_fwd`/`mlp_bwd` on `CubeBackend`): cuBLAS GEMMs
/// and the kernels of cuda/gate.cu, queued as one task each way.
#[cfg(feature = "cuda")]
pub(super) mod cuda {
    use super::super::cublas::{side, RowGemm, Side};
    use super::super::env::GLU_GEMM;
    use super::super::fused::{cast_many, empty, grid, kernel, part, width};
    use super::super::gemm::Trans::{N, T as Tr};
    use super::super::nvrtc::{capability, compact, enqueue, enqueue_all, launch, launch_with, Arg};
    use burn::tensor::DType;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::cuda::CudaRuntime;

    type T = CubeTensor<CudaRuntime>;

    /// `[y [n, d], h [n, 2F], [wg | wu] [d, 2F], wd [F, d]]` (the last three kept for the backward,
    /// the weights cast to `x`'s dtype) of `x [n, d]` and f32 `wg, wu [d, F]`, `wd [F, d]`; `y` plus
    /// `acc` (`[n, d]`, the residual) if given, added by the down projection's GEMM.
    pub fn fwd(x: T, wg: T, wu: T, wd: T, acc: Option<T>) -> [T; 4] {
        let [x, wg, wu, wd] = [x, wg, wu, wd].map(compact);
        let ([n, d], [_, f]) = (x.meta.shape().dims::<2>(), wg.meta.shape().dims::<2>());
        let ok = [&wg, &wu].iter().all(|w| w.meta.shape().dims::<2>() == [d, f]) && wd.meta.shape().dims::<2>() == [f, d];
        assert!(
            ok && [&wg, &wu, &wd].iter().all(|w| w.dtype == DType::F32),
            "mlp_fwd: x [{n}, {d}] with weights {:?} {:?} {:?} (f32 [d, F], [d, F], [F, d])",
            wg.meta.shape(),
            wu.meta.shape(),
            wd.meta.shape()
        );
        let dtype = x.dtype;
        let (h, wcat, wdc) = (empty(&x, vec![n, 2 * f], dtype), empty(&x, vec![d, 2 * f], dtype), empty(&x, vec![f, d], dtype));
        let beta = acc.is_some() as u8 as f32;
        let (s, y) = (empty(&x, vec![n, f], dtype), empty(&x, vec![n, d], dtype));
        let acc = acc.map(compact);
        let device = x.device.index;
        let mut ts = vec![&x, &wg, &wu, &wd];
        ts.extend(&acc);
        ts.extend([&h, &wcat, &wdc, &s, &y]);
        enqueue_all(&ts, move |p, stream| {
            let [px, pg, pu, pd] = p[..4].try_into().expect("4 inputs");
            let [ph, pw, pwd, ps, py] = p[p.len() - 5..].try_into().expect("5 outputs");
            let src = if beta == 0.0 { py } else { p[4] };
            cast_many(dtype, &[([pg, pw], [d, f, 2 * f, 0]), ([pu, pw], [d, f, 2 * f, f]), ([pd, pwd], [f, d, d, 0])], stream);
            // h = x · [wg | wu]; y = (silu(a) ⊙ u) · wd (+ acc)
            RowGemm { batch: 1, m: n, n: 2 * f, k: d, a: side(px, N, d), b: side(pw, N, 2 * f), c: side(ph, N, 2 * f), dtype, out: dtype, beta: 0.0 }.run(device, stream as _);
            down_fwd(dtype, [ph, ps, pwd, py, src], beta, [n, d, f, 2 * f], device, stream);
        });
        [y, h, wcat, wdc]
    }

    /// `[dx, dwg, dwu, dwd]` from `dy [n, d]` and the forward's `x`, `h`, cast weights; the weight
    /// gradients in `w_dtype` (the masters').
    pub fn bwd(dy: T, x: T, h: T, wcat: T, wdc: T, w_dtype: DType) -> [T; 4] {
        let [dy, x, h, wcat, wdc] = [dy, x, h, wcat, wdc].map(compact);
        let ([n, d], [_, f2]) = (x.meta.shape().dims::<2>(), h.meta.shape().dims::<2>());
        let f = f2 / 2;
        assert!(dy.meta.shape().dims::<2>() == [n, d] && wcat.meta.shape().dims::<2>() == [d, f2] && wdc.meta.shape().dims::<2>() == [f, d], "mlp_bwd: shapes");
        let dtype = x.dtype;
        let (gs, dh, dx) = (empty(&x, vec![n, f], dtype), empty(&x, vec![n, f2], dtype), empty(&x, vec![n, d], dtype));
        let (dw, dwd) = (empty(&x, vec![2, d, f], w_dtype), empty(&x, vec![f, d], w_dtype));
        let device = x.device.index;
        enqueue([&dy, &x, &h, &wcat, &wdc, &gs, &dh, &dx, &dw, &dwd], move |[pdy, px, ph, pw, pwd, pgs, pdh, pdx, pdw, pdwd], stream| {
            down_bwd(dtype, w_dtype, [pdy, ph, pwd, pgs, pdh, pdwd], [n, d, f, f2], device, stream);
            // dx = dh · [wg | wu]ᵀ
            RowGemm { batch: 1, m: n, n: d, k: f2, a: side(pdh, N, f2), b: side(pw, Tr, f2), c: side(pdx, N, d), dtype, out: dtype, beta: 0.0 }.run(device, stream as _);
            up_wgrad(dtype, w_dtype, [px, pdh, pdw], [n, d, f, f2], device, stream);
        });
        [dx, part(&dw, 0), part(&dw, 1), dwd]
    }

    /// Queues the MLP's second half (call from an `enqueue` task): `s = silu(a) ⊙ u` into `ps
    /// [n, F]` from `ph` (a, then u F columns on; rows `ldh` apart), then `y = s · wd` plus `beta ·`
    /// the matrix at `src` into `py [n, d]`: `[n, d, F, ldh]`.
    pub(crate) fn down_fwd(dtype: DType, [ph, ps, pwd, py, src]: [u64; 5], beta: f32, [n, d, f, ldh]: [usize; 4], device: usize, stream: cudarc::driver::sys::CUstream) {
        glu("glu_fwd", dtype, &[ph, ps], n * f, [f, ldh], stream);
        RowGemm { batch: 1, m: n, n: d, k: f, a: side(ps, N, f), b: side(pwd, N, d), c: side(py, N, d), dtype, out: dtype, beta }.run_from(src, device, stream as _);
    }

    /// Its backward (call from an `enqueue` task): `gs = dy · wdᵀ` into `pgs [n, F]`, then da and
    /// du into `pdh` (h's layout at `ph`, rows `ldh` apart) and `gs ← s = silu(a) ⊙ u`, then
    /// `dwd = sᵀ · dy` in `w_dtype`: `[n, d, F, ldh]`.
    pub(crate) fn down_bwd(dtype: DType, w_dtype: DType, [pdy, ph, pwd, pgs, pdh, pdwd]: [u64; 6], [n, d, f, ldh]: [usize; 4], device: usize, stream: cudarc::driver::sys::CUstream) {
        let gemm = |m, nn, k, a, b, c, out| RowGemm { batch: 1, m, n: nn, k, a, b, c, dtype, out, beta: 0.0 }.run(device, stream as _);
        if glu_gemm_fits(dtype, [n, d, f, ldh], &[pdy, ph, pwd, pgs, pdh]) {
            GLU_GEMM_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let args = [pdy, pwd, ph, pdh, pgs].map(Arg::Ptr).into_iter().chain([Arg::I32(n as i32), Arg::I32(f as i32), Arg::I32(d as i32), Arg::I64(ldh as i64)]);
            launch_with("glu_bwd_gemm", ((f / 128) as u32, n.div_ceil(128) as u32), 256, GLU_GEMM_SMEM, stream, &args.collect::<Vec<_>>());
        } else {
            gemm(n, f, d, side(pdy, N, d), side(pwd, Tr, d), side(pgs, N, f), dtype);
            glu("glu_bwd", dtype, &[ph, pgs, pdh], n * f, [f, ldh], stream);
        }
        gemm(f, d, n, side(pgs, Tr, f), side(pdy, N, d), side(pdwd, N, d), w_dtype);
    }

    /// `glu_bwd_gemm`'s shared memory: three stages of two 128 × 64 bf16 tiles, 1 KiB to align them
    /// (the epilogue's 128 × 136 bf16 tile reuses them).
    const GLU_GEMM_SMEM: u32 = 3 * 32768 + 1024;

    /// `glu_bwd_gemm` launches so far (the GPU test checks that the kernel ran).
    pub(crate) static GLU_GEMM_LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Whether `down_bwd` takes `glu_bwd_gemm` (cuda/glu_gemm.cu: the GEMM and the gate's backward
    /// in one kernel, wgmma): bf16 on a 9.0 device, `[n, d, F, ldh]` with n rows in the grid's
    /// 65535 blocks of 128, d and F multiples of 64 and 128 (F at least 128) in i32, ldh of 8,
    /// every pointer 16-byte aligned, unless `BAKA_GLU_GEMM=0`.
    fn glu_gemm_fits(dtype: DType, [n, d, f, ldh]: [usize; 4], ptrs: &[u64]) -> bool {
        let shape = n >= 1 && n.div_ceil(128) <= 65535 && d % 64 == 0 && d <= i32::MAX as usize && f >= 128 && f % 128 == 0 && f < i32::MAX as usize / 2 && ldh % 8 == 0;
        dtype == DType::BF16 && shape && ptrs.iter().all(|p| p % 16 == 0) && capability() == (9, 0) && GLU_GEMM.get()
    }

    /// The gate and up projections' weight gradients (call from an `enqueue` task): `[dwg, dwu][i]
    /// = xᵀ · dh[:, i·F..(i+1)·F]` into `pdw [2, d, F]` in `w_dtype`, one batched call, from `px
    /// [n, d]` and `pdh` (rows `ldh` apart): `[n, d, F, ldh]`.
    pub(crate) fn up_wgrad(dtype: DType, w_dtype: DType, [px, pdh, pdw]: [u64; 3], [n, d, f, ldh]: [usize; 4], device: usize, stream: cudarc::driver::sys::CUstream) {
        let (a, b, c) = (side(px, Tr, d), Side { ptr: pdh, op: N, ld: ldh, stride: f }, Side { ptr: pdw, op: N, ld: f, stride: d * f });
        RowGemm { batch: 2, m: d, n: f, k: n, a, b, c, dtype, out: w_dtype, beta: 0.0 }.run(device, stream as _);
    }

    /// Launches a `glu_*` kernel (cuda/gate.cu) over `n` elements of `[rows, F]`, h's (and dh's) rows
    /// `ldh` apart (2F, or wider within the parallel layer's input projections): `[F, ldh]`.
    fn glu(kind: &str, dtype: DType, ptrs: &[u64], n: usize, [f, ldh]: [usize; 2], stream: cudarc::driver::sys::CUstream) {
        let name = kernel(kind, dtype, ptrs, &[f, ldh]);
        let w = if name.ends_with("_v") { width(dtype) } else { 1 };
        let args: Vec<Arg> = ptrs.iter().map(|&p| Arg::Ptr(p)).chain([Arg::I64((n / w) as i64), Arg::I64(f as i64), Arg::I64(ldh as i64)]).collect();
        launch(&name, grid(n / w, 256).min(8192), 256, stream, &args);
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::prelude::*;
    use burn::tensor::activation::silu;

    /// The op (burn reference steps) equals burn's autodiff of the formula: output and the four
    /// gradients.
    #[test]
    fn mlp_op_matches_autodiff_of_the_formula() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (b, l, d, f) = (2, 3, 4, 6);
        let data = crate::test_values;
        let t = |len, k, shape: [usize; 2]| Tensor::<CpuTrain, 1>::from_data(data(len, k), &dev).reshape(shape).require_grad();
        let up = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 9), &dev).reshape([b, l, d]);
        let run = |ours: bool| {
            let x = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 1), &dev).reshape([b, l, d]).require_grad();
            let (wg, wu, wd) = (t(d * f, 2, [d, f]), t(d * f, 3, [d, f]), t(f * d, 4, [f, d]));
            let y = if ours {
                super::mlp_ad(x.clone(), wg.clone(), wu.clone(), wd.clone(), false)
            } else {
                let w3 = |w: &Tensor<CpuTrain, 2>| w.clone().unsqueeze::<3>();
                (silu(x.clone().matmul(w3(&wg))) * x.clone().matmul(w3(&wu))).matmul(w3(&wd))
            };
            let grads = (y.clone() * up.clone()).sum().backward();
            let v2 = |w: &Tensor<CpuTrain, 2>| w.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            let v3 = |t: Tensor<_, 3>| t.into_data().to_vec::<f32>().unwrap();
            [v3(y.inner()), v3(x.grad(&grads).unwrap()), v2(&wg), v2(&wu), v2(&wd)]
        };
        let (ours, theirs) = (run(true), run(false));
        for (name, (a, b)) in ["y", "dx", "dwg", "dwu", "dwd"].iter().zip(ours.iter().zip(&theirs)) {
            assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5 * (1.0 + q.abs())), "{name}: {a:?} vs {b:?}");
            assert!(a.iter().any(|v| v.abs() > 1e-3), "{name} must not vanish");
        }
    }
}
