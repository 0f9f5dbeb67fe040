//! The CUDA side: `LayerBackend` on `CubeBackend` (the parallel residual: `layer_parallel.rs`;
//! the sequential one: the sublayers' CUDA steps in a row; the adds folded into their GEMMs and the
//! norms' backward) and on `Fusion` (one custom op each way).

use super::super::fusion::{attn_consts, attn_extras, custom_vec, inputs, outputs};
use super::super::{attention_block, mlp, norm};
use super::parallel;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::DType;
use burn_cubecl::{element::BoolElement, tensor::CubeTensor, CubeBackend, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::cuda::CudaRuntime;

type T = CubeTensor<CudaRuntime>;
type Rot<B> = [Option<[FloatTensor<B>; 2]>; 2];

/// The forward's outputs: 12, and 4 more for the sequential residual's second half.
const FWD_OUTS: usize = 12;

pub trait LayerBackend: Backend {
    /// `[y, n, mean, rstd, qkv, o, lse, wqkv, wo, h, wcat, wdc]` (parallel: `qkv` and `h` one
    /// `[b·L, S]`, `wqkv` and `wcat` one `[d, S]`, `parallel::stride`), then with `seq` (the
    /// sequential residual) `[x', n', mean', rstd']`, of `x [b, L, d]` and f32 `ws = [w, (b,)
    /// (w', (b',)) wq, wk, wv, wo, wg, wu, wd]` (no `b`: RMSNorm; `w', b'`: the MLP's norm, with
    /// `seq`); the key projection plus `k_add [L, d]` if given. `ids`: the seven matrices' tensor
    /// ids, under which the parallel layer keeps their bf16 copies (`weight_copies`; the fusion
    /// op passes them to the backend it wraps).
    #[allow(clippy::too_many_arguments)]
    fn layer_fwd(
        x: FloatTensor<Self>,
        ws: Vec<FloatTensor<Self>>,
        k_add: Option<FloatTensor<Self>>,
        rot: Rot<Self>,
        alibi: Option<FloatTensor<Self>>,
        heads: usize,
        scale: f32,
        eps: f32,
        seq: bool,
        ids: Option<Vec<u64>>,
    ) -> Vec<FloatTensor<Self>>;
    /// `[dx, dw, (db,) (dw', (db'),) dwq, dwk, dwv, dwo, dwg, dwu, dwd, (dk_add)]` from `dy`,
    /// `x`, the first norm's weight and the forward's outputs after `y` (sequential: then the
    /// MLP norm's weight).
    #[allow(clippy::too_many_arguments)]
    fn layer_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        saved: Vec<FloatTensor<Self>>,
        rot: Rot<Self>,
        alibi: Option<FloatTensor<Self>>,
        heads: usize,
        scale: f32,
        layer: bool,
        k_add: bool,
        w_dtype: DType,
    ) -> Vec<FloatTensor<Self>>;
}

/// `t` (compact) seen as `shape`.
pub(super) fn view(t: T, shape: Vec<usize>) -> T {
    let t = super::super::nvrtc::compact(t);
    CubeTensor::new_contiguous(t.client.clone(), t.device.clone(), Shape::from(shape), t.handle, t.dtype)
}

/// The first `k` of `it`.
fn take(it: &mut impl Iterator<Item = T>, k: usize, what: &str) -> Vec<T> {
    (0..k).map(|_| it.next().unwrap_or_else(|| panic!("layer: {what}"))).collect()
}

/// A norm's `(w, b)` from its one or two tensors.
fn norm_w(ts: Vec<T>) -> (T, Option<T>) {
    let mut ts = ts.into_iter();
    (ts.next().expect("norm weight"), ts.next())
}

impl<F: FloatElement, I: IntElement, BT: BoolElement> LayerBackend for CubeBackend<CudaRuntime, F, I, BT> {
    fn layer_fwd(x: T, ws: Vec<T>, k_add: Option<T>, rot: Rot<Self>, alibi: Option<T>, heads: usize, scale: f32, eps: f32, seq: bool, ids: Option<Vec<u64>>) -> Vec<T> {
        let [b, l, d] = x.meta.shape().dims::<3>();
        let rows = b * l;
        let per = (ws.len() - 7) / (1 + seq as usize);
        let mut ws = ws.into_iter();
        let (nw, nb) = norm_w(take(&mut ws, per, "norm"));
        if !seq {
            let mats: [T; 7] = take(&mut ws, 7, "7 matrices").try_into().expect("7 matrices");
            return parallel::fwd(x, (nw, nb), mats, k_add, rot, alibi, heads, scale, eps, ids);
        }
        let (w2, b2) = norm_w(take(&mut ws, per, "MLP norm"));
        let [wq, wk, wv, wo, wg, wu, wd]: [T; 7] = take(&mut ws, 7, "7 matrices").try_into().expect("7 matrices");
        let [n, mean, rstd] = norm::cuda::fwd(view(x.clone(), vec![rows, d]), nw, nb, eps);
        // x' = x + attn(n), the residual added by the output projection; y = x' + mlp(norm'(x'))
        let [x2, qkv, o, lse, wqkv, wo] = attention_block::cuda::fwd(view(n.clone(), vec![b, l, d]), [wq, wk, wv, wo], rot, alibi, heads, scale, Some(x), k_add);
        let x2 = view(x2, vec![rows, d]);
        let [n2, mean2, rstd2] = norm::cuda::fwd(x2.clone(), w2, b2, eps);
        let [y, h, wcat, wdc] = mlp::cuda::fwd(n2.clone(), wg, wu, wd, Some(x2.clone()));
        vec![view(y, vec![b, l, d]), n, mean, rstd, qkv, o, lse, wqkv, wo, h, wcat, wdc, view(x2, vec![b, l, d]), n2, mean2, rstd2]
    }

    fn layer_bwd(dy: T, x: T, w: T, saved: Vec<T>, rot: Rot<Self>, alibi: Option<T>, heads: usize, scale: f32, layer: bool, k_add: bool, w_dtype: DType) -> Vec<T> {
        if saved.len() == FWD_OUTS - 1 {
            let saved = saved.try_into().unwrap_or_else(|_| unreachable!("11 saved"));
            return parallel::bwd(dy, x, w, saved, rot, alibi, heads, scale, layer, k_add, w_dtype);
        }
        // back through y = x' + mlp(norm'(x')), then x' = x + attn(norm(x))
        let [b, l, d] = x.meta.shape().dims::<3>();
        let rows = b * l;
        let mut saved = saved.into_iter();
        let [n, mean, rstd, qkv, o, lse, wqkv, wo, h, wcat, wdc]: [T; 11] = take(&mut saved, 11, "11 saved").try_into().expect("11 saved");
        let [xs, n2, mean2, rstd2, w2]: [T; 5] = take(&mut saved, 5, "the second half's").try_into().expect("5 saved");
        let dy2 = view(dy, vec![rows, d]);
        let [dn2, dwg, dwu, dwd] = mlp::cuda::bwd(dy2.clone(), n2, h, wcat, wdc, w_dtype);
        let mut g2 = norm::cuda::bwd(dn2, view(xs, vec![rows, d]), w2, mean2, rstd2, layer, Some(dy2));
        let dx2 = g2.remove(0);
        let ([dn, dwq, dwk, dwv, dwo], dk_add) =
            attention_block::cuda::bwd(view(dx2.clone(), vec![b, l, d]), view(n, vec![b, l, d]), [qkv, o, lse, wqkv, wo], rot, alibi, heads, scale, w_dtype, k_add);
        let mut g = norm::cuda::bwd(view(dn, vec![rows, d]), view(x, vec![rows, d]), w, mean, rstd, layer, Some(dx2));
        g.extend(g2);
        g[0] = view(g[0].clone(), vec![b, l, d]);
        g.extend([dwq, dwk, dwv, dwo, dwg, dwu, dwd]);
        g.extend(dk_add);
        g
    }
}

impl<B: FusionBackend + LayerBackend> LayerBackend for Fusion<B> {
    fn layer_fwd(
        x: FloatTensor<Self>,
        ws: Vec<FloatTensor<Self>>,
        k_add: Option<FloatTensor<Self>>,
        rot: Rot<Self>,
        alibi: Option<FloatTensor<Self>>,
        heads: usize,
        scale: f32,
        eps: f32,
        seq: bool,
        _ids: Option<Vec<u64>>,
    ) -> Vec<FloatTensor<Self>> {
        let ([b, l, d], dt, f) = (x.shape.dims::<3>(), x.dtype, ws[ws.len() - 1].shape[0]);
        let (rows, n_ws) = (b * l, ws.len());
        // parallel: q, k, v and the MLP's h in one [b·L, S] (`layer_parallel.rs`, S ≥ 3d + 2F), and
        // their weights in one [d, S]; each listed in both places
        let (qkv, h) = if seq { (3 * d, 2 * f) } else { (parallel::stride(d, f), parallel::stride(d, f)) };
        let mut outs = vec![
            (vec![b, l, d], dt),
            (vec![rows, d], dt),
            (vec![rows], DType::F32),
            (vec![rows], DType::F32),
            (vec![b, l, qkv], dt), // the fused projection, q and k rotated
            (vec![b, l, d], dt),   // o, the heads side by side (`flash::OutLayout::Merged`)
            (vec![b * heads, l], DType::F32),
            (vec![d, qkv], dt),
            (vec![d, d], dt),
            (vec![rows, h], dt),
            (vec![d, h], dt),
            (vec![f, d], dt),
        ];
        if seq {
            outs.extend([(vec![b, l, d], dt), (vec![rows, d], dt), (vec![rows], DType::F32), (vec![rows], DType::F32)]);
        }
        let mut ins = vec![x];
        ins.extend(ws);
        let added = k_add.is_some();
        ins.extend(k_add);
        let mut flags = attn_extras(&mut ins, rot, alibi, scale).to_vec();
        flags.extend([eps, n_ws as f32, added as u8 as f32, seq as u8 as f32]);
        custom_vec::<B>("layer_fwd", ins, outs, (&flags, heads), |d, f, heads, h| {
            let mut ins = inputs::<B>(d, h);
            let x = ins.next().expect("x");
            let n_ws = f[5] as usize;
            let ws = (0..n_ws).map(|_| ins.next().expect("weights")).collect();
            // the seven matrices' ids: each names one value for good (`weight_copies`)
            let ids = d.inputs[1 + n_ws - 7..1 + n_ws].iter().map(|t| t.id.value()).collect();
            let k_add = (f[6] != 0.0).then(|| ins.next().expect("k_add"));
            let (rot, alibi) = attn_consts::<B>(f, &mut ins);
            outputs::<B>(d, h, B::layer_fwd(x, ws, k_add, rot, alibi, heads, f[0], f[4], f[7] != 0.0, Some(ids)));
        })
    }

    fn layer_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        saved: Vec<FloatTensor<Self>>,
        rot: Rot<Self>,
        alibi: Option<FloatTensor<Self>>,
        heads: usize,
        scale: f32,
        layer: bool,
        k_add: bool,
        w_dtype: DType,
    ) -> Vec<FloatTensor<Self>> {
        let ([b, l, d], dt, f, n_saved) = (x.shape.dims::<3>(), x.dtype, saved[FWD_OUTS - 2].shape[0], saved.len());
        let norms = (1 + layer as usize) * (1 + (n_saved > FWD_OUTS - 1) as usize);
        // the weight gradients' dtype travels as the outputs' (read back in `run`)
        let mut outs = vec![(vec![b, l, d], dt)];
        outs.extend(vec![(vec![d], DType::F32); norms]);
        outs.extend(vec![(vec![d, d], w_dtype); 4]);
        outs.extend([(vec![d, f], w_dtype), (vec![d, f], w_dtype), (vec![f, d], w_dtype)]);
        if k_add {
            outs.push((vec![l, d], dt));
        }
        let mut ins = vec![dy, x, w];
        ins.extend(saved);
        let mut flags = attn_extras(&mut ins, rot, alibi, scale).to_vec();
        flags.extend([layer as u8 as f32, k_add as u8 as f32, n_saved as f32]);
        custom_vec::<B>("layer_bwd", ins, outs, (&flags, heads), |d, f, heads, h| {
            let mut ins = inputs::<B>(d, h);
            let [dy, x, w] = [(); 3].map(|_| ins.next().expect("dy, x, w"));
            let saved = (0..f[6] as usize).map(|_| ins.next().expect("saved")).collect();
            let (rot, alibi) = attn_consts::<B>(f, &mut ins);
            // the MLP's down projection's gradient, the last weight gradient
            let w_dtype = d.outputs[d.outputs.len() - 1 - (f[5] != 0.0) as usize].dtype;
            outputs::<B>(d, h, B::layer_bwd(dy, x, w, saved, rot, alibi, heads, f[0], f[4] != 0.0, f[5] != 0.0, w_dtype));
        })
    }
}
