//! The attention sublayer `o(flash(split(h·Wq), split(h·Wk), split(h·Wv)))` as one autodiff op:
//! one CUDA op each way (`block_fwd`, `block_bwd`; the CUDA steps below).
//!
//! Why: as four linear ops, three head splits, the flash op and a head merge, each layer's
//! attention was nine autodiff ops each way, eight GEMMs (four forward, eight backward: each linear
//! two) and two adds of the three projections' input gradients. Here the q, k, v weights are cast
//! side by side into one `[d, 3d]` operand: one GEMM forward, one for the input gradient and one
//! batched call for the three weight gradients. On CUDA no head split or merge runs: the flash
//! kernels read q, k, v from the fused projection (q's and k's columns rotated there in place),
//! write `o` with the heads side by side as the output projection reads it, and write the gradients
//! of q, k, v back into the fused projection's layout. The forward keeps the fused projection, `o`,
//! the log-sum-exp and the cast weights.
//! Used where the flash kernels apply; as its own op where positions add nothing before the split,
//! inside the layer op (`super::layer`) also with a key term (linspace's ramp ⊗ scale).

use super::prims::{self, Alibi, Rot};
use crate::inner::Prims;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::*;
use burn::tensor::DType;

/// What the backward needs from the forward: `qkv`, the fused projection `[b, L, 3d]` with q and k
/// rotated (q, k and v side by side, heads side by side in each), the attention's output `o` with
/// the heads side by side `[b, L, d]`, the log-sum-exp `[b·H, L]`, the cast weights
/// `[wq | wk | wv]` `[d, 3d]` and `wo` `[d, d]`.
#[derive(Debug, Clone)]
pub struct Saved<B: Backend> {
    pub qkv: Tensor<B, 3>,
    pub o: Tensor<B, 3>,
    pub lse: Tensor<B, 2>,
    pub wqkv: Tensor<B, 2>,
    pub wo: Tensor<B, 2>,
}

/// The sublayer's constants: the rotation tables of q and k, ALiBi (the one bias beyond the causal
/// mask), the head count and the softmax scale.
#[derive(Debug, Clone)]
pub struct Consts<B: Backend> {
    pub rot: [Rot<B>; 2],
    pub alibi: Option<Alibi<B>>,
    pub heads: usize,
    pub scale: f32,
}

/// ALiBi's table, as burn's steps add it.
fn table<B: Backend>(c: &Consts<B>) -> Option<Tensor<B, 4>> {
    c.alibi.as_ref().map(|a| a.table.clone())
}

/// `h [b, L, d]` (bf16) and f32 weights `[wq, wk, wv, wo]` (`[d, d]`) → `y [b, L, d]` and what the
/// backward needs; one CUDA op with `fused` on the CUDA backend, burn's steps (`prims`) elsewhere.
/// `k_add [L, d]` (in h's dtype), if given, is added to every sequence's key projection before the
/// head split (linspace's ramp times its scale).
pub fn block_fwd<B: Backend>(h: Tensor<B, 3>, ws: [Tensor<B, 2>; 4], k_add: Option<Tensor<B, 2>>, c: &Consts<B>) -> (Tensor<B, 3>, Saved<B>) {
    let [b, l, d] = h.dims();
    let dt = h.dtype().into();
    let [wq, wk, wv, wo] = ws;
    let (wqkv, wo) = (super::reference::to(Tensor::cat(vec![wq, wk, wv], 1), dt), super::reference::to(wo, dt));
    let hqkv = h.reshape([b * l, d]).matmul(wqkv.clone()).reshape([b, l, 3 * d]);
    let split = |x: Tensor<B, 3>, rot: &Rot<B>| prims::heads_split(x, rot, c.heads);
    let key = hqkv.clone().narrow(2, d, d);
    let key = match k_add {
        Some(a) => key + a.unsqueeze::<3>(),
        None => key,
    };
    let (q, k, v) = (split(hqkv.clone().narrow(2, 0, d), &c.rot[0]), split(key, &c.rot[1]), split(hqkv.narrow(2, 2 * d, d), &None));
    let (o, lse) = prims::flash_fwd(q.clone(), k.clone(), v.clone(), table(c), c.scale, c.heads);
    let o = prims::heads_merge(o, &None, c.heads);
    let y = o.clone().reshape([b * l, d]).matmul(wo.clone()).reshape([b, l, d]);
    let qkv = Tensor::cat([q, k, v].map(|t| prims::heads_merge(t, &None, c.heads)).into(), 2);
    (y, Saved { qkv, o, lse, wqkv, wo })
}

/// Its gradients `(dh, [dwq, dwk, dwv, dwo], dk_add)` from `dy [b, L, d]`, the input `h` and `s`;
/// the weight gradients in `w_dtype` (the masters'), `k_add`'s (`[L, d]`, summed over the
/// sequences) in h's dtype when `k_add` was given.
pub fn block_bwd<B: Backend>(dy: Tensor<B, 3>, h: Tensor<B, 3>, s: Saved<B>, c: &Consts<B>, w_dtype: DType, k_add: bool) -> (Tensor<B, 3>, [Tensor<B, 2>; 4], Option<Tensor<B, 2>>) {
    let [b, l, d] = dy.dims();
    let (n, heads) = (b * l, c.heads);
    let dy = dy.reshape([n, d]);
    let dwo = s.o.clone().reshape([n, d]).transpose().matmul(dy.clone());
    let dout = prims::heads_split(dy.matmul(s.wo.transpose()).reshape([b, l, d]), &None, heads);
    let o = prims::heads_split(s.o, &None, heads);
    let [q, k, v] = [0, 1, 2].map(|i| prims::heads_split(s.qkv.clone().narrow(2, i * d, d), &None, heads));
    let [dq, dk, dv] = prims::flash_bwd(q, k, v, o, s.lse, dout, table(c), c.scale, heads);
    let merged = [(dq, &c.rot[0]), (dk, &c.rot[1]), (dv, &None)].map(|(g, rot)| prims::heads_merge(g, rot, heads));
    let dhqkv = Tensor::cat(merged.into(), 2).reshape([n, 3 * d]);
    let dw = h.reshape([n, d]).transpose().matmul(dhqkv.clone());
    let w = |t: Tensor<B, 2>| super::reference::to(t, w_dtype.into());
    let dws = [w(dw.clone().narrow(1, 0, d)), w(dw.clone().narrow(1, d, d)), w(dw.narrow(1, 2 * d, d)), w(dwo)];
    let dk_add = k_add.then(|| dhqkv.clone().narrow(1, d, d).reshape([b, l, d]).sum_dim(0).reshape([l, d]));
    (dhqkv.matmul(s.wqkv.transpose()).reshape([b, l, d]), dws, dk_add)
}

/// The sublayer as one node of `Autodiff<B, C>`'s graph: `h [b, L, d]` and the f32 weights
/// `[wq, wk, wv, wo]` tracked, the constants `c` not.
pub fn attention_block_ad<B: Prims, C: CheckpointStrategy>(h: Tensor<Autodiff<B, C>, 3>, ws: [Tensor<Autodiff<B, C>, 2>; 4], c: Consts<B>, fused: bool) -> Tensor<Autodiff<B, C>, 3> {
    #[derive(Debug)]
    struct BlockBackward {
        fused: bool,
        w_dtype: DType,
    }
    impl<B: Prims> Backward<B, 5> for BlockBackward {
        /// (h's node, what the forward kept, the constants)
        type State = (NodeId, Saved<B>, Consts<B>);
        fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let dy = prims::float::<B, 3>(grads.consume::<B>(&ops.node));
            let (h, saved, c) = ops.state;
            let h = prims::float::<B, 3>(ck.retrieve_node_output(h));
            let (dh, [dwq, dwk, dwv, dwo], _) = B::block_bwd(dy, h, saved, &c, self.w_dtype, false, self.fused);
            let ds = [dh.into_primitive().tensor(), dwq.into_primitive().tensor(), dwk.into_primitive().tensor(), dwv.into_primitive().tensor(), dwo.into_primitive().tensor()];
            for (node, d) in ops.parents.into_iter().zip(ds) {
                if let Some(node) = node {
                    grads.register::<B>(node.id, d);
                }
            }
        }
    }
    let h = h.into_primitive().tensor();
    let ws = ws.map(|w| w.into_primitive().tensor());
    let inner = ws.clone().map(|w| prims::float::<B, 2>(w.primitive));
    let w_dtype = inner[0].dtype();
    let (y, saved) = B::block_fwd(prims::float::<B, 3>(h.primitive.clone()), inner, None, &c, fused);
    let y = y.into_primitive().tensor();
    let parents = [h.node.clone(), ws[0].node.clone(), ws[1].node.clone(), ws[2].node.clone(), ws[3].node.clone()];
    let out = match (BlockBackward { fused, w_dtype }).prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&h), saved, c);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    prims::float(out)
}

/// The CUDA steps of [`block_fwd`]/[`block_bwd`] (`FusedBackend::attn_fwd`/`attn_bwd` on
/// `CubeBackend`): cuBLAS GEMMs, the head kernels of cuda/attention.cu reading and writing the
/// fused projection in place, and the flash kernels (`super::flash`).
#[cfg(feature = "cuda")]
pub(super) mod cuda {
    use super::super::cublas::{side, RowGemm, Side};
    use super::super::flash::{rot_ptrs, OutLayout::Merged, Qkv};
    use super::super::fused::{cast_many, dim, dtype_name, empty, grid, part};
    use super::super::gemm::Trans::{N, T as Tr};
    use super::super::heads::cuda::rotate;
    use super::super::nvrtc::{compact, enqueue, enqueue_all, launch, Arg};
    use burn::tensor::DType;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::cuda::CudaRuntime;

    type T = CubeTensor<CudaRuntime>;

    fn tables(rot: &[Option<[T; 2]>; 2]) -> Vec<&T> {
        rot.iter().flatten().flatten().collect()
    }

    /// `[y, qkv, o, lse, [wq | wk | wv], wo]` of `h [b, L, d]` and f32 `ws [d, d]` (`qkv`, the
    /// fused projection `[b, L, 3d]`, q and k rotated in place); `y` plus `acc` `[b, L, d]` if given
    /// (the residual, added by the output projection's GEMM), the key projection plus `k_add`
    /// `[L, d]` if given (`add_key`).
    #[allow(clippy::too_many_arguments)]
    pub fn fwd(h: T, ws: [T; 4], rot: [Option<[T; 2]>; 2], alibi: Option<T>, heads: usize, scale: f32, acc: Option<T>, k_add: Option<T>) -> [T; 6] {
        let (h, ws, k_add) = (compact(h), ws.map(compact), k_add.map(compact));
        let rot = rot.map(|r| r.map(|t| t.map(compact)));
        let [b, l, d] = h.meta.shape().dims::<3>();
        assert!(k_add.as_ref().is_none_or(|a| a.dtype == h.dtype && a.meta.shape().dims::<2>() == [l, d]), "attn_fwd: k_add must be [{l}, {d}] in h's dtype");
        let (n, hd, dt, device) = (b * l, d / heads, h.dtype, h.device.index);
        assert!(ws.iter().all(|w| w.dtype == DType::F32 && w.meta.shape().dims::<2>() == [d, d]), "attn_fwd: weights must be f32 [{d}, {d}]");
        let (wqkv, wo, hqkv) = (empty(&h, vec![d, 3 * d], dt), empty(&h, vec![d, d], dt), empty(&h, vec![b, l, 3 * d], dt));
        // the tables before the outputs: the task runs on the last tensor's stream, a fresh output's
        let mut ts = vec![&h, &ws[0], &ws[1], &ws[2], &ws[3]];
        ts.extend(&k_add);
        ts.extend(tables(&rot));
        ts.extend([&wqkv, &wo, &hqkv]);
        let (has, added) = (rot.each_ref().map(|r| r.is_some()), k_add.is_some() as usize);
        enqueue_all(&ts, move |p, stream| {
            let nt = p.len() - 8 - added;
            let [ph, pwq, pwk, pwv, pwo] = p[..5].try_into().expect("5 inputs");
            let [pwqkv, pwoc, phqkv] = p[5 + added + nt..].try_into().expect("3 outputs");
            cast_many(dt, &[([pwq, pwqkv], [d, d, 3 * d, 0]), ([pwk, pwqkv], [d, d, 3 * d, d]), ([pwv, pwqkv], [d, d, 3 * d, 2 * d]), ([pwo, pwoc], [d, d, d, 0])], stream);
            RowGemm { batch: 1, m: n, n: 3 * d, k: d, a: side(ph, N, d), b: side(pwqkv, N, 3 * d), c: side(phqkv, N, 3 * d), dtype: dt, out: dt, beta: 0.0 }.run(device, stream as _);
            let k_add = (added == 1).then(|| p[5]);
            key_and_rotate(dt, phqkv, k_add, rot_ptrs(has, &p[5 + added..5 + added + nt]).0, [n, l, heads, hd, 3 * d], stream);
        });
        // o with the heads side by side, [b, L, d]: the output projection's input as it is
        let [o, lse] = super::super::flash::fwd(Qkv::Fused { x: hqkv.clone(), d }, alibi, scale, heads, Merged);
        let y = out_proj(&o, &wo, acc);
        [y, hqkv, o, lse, wqkv, wo]
    }

    /// Queues the key term's add (`k_add` `[L, d]`, if given) and q's and k's rotations (`rot`) on
    /// the fused projection `pqkv` (`[rows, ·]`, rows `ld` apart) in place: `[rows, L, heads, hd,
    /// ld]`. Call from an `enqueue` task.
    pub fn key_and_rotate(dt: DType, pqkv: u64, k_add: Option<u64>, rot: [Option<[u64; 2]>; 2], [n, l, heads, hd, ld]: [usize; 5], stream: cudarc::driver::sys::CUstream) {
        let d = heads * hd;
        if let Some(pa) = k_add {
            let args = [Arg::Ptr(pqkv), Arg::Ptr(pa), Arg::I64(n as i64), Arg::I32(dim(l, "L")), Arg::I32(dim(d, "d")), Arg::I32(dim(ld, "row stride"))];
            launch(&format!("add_key_{}", dtype_name(dt)), grid(n * d, 256), 256, stream, &args);
        }
        // q and k rotated where they lie; flash reads q, k, v from the fused projection
        rotate(dt, pqkv, rot, n, [l, heads, hd], ld, stream);
    }

    /// The output projection `o · wo` (`o [b, L, d]`, `wo` cast `[d, d]`), plus `acc` if given.
    pub fn out_proj(o: &T, wo: &T, acc: Option<T>) -> T {
        let [b, l, d] = o.meta.shape().dims::<3>();
        let (n, dt, device) = (b * l, o.dtype, o.device.index);
        let y = empty(o, vec![b, l, d], dt);
        let acc = acc.map(compact);
        let mut ts = vec![o, wo];
        ts.extend(&acc);
        ts.push(&y);
        let summed = acc.is_some();
        enqueue_all(&ts, move |p, stream| {
            let (po, pwo, py) = (p[0], p[1], p[p.len() - 1]);
            let g = RowGemm { batch: 1, m: n, n: d, k: d, a: side(po, N, d), b: side(pwo, N, d), c: side(py, N, d), dtype: dt, out: dt, beta: summed as u8 as f32 };
            g.run_from(if summed { p[2] } else { py }, device, stream as _);
        });
        y
    }

    /// The output projection's backward: `[dout, dwo]` from `dy [b, L, d]`, `o` and the cast `wo`
    /// (`dout` with the heads side by side, as the forward wrote `o`; `dwo` in `w_dtype`).
    pub fn out_back(dy: &T, o: &T, wo: &T, w_dtype: DType) -> [T; 2] {
        let [b, l, d] = o.meta.shape().dims::<3>();
        let (n, dt, device) = (b * l, o.dtype, o.device.index);
        let (dout, dwo) = (empty(o, vec![b, l, d], dt), empty(o, vec![d, d], w_dtype));
        let gemm = move |m, nn, k, a, b, c, out, stream: cudarc::driver::sys::CUstream| RowGemm { batch: 1, m, n: nn, k, a, b, c, dtype: dt, out, beta: 0.0 }.run(device, stream as _);
        enqueue([dy, o, wo, &dout, &dwo], move |[pdy, po, pwo, pdout, pdwo], stream| {
            // dout = dy · woᵀ; dwo = oᵀ · dy
            gemm(n, d, d, side(pdy, N, d), side(pwo, Tr, d), side(pdout, N, d), dt, stream);
            gemm(d, d, n, side(po, Tr, d), side(pdy, N, d), side(pdwo, N, d), w_dtype, stream);
        });
        [dout, dwo]
    }

    /// Queues the key term's gradient: `g [L, d]` = the key columns of `pdqkv` (`[b·L, ·]`, rows
    /// `ld` apart) summed over the `b` sequences. Call from an `enqueue` task.
    pub fn key_grad(dt: DType, pdqkv: u64, pg: u64, [b, l, d, ld]: [usize; 4], stream: cudarc::driver::sys::CUstream) {
        let args = [Arg::Ptr(pdqkv), Arg::Ptr(pg), Arg::I32(dim(b, "batch")), Arg::I32(dim(l, "L")), Arg::I32(dim(d, "d")), Arg::I32(dim(ld, "row stride"))];
        launch(&format!("sum_key_{}", dtype_name(dt)), grid(l * d, 256), 256, stream, &args);
    }

    /// The q, k, v projections' weight gradients (call from an `enqueue` task): `[dwq, dwk,
    /// dwv][i] = hᵀ · dqkv[:, i·d..(i+1)·d]` into `pdw [3, d, d]` in `w_dtype`, one batched call,
    /// from `ph [n, d]` and `pdqkv` (rows `ld` apart): `[n, d, ld]`.
    pub fn qkv_wgrad(dt: DType, w_dtype: DType, [ph, pdqkv, pdw]: [u64; 3], [n, d, ld]: [usize; 3], device: usize, stream: cudarc::driver::sys::CUstream) {
        let (a, b, c) = (side(ph, Tr, d), Side { ptr: pdqkv, op: N, ld, stride: d }, Side { ptr: pdw, op: N, ld: d, stride: d * d });
        RowGemm { batch: 3, m: d, n: d, k: n, a, b, c, dtype: dt, out: w_dtype, beta: 0.0 }.run(device, stream as _);
    }

    /// `[dh, dwq, dwk, dwv, dwo]` from `dy [b, L, d]`, `h` and the forward's
    /// `[qkv, o, lse, wqkv, wo]`; the weight gradients in `w_dtype`. With `k_add`, also the key
    /// term's gradient `[L, d]` (`sum_key`).
    #[allow(clippy::too_many_arguments)]
    pub fn bwd(dy: T, h: T, saved: [T; 5], rot: [Option<[T; 2]>; 2], alibi: Option<T>, heads: usize, scale: f32, w_dtype: DType, k_add: bool) -> ([T; 5], Option<T>) {
        let [dy, h] = [dy, h].map(compact);
        let [qkv, o, lse, wqkv, wo] = saved.map(compact);
        let [b, l, d] = h.meta.shape().dims::<3>();
        let (n, dt, device) = (b * l, h.dtype, h.device.index);
        let [dout, dwo] = out_back(&dy, &o, &wo, w_dtype);
        // the gradients of q, k, v straight into the fused projection's layout, q's and k's rotated
        // back as the kernels write them
        let dhqkv = match super::super::flash::bwd(Qkv::Fused { x: qkv, d }, o, dout, lse, alibi, scale, heads, Merged, rot, None) {
            Qkv::Fused { x, .. } => x,
            Qkv::Heads(_) => unreachable!("gradients come in q's layout"),
        };
        let dh = empty(&h, vec![b, l, d], dt);
        let dw = empty(&h, vec![3, d, d], w_dtype);
        let dk_add = k_add.then(|| empty(&h, vec![l, d], dt));
        let mut ts = vec![&dhqkv, &h, &wqkv];
        ts.extend(&dk_add);
        ts.extend([&dh, &dw]);
        let added = k_add as usize;
        enqueue_all(&ts, move |p, stream| {
            let [pdhqkv, ph, pwqkv] = p[..3].try_into().expect("3 inputs");
            let [pdh, pdw] = p[3 + added..].try_into().expect("2 outputs");
            if added == 1 {
                key_grad(dt, pdhqkv, p[3], [b, l, d, 3 * d], stream);
            }
            // dh = dhqkv · [wq | wk | wv]ᵀ
            RowGemm { batch: 1, m: n, n: d, k: 3 * d, a: side(pdhqkv, N, 3 * d), b: side(pwqkv, Tr, 3 * d), c: side(pdh, N, d), dtype: dt, out: dt, beta: 0.0 }.run(device, stream as _);
            qkv_wgrad(dt, w_dtype, [ph, pdhqkv, pdw], [n, d, 3 * d], device, stream);
        });
        ([dh, part(&dw, 0), part(&dw, 1), part(&dw, 2), dwo], dk_add)
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use crate::reference::rotate;
    use crate::test_positions::{positions, Scheme};
    use burn::prelude::*;
    use burn::tensor::activation::softmax;

    /// The op (burn reference steps) equals burn's autodiff of the sublayer's formula (xPos: q and
    /// k rotated by different tables; ALiBi: a per-head bias): output and the five gradients.
    #[test]
    fn block_op_matches_autodiff_of_the_formula() {
        let _serial = crate::serial();
        let dev = Default::default();
        let (b, l, d, heads) = (2, 5, 8, 2);
        let hd = d / heads;
        for kind in [Scheme::Xpos, Scheme::Alibi] {
            let t = positions::<crate::backend::Cpu>(kind, l, 0, heads, hd, 1e4, 512.0, burn::tensor::FloatDType::F32, &dev);
            let data = crate::test_values;
            let up = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 9), &dev).reshape([b, l, d]);
            let scale = 1.0 / (hd as f32).sqrt();
            let run = |ours: bool| {
                let h = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 1), &dev).reshape([b, l, d]).require_grad();
                let ws = [2, 3, 4, 5].map(|k| Tensor::<CpuTrain, 1>::from_data(data(d * d, k), &dev).reshape([d, d]).require_grad());
                let y = if ours {
                    let c = super::Consts { rot: [t.rot_q.clone(), t.rot_k.clone()], alibi: t.alibi(), heads, scale };
                    super::attention_block_ad(h.clone(), ws.clone(), c, false)
                } else {
                    let split = |x: Tensor<CpuTrain, 3>| x.reshape([b, l, heads, hd]).swap_dims(1, 2);
                    let lift = |r: &Option<(Tensor<crate::backend::Cpu, 4>, Tensor<crate::backend::Cpu, 4>)>| r.as_ref().map(|(c, s)| (Tensor::from_inner(c.clone()), Tensor::from_inner(s.clone())));
                    let proj = |i: usize| h.clone().matmul(ws[i].clone().unsqueeze::<3>());
                    let (q, k, v) = (rotate(split(proj(0)), &lift(&t.rot_q)), rotate(split(proj(1)), &lift(&t.rot_k)), split(proj(2)));
                    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + Tensor::from_inner(t.bias.clone());
                    let o = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, l, d]);
                    o.matmul(ws[3].clone().unsqueeze::<3>())
                };
                let grads = (y.clone() * up.clone()).sum().backward();
                let v3 = |t: Tensor<_, 3>| t.into_data().to_vec::<f32>().unwrap();
                let mut all = vec![v3(y.inner()), v3(h.grad(&grads).unwrap())];
                all.extend(ws.iter().map(|w| w.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap()));
                all
            };
            let (ours, theirs) = (run(true), run(false));
            for (name, (a, b)) in ["y", "dh", "dwq", "dwk", "dwv", "dwo"].iter().zip(ours.iter().zip(&theirs)) {
                assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4 * (1.0 + q.abs())), "{kind:?} {name}: {a:?} vs {b:?}");
                assert!(a.iter().any(|v| v.abs() > 1e-3), "{kind:?} {name} must not vanish");
            }
        }
    }
}
