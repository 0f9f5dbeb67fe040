//! The `Fusion` side of [`FusedBackend`](super::fused::FusedBackend): each op registered as a
//! custom op in burn-fusion's stream (like the cuBLAS matmul), executed by the inner backend's
//! kernel when the stream runs.

use super::fused::{AdamScalars, FusedBackend};
use super::weight_copies::Part;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::DType;
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

/// A fused op as a `Fusion` custom op: `run` gets the inner tensors by the op's description.
struct Custom<B: FusionBackend> {
    desc: CustomOpIr,
    scalars: Vec<f32>,
    size: usize,
    run: Run<B>,
}

impl<B: FusionBackend> std::fmt::Debug for Custom<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.desc)
    }
}

impl<B: FusionBackend> Operation<B::FusionRuntime> for Custom<B> {
    fn execute(&self, h: &mut Handles<B>) {
        (self.run)(&self.desc, &self.scalars, self.size, h)
    }
}

/// Registers `name` with `inputs`, outputs of `(shape, dtype)`, and the scalars and size `run`
/// gets; returns the outputs.
fn custom<B: FusionBackend, const M: usize>(
    name: &'static str,
    inputs: Vec<FusionTensor<B::FusionRuntime>>,
    outputs: [(Vec<usize>, DType); M],
    scalars_size: (&[f32], usize),
    run: Run<B>,
) -> [FusionTensor<B::FusionRuntime>; M] {
    let out = custom_vec::<B>(name, inputs, outputs.to_vec(), scalars_size, run);
    out.try_into().unwrap_or_else(|v: Vec<_>| panic!("{name}: {} outputs, expected {M}", v.len()))
}

/// [`custom`] with as many outputs as `outputs` lists.
pub(super) fn custom_vec<B: FusionBackend>(
    name: &'static str,
    inputs: Vec<FusionTensor<B::FusionRuntime>>,
    outputs: Vec<(Vec<usize>, DType)>,
    (scalars, size): (&[f32], usize),
    run: Run<B>,
) -> Vec<FusionTensor<B::FusionRuntime>> {
    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(&inputs);
    let outs: Vec<TensorIr> = outputs.into_iter().map(|(s, dt)| TensorIr::uninit(client.create_empty_handle(), Shape::from(s), dt)).collect();
    let desc = CustomOpIr::new(name, &inputs.into_iter().map(|t| t.into_ir()).collect::<Vec<_>>(), &outs);
    client.register(streams, OperationIr::Custom(desc.clone()), Custom::<B> { desc, scalars: scalars.to_vec(), size, run })
}

impl<B: FusionBackend + FusedBackend> FusedBackend for Fusion<B> {
    fn softmax_fwd(s: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f32, heads: usize) -> FloatTensor<Self> {
        let out = (s.shape.to_vec(), s.dtype);
        let [p] = custom::<B, 1>("softmax_fwd", vec![s, bias], [out], (&[scale], heads), |d, f, heads, h| {
            let ([s, b], [o]) = d.as_fixed();
            let p = B::softmax_fwd(h.get_float_tensor::<B>(s), h.get_float_tensor::<B>(b), f[0], heads);
            h.register_float_tensor::<B>(&o.id, p);
        });
        p
    }

    fn flash_fwd(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, alibi: Option<FloatTensor<Self>>, scale: f32, heads: usize) -> [FloatTensor<Self>; 2] {
        let [bh, l, _] = q.shape.dims::<3>();
        let outs = [(q.shape.to_vec(), q.dtype), (vec![bh, l], DType::F32)];
        let mut ins = vec![q, k, v];
        ins.extend(alibi);
        custom::<B, 2>("flash_fwd", ins, outs, (&[scale], heads), |d, f, heads, h| {
            let mut ins = inputs::<B>(d, h);
            let [q, k, v] = [(); 3].map(|_| ins.next().expect("q, k, v"));
            outputs::<B>(d, h, B::flash_fwd(q, k, v, ins.next(), f[0], heads));
        })
    }

    fn flash_bwd(qkvod: [FloatTensor<Self>; 5], lse: FloatTensor<Self>, alibi: Option<FloatTensor<Self>>, scale: f32, heads: usize) -> [FloatTensor<Self>; 3] {
        let out = (qkvod[0].shape.to_vec(), qkvod[0].dtype);
        let mut ins = Vec::from(qkvod);
        ins.push(lse);
        ins.extend(alibi);
        custom::<B, 3>("flash_bwd", ins, [out.clone(), out.clone(), out], (&[scale], heads), |d, f, heads, h| {
            let mut ins = inputs::<B>(d, h);
            let qkvod = [(); 5].map(|_| ins.next().expect("q, k, v, o, dout"));
            let lse = ins.next().expect("lse");
            outputs::<B>(d, h, B::flash_bwd(qkvod, lse, ins.next(), f[0], heads));
        })
    }

    fn softmax_bwd(p: FloatTensor<Self>, dp: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        let out = (p.shape.to_vec(), p.dtype);
        let [ds] = custom::<B, 1>("softmax_bwd", vec![p, dp], [out], (&[scale], 0), |d, f, _, h| {
            let ([p, dp], [o]) = d.as_fixed();
            let ds = B::softmax_bwd(h.get_float_tensor::<B>(p), h.get_float_tensor::<B>(dp), f[0]);
            h.register_float_tensor::<B>(&o.id, ds);
        });
        ds
    }

    fn head_ce(x: FloatTensor<Self>, w: FloatTensor<Self>, t: IntTensor<Self>, chunk: usize) -> [FloatTensor<Self>; 3] {
        let ([n, d], v) = (x.shape.dims::<2>(), w.shape[1]);
        let outs = [(vec![n], DType::F32), (vec![n, d], x.dtype), (vec![d, v], w.dtype)];
        custom::<B, 3>("head_ce", vec![x, w, t], outs, (&[], chunk), |d, _, chunk, h| {
            let ([x, w, t], _) = d.as_fixed::<3, 3>();
            let got = B::head_ce(h.get_float_tensor::<B>(x), h.get_float_tensor::<B>(w), h.get_int_tensor::<B>(t), chunk);
            outputs::<B>(d, h, got);
        })
    }

    fn attn_fwd(h: FloatTensor<Self>, ws: [FloatTensor<Self>; 4], rot: [Option<[FloatTensor<Self>; 2]>; 2], alibi: Option<FloatTensor<Self>>, heads: usize, scale: f32) -> [FloatTensor<Self>; 6] {
        let ([b, l, d], dt) = (h.shape.dims::<3>(), h.dtype);
        // the fused projection [b, L, 3d] (q, k rotated) and o with the heads side by side
        let outs = [(vec![b, l, d], dt), (vec![b, l, 3 * d], dt), (vec![b, l, d], dt), (vec![b * heads, l], DType::F32), (vec![d, 3 * d], dt), (vec![d, d], dt)];
        let mut ins = vec![h];
        ins.extend(ws);
        let flags = attn_extras(&mut ins, rot, alibi, scale);
        custom::<B, 6>("attn_fwd", ins, outs, (&flags, heads), |d, f, heads, h| {
            let mut ins = inputs::<B>(d, h);
            let x = ins.next().expect("h");
            let ws = [(); 4].map(|_| ins.next().expect("weights"));
            let (rot, alibi) = attn_consts::<B>(f, &mut ins);
            outputs::<B>(d, h, B::attn_fwd(x, ws, rot, alibi, heads, f[0]));
        })
    }

    fn attn_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        saved: [FloatTensor<Self>; 5],
        rot: [Option<[FloatTensor<Self>; 2]>; 2],
        alibi: Option<FloatTensor<Self>>,
        heads: usize,
        scale: f32,
        w_dtype: DType,
    ) -> [FloatTensor<Self>; 5] {
        let ([b, l, d], dt) = (x.shape.dims::<3>(), x.dtype);
        // the weight gradients' dtype travels as the outputs' (read back in `run`)
        let outs = [(vec![b, l, d], dt), (vec![d, d], w_dtype), (vec![d, d], w_dtype), (vec![d, d], w_dtype), (vec![d, d], w_dtype)];
        let mut ins = vec![dy, x];
        ins.extend(saved);
        let flags = attn_extras(&mut ins, rot, alibi, scale);
        custom::<B, 5>("attn_bwd", ins, outs, (&flags, heads), |d, f, heads, h| {
            let mut ins = inputs::<B>(d, h);
            let [dy, x] = [(); 2].map(|_| ins.next().expect("dy, h"));
            let saved = [(); 5].map(|_| ins.next().expect("saved"));
            let (rot, alibi) = attn_consts::<B>(f, &mut ins);
            outputs::<B>(d, h, B::attn_bwd(dy, x, saved, rot, alibi, heads, f[0], d.outputs[1].dtype));
        })
    }

    fn mlp_fwd(x: FloatTensor<Self>, wg: FloatTensor<Self>, wu: FloatTensor<Self>, wd: FloatTensor<Self>) -> [FloatTensor<Self>; 4] {
        let ([n, d], f, dt) = (x.shape.dims::<2>(), wg.shape[1], x.dtype);
        let outs = [(vec![n, d], dt), (vec![n, 2 * f], dt), (vec![d, 2 * f], dt), (vec![f, d], dt)];
        custom::<B, 4>("mlp_fwd", vec![x, wg, wu, wd], outs, (&[], 0), |d, _, _, h| {
            let ([x, wg, wu, wd], _) = d.as_fixed::<4, 4>();
            let got = B::mlp_fwd(h.get_float_tensor::<B>(x), h.get_float_tensor::<B>(wg), h.get_float_tensor::<B>(wu), h.get_float_tensor::<B>(wd));
            outputs::<B>(d, h, got);
        })
    }

    fn mlp_bwd(dy: FloatTensor<Self>, x: FloatTensor<Self>, h: FloatTensor<Self>, wcat: FloatTensor<Self>, wdc: FloatTensor<Self>, w_dtype: DType) -> [FloatTensor<Self>; 4] {
        let ([n, d], f, dt) = (x.shape.dims::<2>(), h.shape[1] / 2, x.dtype);
        // the weight gradients' dtype travels as the outputs' (read back in `run`)
        let outs = [(vec![n, d], dt), (vec![d, f], w_dtype), (vec![d, f], w_dtype), (vec![f, d], w_dtype)];
        custom::<B, 4>("mlp_bwd", vec![dy, x, h, wcat, wdc], outs, (&[], 0), |d, _, _, h| {
            let ([dy, x, hk, wcat, wdc], outs) = d.as_fixed::<5, 4>();
            let mut get = |t| h.get_float_tensor::<B>(t);
            let got = B::mlp_bwd(get(dy), get(x), get(hk), get(wcat), get(wdc), outs[1].dtype);
            outputs::<B>(d, h, got);
        })
    }

    fn ce_fwd(x: FloatTensor<Self>, t: IntTensor<Self>) -> [FloatTensor<Self>; 2] {
        let n = x.shape[0];
        custom::<B, 2>("ce_fwd", vec![x, t], [(vec![n], DType::F32), (vec![n], DType::F32)], (&[], 0), |d, _, _, h| {
            let ([x, t], [loss, lse]) = d.as_fixed();
            let [l, s] = B::ce_fwd(h.get_float_tensor::<B>(x), h.get_int_tensor::<B>(t));
            h.register_float_tensor::<B>(&loss.id, l);
            h.register_float_tensor::<B>(&lse.id, s);
        })
    }

    fn ce_bwd(x: FloatTensor<Self>, t: IntTensor<Self>, lse: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = (x.shape.to_vec(), x.dtype);
        let [dx] = custom::<B, 1>("ce_bwd", vec![x, t, lse, g], [out], (&[], 0), |d, _, _, h| {
            let ([x, t, lse, g], [o]) = d.as_fixed();
            let dx = B::ce_bwd(h.get_float_tensor::<B>(x), h.get_int_tensor::<B>(t), h.get_float_tensor::<B>(lse), h.get_float_tensor::<B>(g));
            h.register_float_tensor::<B>(&o.id, dx);
        });
        dx
    }

    fn scale_by(x: FloatTensor<Self>, g: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = (x.shape.to_vec(), x.dtype);
        let [y] = custom::<B, 1>("scale_by", vec![x, g], [out], (&[], 0), |d, _, _, h| {
            let ([x, g], [o]) = d.as_fixed();
            let y = B::scale_by(h.get_float_tensor::<B>(x), h.get_float_tensor::<B>(g));
            h.register_float_tensor::<B>(&o.id, y);
        });
        y
    }

    fn embed_bwd(ids: IntTensor<Self>, g: FloatTensor<Self>, vocab: usize) -> FloatTensor<Self> {
        let d = g.shape[1];
        let [dw] = custom::<B, 1>("embed_bwd", vec![ids, g], [(vec![vocab, d], DType::F32)], (&[], vocab), |d, _, vocab, h| {
            let ([ids, g], [o]) = d.as_fixed();
            let dw = B::embed_bwd(h.get_int_tensor::<B>(ids), h.get_float_tensor::<B>(g), vocab);
            h.register_float_tensor::<B>(&o.id, dw);
        });
        dw
    }

    fn heads_split(x: FloatTensor<Self>, rot: Option<[FloatTensor<Self>; 2]>, heads: usize) -> FloatTensor<Self> {
        let [b, l, d] = x.shape.dims::<3>();
        heads_op::<B>("heads_split", x, rot, heads, vec![b * heads, l, d / heads], |d, _, heads, h| {
            let (x, rot) = heads_inputs::<B>(d, h);
            h.register_float_tensor::<B>(&d.outputs[0].id, B::heads_split(x, rot, heads));
        })
    }

    fn heads_merge(g: FloatTensor<Self>, rot: Option<[FloatTensor<Self>; 2]>, heads: usize) -> FloatTensor<Self> {
        let [bh, l, hd] = g.shape.dims::<3>();
        heads_op::<B>("heads_merge", g, rot, heads, vec![bh / heads, l, heads * hd], |d, _, heads, h| {
            let (g, rot) = heads_inputs::<B>(d, h);
            h.register_float_tensor::<B>(&d.outputs[0].id, B::heads_merge(g, rot, heads));
        })
    }

    fn norm_fwd(x: FloatTensor<Self>, w: FloatTensor<Self>, b: Option<FloatTensor<Self>>, eps: f32) -> [FloatTensor<Self>; 3] {
        let [rows, d] = x.shape.dims::<2>();
        let outs = [(vec![rows, d], x.dtype), (vec![rows], DType::F32), (vec![rows], DType::F32)];
        fn run<B: FusedBackend + FusionBackend>(d: &CustomOpIr, eps: &[f32], _: usize, h: &mut Handles<B>) {
            let x = h.get_float_tensor::<B>(&d.inputs[0]);
            let w = h.get_float_tensor::<B>(&d.inputs[1]);
            let b = (d.inputs.len() == 3).then(|| h.get_float_tensor::<B>(&d.inputs[2]));
            outputs::<B>(d, h, B::norm_fwd(x, w, b, eps[0]));
        }
        match b {
            Some(b) => custom::<B, 3>("norm_fwd", vec![x, w, b], outs, (&[eps], 0), run::<B>),
            None => custom::<B, 3>("norm_fwd", vec![x, w], outs, (&[eps], 0), run::<B>),
        }
    }

    fn norm_bwd(g: FloatTensor<Self>, x: FloatTensor<Self>, w: FloatTensor<Self>, mean: FloatTensor<Self>, rstd: FloatTensor<Self>, layer: bool) -> Vec<FloatTensor<Self>> {
        let [rows, d] = x.shape.dims::<2>();
        let dx = (vec![rows, d], x.dtype);
        fn run<B: FusedBackend + FusionBackend>(d: &CustomOpIr, _: &[f32], layer: usize, h: &mut Handles<B>) {
            let [g, x, w, m, r] = std::array::from_fn(|i| h.get_float_tensor::<B>(&d.inputs[i]));
            outputs::<B>(d, h, B::norm_bwd(g, x, w, m, r, layer == 1));
        }
        let ins = [g, x, w, mean, rstd];
        if layer {
            custom::<B, 3>("norm_bwd", Vec::from(ins), [dx, (vec![d], DType::F32), (vec![d], DType::F32)], (&[], 1), run::<B>).into()
        } else {
            custom::<B, 2>("norm_bwd", Vec::from(ins), [dx, (vec![d], DType::F32)], (&[], 0), run::<B>).into()
        }
    }

    fn stage_read(x: FloatTensor<Self>, id: usize) {
        custom_vec::<B>("stage_read", vec![x], vec![], (&[], id), |d, _, id, h| B::stage_read(h.get_float_tensor::<B>(&d.inputs[0]), id));
    }

    fn all_reduce_mean(ts: Vec<FloatTensor<Self>>) -> Vec<FloatTensor<Self>> {
        let outs = ts.iter().map(|t| (t.shape.to_vec(), t.dtype)).collect();
        custom_vec::<B>("all_reduce_mean", ts, outs, (&[], 0), |d, _, _, h| {
            let ts = inputs::<B>(d, h).collect();
            outputs::<B>(d, h, B::all_reduce_mean(ts));
        })
    }

    fn sum_squares(tensors: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        fn run<B: FusedBackend + FusionBackend>(d: &CustomOpIr, _: &[f32], _: usize, h: &mut Handles<B>) {
            let ts = inputs::<B>(d, h).collect();
            h.register_float_tensor::<B>(&d.outputs[0].id, B::sum_squares(ts));
        }
        let [s] = custom::<B, 1>("sum_squares", tensors, [(vec![1], DType::F32)], (&[], 0), run::<B>);
        s
    }

    fn adamw(
        ps: Vec<FloatTensor<Self>>,
        gs: Vec<FloatTensor<Self>>,
        mvs: Option<Vec<[FloatTensor<Self>; 2]>>,
        stats: Option<FloatTensor<Self>>,
        h: AdamScalars,
        _copies: Vec<Option<(FloatTensor<Self>, Part)>>,
    ) -> Vec<[FloatTensor<Self>; 3]> {
        /// `size` = 4·parameters + 2·(moments given) + (stats given): the inputs are every p, every
        /// g, [m and v of each], [stats]; the outputs p, m, v of each.
        fn run<B: FusedBackend + FusionBackend>(d: &CustomOpIr, h: &[f32], size: usize, hs: &mut Handles<B>) {
            let k = size / 4;
            let mut ins = inputs::<B>(d, hs);
            let ps: Vec<_> = ins.by_ref().take(k).collect();
            let gs: Vec<_> = ins.by_ref().take(k).collect();
            let mvs = (size & 2 != 0).then(|| (0..k).map(|_| [ins.next().expect("m"), ins.next().expect("v")]).collect());
            let stats = (size & 1 != 0).then(|| ins.next().expect("stats"));
            // each parameter with a bf16 copy gets it written; the copy then stands for p's new id
            let copies = (0..k).map(|i| super::weight_copies::retarget::<FloatTensor<B>>(d.inputs[i].id.value(), d.outputs[3 * i].id.value())).collect();
            outputs::<B>(d, hs, B::adamw(ps, gs, mvs, stats, h.try_into().expect("11 AdamW scalars"), copies).into_iter().flatten());
        }
        let size = 4 * ps.len() + 2 * mvs.is_some() as usize + stats.is_some() as usize;
        let outs: Vec<(Vec<usize>, DType)> = ps.iter().flat_map(|p| [(); 3].map(|_| (p.shape.to_vec(), DType::F32))).collect();
        let mut ins = ps;
        ins.extend(gs);
        ins.extend(mvs.into_iter().flatten().flatten());
        ins.extend(stats);
        let mut out = custom_vec::<B>("adamw", ins, outs, (&h, size), run::<B>).into_iter();
        std::iter::from_fn(|| Some([out.next()?, out.next()?, out.next()?])).collect()
    }

    fn linear_fwd(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        let ([b, l, _], n) = (x.shape.dims::<3>(), w.shape[1]);
        let out = (vec![b, l, n], x.dtype);
        let [y] = custom::<B, 1>("linear_fwd", vec![x, w], [out], (&[], 0), |d, _, _, h| {
            let ([x, w], [o]) = d.as_fixed();
            let y = B::linear_fwd(h.get_float_tensor::<B>(x), h.get_float_tensor::<B>(w));
            h.register_float_tensor::<B>(&o.id, y);
        });
        y
    }

    fn linear_bwd(g: FloatTensor<Self>, x: FloatTensor<Self>, w: FloatTensor<Self>, w_dtype: DType) -> [FloatTensor<Self>; 2] {
        let outs = [(x.shape.to_vec(), g.dtype), (w.shape.to_vec(), w_dtype)];
        custom::<B, 2>("linear_bwd", vec![g, x, w], outs, (&[], 0), |d, _, _, h| {
            let ([g, x, w], [dx, dw]) = d.as_fixed();
            let [gx, gw] = B::linear_bwd(h.get_float_tensor::<B>(g), h.get_float_tensor::<B>(x), h.get_float_tensor::<B>(w), dw.dtype);
            h.register_float_tensor::<B>(&dx.id, gx);
            h.register_float_tensor::<B>(&dw.id, gw);
        })
    }

    fn silu_mul_fwd(a: FloatTensor<Self>, u: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = (a.shape.to_vec(), a.dtype);
        let [y] = custom::<B, 1>("silu_mul_fwd", vec![a, u], [out], (&[], 0), |d, _, _, h| {
            let ([a, u], [o]) = d.as_fixed();
            let y = B::silu_mul_fwd(h.get_float_tensor::<B>(a), h.get_float_tensor::<B>(u));
            h.register_float_tensor::<B>(&o.id, y);
        });
        y
    }

    fn silu_mul_bwd(a: FloatTensor<Self>, u: FloatTensor<Self>, g: FloatTensor<Self>) -> [FloatTensor<Self>; 2] {
        let out = (a.shape.to_vec(), a.dtype);
        custom::<B, 2>("silu_mul_bwd", vec![a, u, g], [out.clone(), out], (&[], 0), |d, _, _, h| {
            let ([a, u, g], [da, du]) = d.as_fixed();
            let [ga, gu] = B::silu_mul_bwd(h.get_float_tensor::<B>(a), h.get_float_tensor::<B>(u), h.get_float_tensor::<B>(g));
            h.register_float_tensor::<B>(&da.id, ga);
            h.register_float_tensor::<B>(&du.id, gu);
        })
    }
}

/// What a custom op runs: its description, scalars, size and the stream's handles.
pub(super) type Run<B> = fn(&CustomOpIr, &[f32], usize, &mut Handles<B>);
pub(super) type Handles<B> = HandleContainer<<<B as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle>;

/// Registers a head split/merge with 1 input (no rotation) or 3 (input, cos, sin).
fn heads_op<B: FusionBackend>(
    name: &'static str,
    x: FusionTensor<B::FusionRuntime>,
    rot: Option<[FusionTensor<B::FusionRuntime>; 2]>,
    heads: usize,
    shape: Vec<usize>,
    run: Run<B>,
) -> FusionTensor<B::FusionRuntime> {
    let out = [(shape, x.dtype)];
    let [y] = match rot {
        None => custom::<B, 1>(name, vec![x], out, (&[], heads), run),
        Some([c, s]) => custom::<B, 1>(name, vec![x, c, s], out, (&[], heads), run),
    };
    y
}

/// The inner tensors of a custom op's inputs, in order.
pub(super) fn inputs<B: FusionBackend>(d: &CustomOpIr, h: &mut Handles<B>) -> std::vec::IntoIter<B::FloatTensorPrimitive> {
    d.inputs.iter().map(|t| h.get_float_tensor::<B>(t)).collect::<Vec<_>>().into_iter()
}

/// Registers `ts` as a custom op's outputs, in order.
pub(super) fn outputs<B: FusionBackend>(d: &CustomOpIr, h: &mut Handles<B>, ts: impl IntoIterator<Item = B::FloatTensorPrimitive>) {
    for (o, t) in d.outputs.iter().zip(ts) {
        h.register_float_tensor::<B>(&o.id, t);
    }
}

/// Appends the attention sublayer's optional inputs (the rotation tables of q and k, ALiBi's slopes and positions) to
/// `ins`; returns the flags [`attn_consts`] reads them back by: scale, has q tables, has k tables,
/// has ALiBi.
pub(super) fn attn_extras<T>(ins: &mut Vec<T>, rot: [Option<[T; 2]>; 2], alibi: Option<T>, scale: f32) -> [f32; 4] {
    let flags = [scale, rot[0].is_some() as u8 as f32, rot[1].is_some() as u8 as f32, alibi.is_some() as u8 as f32];
    ins.extend(rot.into_iter().flatten().flatten());
    ins.extend(alibi);
    flags
}

/// The attention sublayer's optional inputs after the fixed ones, by the flags `f` (scale, has q
/// tables, has k tables, has ALiBi): the rotation tables of q and k and ALiBi's slopes and positions.
#[allow(clippy::type_complexity)]
pub(super) fn attn_consts<B: FusionBackend>(f: &[f32], ins: &mut impl Iterator<Item = B::FloatTensorPrimitive>) -> ([Option<[B::FloatTensorPrimitive; 2]>; 2], Option<B::FloatTensorPrimitive>) {
    let mut pair = |on: f32| (on != 0.0).then(|| [(); 2].map(|_| ins.next().expect("tables")));
    let rot = [pair(f[1]), pair(f[2])];
    (rot, (f[3] != 0.0).then(|| ins.next().expect("alibi")))
}

/// The inner tensors of a [`heads_op`]: the input and the tables, if any.
fn heads_inputs<B: FusionBackend>(d: &CustomOpIr, h: &mut Handles<B>) -> (B::FloatTensorPrimitive, Option<[B::FloatTensorPrimitive; 2]>) {
    let x = h.get_float_tensor::<B>(&d.inputs[0]);
    let rot = (d.inputs.len() == 3).then(|| [h.get_float_tensor::<B>(&d.inputs[1]), h.get_float_tensor::<B>(&d.inputs[2])]);
    (x, rot)
}
