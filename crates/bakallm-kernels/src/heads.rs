//! The attention's head split (with the RoPE/xPos rotation folded in) and head merge as autodiff
//! ops, each one CUDA kernel each way.
//!
//! Why: through burn's ops the split is a reshape + transpose copy, and the rotation a narrow, a
//! neg, a cat and two products, each a separate pass forward and backward (≈ 13 kernels forward and
//! 12 backward per layer at the pristine shape, ~1 ms per layer in cubecl's profile). Here `[b, L,
//! d]` from the projection goes to the `[b·H, L, hd]` the attention GEMMs read in one pass.

use super::prims::{float, Rot};
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

/// Split (`merge = false`) or merge, tracked: the backward is the other direction with the same
/// tables (the adjoint).
fn heads_ad<B: Prims, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 3>, rot: &Rot<B>, heads: usize, fused: bool, merge: bool) -> Tensor<Autodiff<B, C>, 3> {
    #[derive(Debug)]
    struct HeadsBackward {
        heads: usize,
        fused: bool,
        merge: bool,
    }
    impl<B: Prims> Backward<B, 1> for HeadsBackward {
        /// the rotation tables, if any
        type State = Option<(FloatTensor<B>, FloatTensor<B>)>;
        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let [node] = ops.parents;
            let g = float::<B, 3>(grads.consume::<B>(&ops.node));
            let Some(node) = node else { return };
            let rot = ops.state.map(|(c, s)| (float(c), float(s)));
            let (h, f) = (self.heads, self.fused);
            let d = if self.merge { B::heads_split(g, &rot, h, f) } else { B::heads_merge(g, &rot, h, f) };
            grads.register::<B>(node.id, d.into_primitive().tensor());
        }
    }
    let x = x.into_primitive().tensor();
    let inner = float::<B, 3>(x.primitive.clone());
    let y = if merge { B::heads_merge(inner, rot, heads, fused) } else { B::heads_split(inner, rot, heads, fused) };
    let y = y.into_primitive().tensor();
    let out = match (HeadsBackward { heads, fused, merge }).prepare::<C>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(rot.clone().map(|(c, s)| (c.into_primitive().tensor(), s.into_primitive().tensor())), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    float(out)
}

/// `x [b, L, heads·hd]` → `[b·heads, L, hd]`, rotated by `rot` (constant tables) if given.
pub fn split_heads_ad<B: Prims, C: CheckpointStrategy>(x: Tensor<Autodiff<B, C>, 3>, rot: &Rot<B>, heads: usize, fused: bool) -> Tensor<Autodiff<B, C>, 3> {
    heads_ad(x, rot, heads, fused, false)
}

/// `y [b·heads, L, hd]` → `[b, L, heads·hd]`.
pub fn merge_heads_ad<B: Prims, C: CheckpointStrategy>(y: Tensor<Autodiff<B, C>, 3>, heads: usize, fused: bool) -> Tensor<Autodiff<B, C>, 3> {
    heads_ad(y, &None, heads, fused, true)
}

/// The CUDA side of the head ops (`FusedBackend::heads_split`/`heads_merge` on `CubeBackend`, and
/// the attention sublayer's steps): launches of cuda/attention.cu's head kernels.
#[cfg(feature = "cuda")]
pub(super) mod cuda {
    use super::super::fused::{dim, grid, kernel, width};
    use super::super::nvrtc::{compact, enqueue_all, launch as launch_1d, launch_2d, Arg};
    use burn::tensor::DType;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::cuda::CudaRuntime;

    type T = CubeTensor<CudaRuntime>;

    /// Launches `heads_split`/`heads_merge` from `input` into `out` (one thread per element).
    pub fn run(kind: &'static str, input: T, rot: Option<[T; 2]>, out: T, [l, heads, hd]: [usize; 3]) -> T {
        assert!(input.meta.shape().num_elements() == out.meta.shape().num_elements() && heads * hd > 0, "{kind}: {:?} with {heads} heads", input.meta.shape());
        let n = out.meta.shape().num_elements();
        let tables = rot.map(|t| t.map(compact));
        if let Some([c, s]) = &tables {
            assert!([c, s].iter().all(|t| t.meta.shape().num_elements() == l * hd && t.dtype == input.dtype), "{kind}: tables {:?} for L {l}, head dim {hd}", c.meta.shape());
        }
        let mut ts = vec![&input];
        ts.extend(tables.iter().flatten());
        ts.push(&out);
        let (rotated, dtype) = (tables.is_some(), input.dtype);
        enqueue_all(&ts, move |p, stream| {
            let rot = rotated.then(|| [p[1], p[2]]);
            launch(kind, dtype, [p[0], p[p.len() - 1]], rot, n, [l, heads, hd, heads * hd], stream)
        });
        out
    }

    /// Queues `heads_split`/`heads_merge` (cuda/attention.cu) over `n` elements from `src` into `dst`
    /// (device pointers), rotated by the tables `rot` if given; the `[b, L, ·]` side's rows are `ld`
    /// elements apart. Call from an `enqueue` task.
    pub fn launch(kind: &str, dtype: DType, [src, dst]: [u64; 2], rot: Option<[u64; 2]>, n: usize, [l, heads, hd, ld]: [usize; 4], stream: cudarc::driver::sys::CUstream) {
        let [c, s] = rot.unwrap_or([0, 0]);
        let ptrs: Vec<u64> = [src, dst].into_iter().chain(rot.into_iter().flatten()).collect();
        // a rotation reads the partner half as one access too, so the half must be whole accesses
        let name = kernel(kind, dtype, &ptrs, &[hd, ld, if rot.is_some() { hd / 2 } else { 0 }]);
        let per_thread = if name.ends_with("_v") { width(dtype) } else { 1 };
        let dims = [Arg::I64(n as i64), Arg::I32(dim(l, "L")), Arg::I32(dim(heads, "heads")), Arg::I32(dim(hd, "head dim")), Arg::I32(dim(ld, "row stride"))];
        let args = [&[Arg::Ptr(src), Arg::Ptr(c), Arg::Ptr(s), Arg::Ptr(dst)], &dims[..], &[Arg::I32(rot.is_some() as i32)]].concat();
        launch_1d(&name, grid(n / per_thread, 256), 256, stream, &args)
    }

    /// Queues `rotate_qk` (cuda/attention.cu): q's and k's columns of the fused projection `fused`
    /// `[rows, 3·heads·hd]` (rows `ld` apart) rotated in place by their tables (`rot`; a side
    /// without tables is left as it is, and without any nothing is launched). The gradients'
    /// rotation back is the flash backward's (`flash::bwd`'s `unrotate`). Call from an `enqueue`
    /// task.
    pub fn rotate(dtype: DType, fused: u64, rot: [Option<[u64; 2]>; 2], rows: usize, [l, heads, hd]: [usize; 3], ld: usize, stream: cudarc::driver::sys::CUstream) {
        if rot.iter().all(|r| r.is_none()) {
            return;
        }
        let [cq, sq] = rot[0].unwrap_or([0, 0]);
        let [ck, sk] = rot[1].unwrap_or([0, 0]);
        let ptrs: Vec<u64> = [fused].into_iter().chain(rot.into_iter().flatten().flatten()).collect();
        // each thread moves W elements of a pair's first half and W of its second
        let name = kernel("rotate_qk", dtype, &ptrs, &[hd / 2, ld]);
        let per_thread = if name.ends_with("_v") { width(dtype) } else { 1 };
        let pairs = rows * heads * hd / 2;
        let args = [
            Arg::Ptr(fused),
            Arg::Ptr(cq),
            Arg::Ptr(sq),
            Arg::Ptr(ck),
            Arg::Ptr(sk),
            Arg::I64(rows as i64),
            Arg::I32(dim(l, "L")),
            Arg::I32(dim(heads, "heads")),
            Arg::I32(dim(hd, "head dim")),
            Arg::I32(dim(ld, "row stride")),
        ];
        launch_2d(&name, (grid(pairs / per_thread, 256), 2), 256, stream, &args)
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use crate::reference::rotate;
    use crate::test_positions::{positions, Scheme};
    use burn::prelude::*;

    /// Split (with RoPE and xPos tables, and without) and merge equal burn's reshape/transpose and
    /// `positions::rotate` through autodiff: values and input gradients.
    #[test]
    fn split_and_merge_match_autodiff_of_reshape_and_rotate() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (b, l, heads, hd) = (2, 5, 3, 4);
        let d = heads * hd;
        for kind in [Scheme::Nope, Scheme::Rope, Scheme::Xpos] {
            let t = positions::<CpuTrain>(kind, l, 3, heads, hd, 10.0, 8.0, burn::tensor::FloatDType::F32, &dev);
            let rot = t.rot_q.clone();
            let rot_inner = rot.clone().map(|(c, s)| (c.inner(), s.inner()));
            let xs: Vec<f32> = (0..b * l * d).map(|i| ((i * 37 % 23) as f32 - 11.0) / 5.0).collect();
            let ws: Vec<f32> = (0..b * l * d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
            let run = |op: bool| {
                let x = Tensor::<CpuTrain, 3>::from_data(TensorData::new(xs.clone(), [b, l, d]), &dev).require_grad();
                // split, a pointwise weight in head layout (so the merge's input is not the split's output), merge
                let w = Tensor::<CpuTrain, 3>::from_data(TensorData::new(ws.clone(), [b * heads, l, hd]), &dev);
                let (split, merged) = if op {
                    let s = super::split_heads_ad(x.clone(), &rot_inner, heads, true);
                    (s.clone(), super::merge_heads_ad(s * w, heads, true))
                } else {
                    let s = rotate(x.clone().reshape([b, l, heads, hd]).swap_dims(1, 2), &rot).reshape([b * heads, l, hd]);
                    (s.clone(), (s * w).reshape([b, heads, l, hd]).swap_dims(1, 2).reshape([b, l, d]))
                };
                let loss = (merged.clone() * merged.clone()).sum();
                let g = x.grad(&loss.backward()).unwrap();
                [split.into_data().to_vec::<f32>().unwrap(), merged.into_data().to_vec::<f32>().unwrap(), g.into_data().to_vec::<f32>().unwrap()]
            };
            let (want, got) = (run(false), run(true));
            // the split written out element by element: y[j] = x[j]·cos[t, j] + x̃[j]·sin[t, j], with
            // x̃ = [−x₂, x₁] (rotate-half), in the `[b·heads, L, hd]` layout
            let table = |i: usize| rot.as_ref().map(|r| [&r.0, &r.1][i].clone().into_data().to_vec::<f32>().unwrap());
            let (cos, sin) = (table(0), table(1));
            for bh in 0..b * heads {
                let (bi, h) = (bh / heads, bh % heads);
                for t in 0..l {
                    for j in 0..hd {
                        let x = |j: usize| xs[(bi * l + t) * d + h * hd + j];
                        let partner = if j < hd / 2 { -x(j + hd / 2) } else { x(j - hd / 2) };
                        let y = match (&cos, &sin) {
                            (Some(c), Some(s)) => x(j) * c[t * hd + j] + partner * s[t * hd + j],
                            _ => x(j),
                        };
                        let op = got[0][(bh * l + t) * hd + j];
                        assert!((op - y).abs() < 1e-5 * (1.0 + y.abs()), "{kind:?} split [{bh}, {t}, {j}]: {op} vs {y}");
                    }
                }
            }
            for (what, (a, g)) in ["split", "merge", "dx"].iter().zip(want.iter().zip(&got)) {
                for (x, y) in a.iter().zip(g) {
                    assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "{kind:?} {what}: {x} vs {y}");
                }
            }
        }
    }
}
