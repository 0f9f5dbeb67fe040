//! The parallel layer's CUDA steps with its two input projections as one GEMM: q, k, v and the
//! MLP's gate and up projections of the shared norm's output `n` come out side by side,
//! `p = n · [wq | wk | wv | wg | wu]` `[b·L, 3d + 2F]`, and backward the input gradient is one GEMM
//! of depth 3d + 2F, `dn = dp · [wq | … | wu]ᵀ`, with `dp` written in place by the flash backward
//! (dq, dk, dv) and the gate's backward (da, du).
//!
//! Why: in `y = x + attn(n) + mlp(n)` both projections read `n` (PaLM's parallel layers), so the
//! 3d-wide GEMM joins the 2F-wide one each way and the attention's and MLP's input gradients are
//! summed inside the GEMM instead of by a second one adding into the first. The kernels read q, k,
//! v and h where they lie, rows 3d + 2F apart. The sequential residual keeps the sublayers' own
//! steps (`attention_block`, `mlp`), which stay the reference for these.

use super::super::attention_block::cuda::{key_and_rotate, key_grad, out_back, out_proj, qkv_wgrad};
use super::super::cublas::{side, RowGemm};
use super::super::flash::{self, rot_ptrs, OutLayout::Merged, Qkv};
use super::super::fused::{cast_many, empty, part};
use super::super::gemm::Trans::{N, T as Tr};
use super::super::mlp::cuda::{down_bwd, down_fwd, up_wgrad};
use super::super::norm;
use super::super::nvrtc::{compact, enqueue, enqueue_all};
use super::super::weight_copies::{self, Part};
use super::cuda::view;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::CudaRuntime;

type T = CubeTensor<CudaRuntime>;

/// The row stride of `p` (and `w1`, `dp`) for model width `d` and MLP width `f`: 3d + 2F rounded up
/// to 8 elements, so that every row starts 16-byte aligned as the flash kernels' copies need (the
/// columns past 3d + 2F are never read or written: the GEMMs take 3d + 2F columns, `ld` this).
pub fn stride(d: usize, f: usize) -> usize {
    (3 * d + 2 * f).next_multiple_of(8)
}

/// The forward of `x [b, L, d]` with the norm's f32 `(w, b)` and the seven f32 matrices `[wq, wk,
/// wv, wo, wg, wu, wd]`: `[y, n, mean, rstd, p, o, lse, w1, wo, p, w1, wd]` in the layer op's order
/// (`p` `[b, L, S]` and `[b·L, S]` and `w1 = [wq | wk | wv | wg | wu]` `[d, S]`, S = [`stride`],
/// stand for both the attention's fused projection and the MLP's `h`, and their weights: one
/// buffer each, listed twice). `k_add` (`[L, d]`) is added to the key projection if given. With
/// the matrices' tensor `ids`, the cast `w1`, `wo`, `wd` come from and go to `weight_copies`.
#[allow(clippy::too_many_arguments)]
pub fn fwd(x: T, norm_w: (T, Option<T>), ws: [T; 7], k_add: Option<T>, rot: [Option<[T; 2]>; 2], alibi: Option<T>, heads: usize, scale: f32, eps: f32, ids: Option<Vec<u64>>) -> Vec<T> {
    let [b, l, d] = x.meta.shape().dims::<3>();
    let [_, f] = ws[4].meta.shape().dims::<2>();
    let (rows, width, s, dt, device) = (b * l, 3 * d + 2 * f, stride(d, f), x.dtype, x.device.index);
    let at_a = (3 * d * dt.size()) as u64; // bytes from p's row start to the MLP's columns
    let (ws, k_add) = (ws.map(compact), k_add.map(compact));
    let shapes = [[d, d], [d, d], [d, d], [d, d], [d, f], [d, f], [f, d]];
    let ok = ws.iter().zip(shapes).all(|(t, sh)| t.dtype == DType::F32 && t.meta.shape().dims::<2>() == sh);
    assert!(ok, "layer_fwd: the seven weights must be f32 {shapes:?}");
    assert!(k_add.as_ref().is_none_or(|a| a.dtype == dt && a.meta.shape().dims::<2>() == [l, d]), "layer_fwd: k_add must be [{l}, {d}] in x's dtype");
    let [n, mean, rstd] = norm::cuda::fwd(view(x.clone(), vec![rows, d]), norm_w.0, norm_w.1, eps);
    let rot = rot.map(|r| r.map(|t| t.map(compact)));
    // where each of [wq, wk, wv, wo, wg, wu, wd] lies in [w1, wo, wd]
    let (q, m) = (|at| Part { rows: d, cols: d, ld: s, off: at }, |at| Part { rows: d, cols: f, ld: s, off: at });
    let parts = [(0, q(0)), (0, q(d)), (0, q(2 * d)), (1, Part { rows: d, cols: d, ld: d, off: 0 }), (0, m(3 * d)), (0, m(3 * d + f)), (2, Part { rows: f, cols: d, ld: d, off: 0 })];
    let fits = parts.iter().all(|(_, pt)| pt.in_runs_of_4());
    let ids = ids.filter(|_| fits && weight_copies::enabled(dt));
    let kept = ids.as_deref().and_then(weight_copies::lookup::<T>);
    let cast = kept.is_none();
    let [w1, wo, wd] = match kept {
        Some(c) => c.try_into().unwrap_or_else(|_| unreachable!("three copies")),
        None => [empty(&x, vec![d, s], dt), empty(&x, vec![d, d], dt), empty(&x, vec![f, d], dt)],
    };
    if let (true, Some(ids)) = (cast, &ids) {
        weight_copies::remember(ids, vec![w1.clone(), wo.clone(), wd.clone()], &parts);
    }
    let p = empty(&x, vec![rows, s], dt);
    // the tables before the outputs: the task runs on the last tensor's stream, a fresh output's
    let mut ts = vec![&n];
    ts.extend(&ws);
    ts.extend(&k_add);
    ts.extend(rot.iter().flatten().flatten());
    ts.extend([&w1, &wo, &wd, &p]);
    let (has, added, hd) = (rot.each_ref().map(|r| r.is_some()), k_add.is_some() as usize, d / heads);
    enqueue_all(&ts, move |ptr, stream| {
        let [pn, pwq, pwk, pwv, pwo, pwg, pwu, pwd] = ptr[..8].try_into().expect("8 inputs");
        let [pw1, pwoc, pwdc, pp] = ptr[ptr.len() - 4..].try_into().expect("4 outputs");
        if cast {
            let jobs = [pwq, pwk, pwv, pwo, pwg, pwu, pwd].into_iter().zip(parts).map(|(src, (c, pt))| ([src, [pw1, pwoc, pwdc][c]], [pt.rows, pt.cols, pt.ld, pt.off]));
            cast_many(dt, &jobs.collect::<Vec<_>>(), stream);
        }
        // p = n · w1: q, k, v, a, u side by side
        RowGemm { batch: 1, m: rows, n: width, k: d, a: side(pn, N, d), b: side(pw1, N, s), c: side(pp, N, s), dtype: dt, out: dt, beta: 0.0 }.run(device, stream as _);
        let k_add = (added == 1).then(|| ptr[8]);
        key_and_rotate(dt, pp, k_add, rot_ptrs(has, &ptr[8 + added..ptr.len() - 4]).0, [rows, l, heads, hd, s], stream);
    });
    let p3 = view(p.clone(), vec![b, l, s]);
    let [o, lse] = flash::fwd(Qkv::Fused { x: p3.clone(), d }, alibi, scale, heads, Merged);
    // y = (x + o · wo) + silu(a) ⊙ u · wd
    let x2 = out_proj(&o, &wo, Some(x));
    let (gate, y) = (empty(&p, vec![rows, f], dt), empty(&p, vec![rows, d], dt));
    enqueue([&p, &wd, &x2, &gate, &y], move |[pp, pwd, px2, pgate, py], stream| {
        down_fwd(dt, [pp + at_a, pgate, pwd, py, px2], 1.0, [rows, d, f, s], device, stream);
    });
    vec![view(y, vec![b, l, d]), n, mean, rstd, p3, o, lse, w1.clone(), wo, p, w1, wd]
}

/// The backward from `dy [b, L, d]`, `x`, the norm's weight `w` and [`fwd`]'s outputs after `y`:
/// `[dx, dw, (db,) dwq, dwk, dwv, dwo, dwg, dwu, dwd, (dk_add)]` (`db` for LayerNorm, `layer`;
/// `dk_add` with `k_add`), the weight gradients in `w_dtype`.
#[allow(clippy::too_many_arguments)]
pub fn bwd(dy: T, x: T, w: T, saved: [T; 11], rot: [Option<[T; 2]>; 2], alibi: Option<T>, heads: usize, scale: f32, layer: bool, k_add: bool, w_dtype: DType) -> Vec<T> {
    let [n, mean, rstd, p3, o, lse, w1, wo, _, _, wd] = saved.map(compact);
    let dy = compact(dy);
    let [b, l, d] = x.meta.shape().dims::<3>();
    let f = wd.meta.shape().dims::<2>()[0];
    let (rows, width, s, dt, device) = (b * l, 3 * d + 2 * f, stride(d, f), x.dtype, x.device.index);
    let at_a = (3 * d * dt.size()) as u64; // bytes from dp's row start to the MLP's columns
    let dy2 = view(dy.clone(), vec![rows, d]);
    // the MLP: gs = dy · wdᵀ; dp's a and u columns and gs ← silu(a) ⊙ u (glu_bwd); dwd = gsᵀ · dy
    let (dp, gs, dwd) = (empty(&x, vec![rows, s], dt), empty(&x, vec![rows, f], dt), empty(&x, vec![f, d], w_dtype));
    enqueue([&dy2, &p3, &wd, &gs, &dwd, &dp], move |[pdy, pp, pwd, pgs, pdwd, pdp], stream| {
        down_bwd(dt, w_dtype, [pdy, pp + at_a, pwd, pgs, pdp + at_a, pdwd], [rows, d, f, s], device, stream);
    });
    // the attention: dq, dk, dv into dp's first 3d columns
    let [dout, dwo] = out_back(&dy, &o, &wo, w_dtype);
    let dp3 = view(dp.clone(), vec![b, l, s]);
    flash::bwd(Qkv::Fused { x: p3, d }, o, dout, lse, alibi, scale, heads, Merged, rot, Some(Qkv::Fused { x: dp3, d }));
    // dn = dp · w1ᵀ (both sublayers' input gradients in one GEMM); [dwq, dwk, dwv] and [dwg, dwu]
    // from nᵀ · dp, one batched call each
    let (dn, dw3, dw2) = (empty(&x, vec![rows, d], dt), empty(&x, vec![3, d, d], w_dtype), empty(&x, vec![2, d, f], w_dtype));
    let dk_add = k_add.then(|| empty(&x, vec![l, d], dt));
    let mut ts = vec![&dp, &n, &w1];
    ts.extend(&dk_add);
    ts.extend([&dw3, &dw2, &dn]);
    enqueue_all(&ts, move |ptr, stream| {
        let [pdp, pn, pw1] = ptr[..3].try_into().expect("3 inputs");
        let [pdw3, pdw2, pdn] = ptr[ptr.len() - 3..].try_into().expect("3 outputs");
        if k_add {
            key_grad(dt, pdp, ptr[3], [b, l, d, s], stream);
        }
        RowGemm { batch: 1, m: rows, n: d, k: width, a: side(pdp, N, s), b: side(pw1, Tr, s), c: side(pdn, N, d), dtype: dt, out: dt, beta: 0.0 }.run(device, stream as _);
        qkv_wgrad(dt, w_dtype, [pn, pdp, pdw3], [rows, d, s], device, stream);
        up_wgrad(dt, w_dtype, [pn, pdp + at_a, pdw2], [rows, d, f, s], device, stream);
    });
    let mut g = norm::cuda::bwd(dn, view(x, vec![rows, d]), w, mean, rstd, layer, Some(dy2));
    g[0] = view(g[0].clone(), vec![b, l, d]);
    g.extend([part(&dw3, 0), part(&dw3, 1), part(&dw3, 2), dwo, part(&dw2, 0), part(&dw2, 1), dwd]);
    g.extend(dk_add);
    g
}
