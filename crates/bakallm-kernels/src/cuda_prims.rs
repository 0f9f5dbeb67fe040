//! The CUDA backend's [`Prims`]: with `fused`, each step is one of bakallm's kernels (`cuda/*.cu`,
//! through [`FusedBackend`] and [`LayerBackend`]) or a cuBLAS GEMM; without, the reference.

use crate::attention_block::{self, Consts as AttnConsts, Saved as AttnSaved};
use crate::backend::Gpu;
use crate::fused::FusedBackend;
use crate::inner::Prims;
use crate::layer::{self, Consts as LayerConsts, LayerBackend, Saved as LayerSaved, SeqSaved as LayerSeqSaved, Weights as LayerWeights};
use crate::prims::{self, Alibi, Rot};
use crate::staged::Pending;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorPrimitive};

fn up<const D: usize>(t: Tensor<Gpu, D>) -> FloatTensor<Gpu> {
    t.into_primitive().tensor()
}

fn up_int<const D: usize>(t: Tensor<Gpu, D, Int>) -> IntTensor<Gpu> {
    t.into_primitive()
}

fn up_rot(rot: &Rot<Gpu>) -> Option<[FloatTensor<Gpu>; 2]> {
    rot.as_ref().map(|(c, s)| [up(c.clone()), up(s.clone())])
}

/// What the flash kernels take of ALiBi: its slopes and positions.
fn slopes_pos(alibi: &Option<Alibi<Gpu>>) -> Option<FloatTensor<Gpu>> {
    alibi.as_ref().map(|a| up(a.slopes_pos.clone()))
}

fn down<const D: usize>(t: FloatTensor<Gpu>) -> Tensor<Gpu, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

impl Prims for Gpu {
    fn matmul(a: Tensor<Gpu, 3>, b: Tensor<Gpu, 3>, fused: bool) -> Tensor<Gpu, 3> {
        if !fused {
            return prims::matmul(a, b);
        }
        crate::cublas::matmul(a, b)
    }

    fn softmax_fwd(s: Tensor<Gpu, 3>, bias: Tensor<Gpu, 4>, scale: f32, heads: usize, fused: bool) -> Tensor<Gpu, 3> {
        if !fused {
            return prims::softmax_fwd(s, bias, scale, heads);
        }
        down(<Gpu as FusedBackend>::softmax_fwd(up(s), up(bias), scale, heads))
    }

    fn flash_fwd(q: Tensor<Gpu, 3>, k: Tensor<Gpu, 3>, v: Tensor<Gpu, 3>, alibi: Option<Alibi<Gpu>>, scale: f32, heads: usize, fused: bool) -> (Tensor<Gpu, 3>, Tensor<Gpu, 2>) {
        if !fused {
            return prims::flash_fwd(q, k, v, alibi.map(|a| a.table), scale, heads);
        }
        let [o, lse] = <Gpu as FusedBackend>::flash_fwd(up(q), up(k), up(v), alibi.map(|a| up(a.slopes_pos)), scale, heads);
        (down(o), down(lse))
    }

    fn flash_bwd(
        q: Tensor<Gpu, 3>,
        k: Tensor<Gpu, 3>,
        v: Tensor<Gpu, 3>,
        o: Tensor<Gpu, 3>,
        lse: Tensor<Gpu, 2>,
        dout: Tensor<Gpu, 3>,
        alibi: Option<Alibi<Gpu>>,
        scale: f32,
        heads: usize,
        fused: bool,
    ) -> [Tensor<Gpu, 3>; 3] {
        if !fused {
            return prims::flash_bwd(q, k, v, o, lse, dout, alibi.map(|a| a.table), scale, heads);
        }
        let g = <Gpu as FusedBackend>::flash_bwd([q, k, v, o, dout].map(up), up(lse), alibi.map(|a| up(a.slopes_pos)), scale, heads);
        g.map(down)
    }

    fn softmax_bwd(p: Tensor<Gpu, 3>, dp: Tensor<Gpu, 3>, scale: f32, fused: bool) -> Tensor<Gpu, 3> {
        if !fused {
            return prims::softmax_bwd(p, dp, scale);
        }
        down(<Gpu as FusedBackend>::softmax_bwd(up(p), up(dp), scale))
    }

    fn ce_fwd(x: Tensor<Gpu, 2>, t: Tensor<Gpu, 1, Int>, fused: bool) -> [Tensor<Gpu, 1>; 2] {
        if !fused {
            return prims::ce_fwd(x, t);
        }
        <Gpu as FusedBackend>::ce_fwd(up(x), up_int(t)).map(down)
    }

    fn ce_bwd(x: Tensor<Gpu, 2>, t: Tensor<Gpu, 1, Int>, lse: Tensor<Gpu, 1>, g: Tensor<Gpu, 1>, fused: bool) -> Tensor<Gpu, 2> {
        if !fused {
            return prims::ce_bwd(x, t, lse, g);
        }
        down(<Gpu as FusedBackend>::ce_bwd(up(x), up_int(t), up(lse), up(g)))
    }

    fn head_ce(x: Tensor<Gpu, 2>, w: Tensor<Gpu, 2>, t: Tensor<Gpu, 1, Int>, chunk: usize, fused: bool) -> (Tensor<Gpu, 1>, Tensor<Gpu, 2>, Tensor<Gpu, 2>) {
        if !fused {
            return prims::head_ce(x, w, t, chunk);
        }
        let [l, dx, dw] = <Gpu as FusedBackend>::head_ce(up(x), up(w), up_int(t), chunk);
        (down(l), down(dx), down(dw))
    }

    fn mlp_fwd(x: Tensor<Gpu, 2>, wg: Tensor<Gpu, 2>, wu: Tensor<Gpu, 2>, wd: Tensor<Gpu, 2>, fused: bool) -> (Tensor<Gpu, 2>, Tensor<Gpu, 2>, Tensor<Gpu, 2>, Tensor<Gpu, 2>) {
        if !fused {
            return prims::mlp_fwd(x, wg, wu, wd);
        }
        let [y, h, wcat, wdc] = <Gpu as FusedBackend>::mlp_fwd(up(x), up(wg), up(wu), up(wd));
        (down(y), down(h), down(wcat), down(wdc))
    }

    fn mlp_bwd(
        dy: Tensor<Gpu, 2>,
        x: Tensor<Gpu, 2>,
        h: Tensor<Gpu, 2>,
        wcat: Tensor<Gpu, 2>,
        wdc: Tensor<Gpu, 2>,
        w_dtype: DType,
        fused: bool,
    ) -> (Tensor<Gpu, 2>, Tensor<Gpu, 2>, Tensor<Gpu, 2>, Tensor<Gpu, 2>) {
        if !fused {
            return prims::mlp_bwd(dy, x, h, wcat, wdc, w_dtype);
        }
        let [dx, dwg, dwu, dwd] = <Gpu as FusedBackend>::mlp_bwd(up(dy), up(x), up(h), up(wcat), up(wdc), w_dtype);
        (down(dx), down(dwg), down(dwu), down(dwd))
    }

    fn scale_by<const D: usize>(x: Tensor<Gpu, D>, g: Tensor<Gpu, 1>, fused: bool) -> Tensor<Gpu, D> {
        if !fused {
            return prims::scale_by(x, g);
        }
        let shape = x.shape();
        down::<1>(<Gpu as FusedBackend>::scale_by(up(x.flatten::<1>(0, D - 1)), up(g.cast(burn::tensor::FloatDType::F32)))).reshape(shape)
    }

    fn embed_bwd(ids: Tensor<Gpu, 1, Int>, g: Tensor<Gpu, 2>, vocab: usize, fused: bool) -> Tensor<Gpu, 2> {
        if !fused {
            return prims::embed_bwd(ids, g, vocab);
        }
        down(<Gpu as FusedBackend>::embed_bwd(up_int(ids), up(g), vocab))
    }

    fn heads_split(x: Tensor<Gpu, 3>, rot: &Rot<Gpu>, heads: usize, fused: bool) -> Tensor<Gpu, 3> {
        if !fused {
            return prims::heads_split(x, rot, heads);
        }
        down(<Gpu as FusedBackend>::heads_split(up(x), up_rot(rot), heads))
    }

    fn heads_merge(g: Tensor<Gpu, 3>, rot: &Rot<Gpu>, heads: usize, fused: bool) -> Tensor<Gpu, 3> {
        if !fused {
            return prims::heads_merge(g, rot, heads);
        }
        down(<Gpu as FusedBackend>::heads_merge(up(g), up_rot(rot), heads))
    }

    fn norm_fwd(x: Tensor<Gpu, 2>, w: Tensor<Gpu, 1>, b: Option<Tensor<Gpu, 1>>, eps: f32, fused: bool) -> [Tensor<Gpu, 2>; 3] {
        if !fused {
            return prims::norm_fwd(x, w, b, eps);
        }
        let rows = x.dims()[0];
        let [y, m, r] = <Gpu as FusedBackend>::norm_fwd(up(x), up(w), b.map(up), eps);
        [down(y), down::<1>(m).reshape([rows, 1]), down::<1>(r).reshape([rows, 1])]
    }

    fn norm_bwd(g: Tensor<Gpu, 2>, x: Tensor<Gpu, 2>, w: Tensor<Gpu, 1>, mean: Tensor<Gpu, 2>, rstd: Tensor<Gpu, 2>, layer: bool, fused: bool) -> Vec<Tensor<Gpu, 2>> {
        if !fused {
            return prims::norm_bwd(g, x, w, mean, rstd, layer);
        }
        let [rows, d] = x.dims();
        let out = <Gpu as FusedBackend>::norm_bwd(up(g), up(x), up(w), up(mean.reshape([rows])), up(rstd.reshape([rows])), layer);
        out.into_iter().enumerate().map(|(i, t)| if i == 0 { down(t) } else { down::<1>(t).reshape([1, d]) }).collect()
    }

    fn linear_fwd(x: Tensor<Gpu, 3>, w: Tensor<Gpu, 2>, fused: bool) -> Tensor<Gpu, 3> {
        if !fused {
            return prims::linear_fwd(x, w);
        }
        down(<Gpu as FusedBackend>::linear_fwd(up(x), up(w)))
    }

    fn linear_bwd(g: Tensor<Gpu, 3>, x: Tensor<Gpu, 3>, w: Tensor<Gpu, 2>, w_dtype: DType, fused: bool) -> (Tensor<Gpu, 3>, Tensor<Gpu, 2>) {
        if !fused {
            return prims::linear_bwd(g, x, w, w_dtype);
        }
        let [dx, dw] = <Gpu as FusedBackend>::linear_bwd(up(g), up(x), up(w), w_dtype);
        (down(dx), down(dw))
    }

    fn silu_mul_fwd<const D: usize>(a: Tensor<Gpu, D>, u: Tensor<Gpu, D>, fused: bool) -> Tensor<Gpu, D> {
        if !fused {
            return prims::silu_mul_fwd::<Gpu, D>(a, u);
        }
        down(<Gpu as FusedBackend>::silu_mul_fwd(up(a), up(u)))
    }

    fn silu_mul_bwd<const D: usize>(g: Tensor<Gpu, D>, a: Tensor<Gpu, D>, u: Tensor<Gpu, D>, fused: bool) -> (Tensor<Gpu, D>, Tensor<Gpu, D>) {
        if !fused {
            return prims::silu_mul_bwd::<Gpu, D>(g, a, u);
        }
        let [da, du] = <Gpu as FusedBackend>::silu_mul_bwd(up(a), up(u), up(g));
        (down(da), down(du))
    }

    fn block_fwd(h: Tensor<Gpu, 3>, ws: [Tensor<Gpu, 2>; 4], k_add: Option<Tensor<Gpu, 2>>, c: &AttnConsts<Gpu>, fused: bool) -> (Tensor<Gpu, 3>, AttnSaved<Gpu>) {
        if !fused {
            return attention_block::block_fwd(h, ws, k_add, c);
        }
        assert!(k_add.is_none(), "the CUDA attention op adds nothing to k (cuda_ops routes linspace elsewhere)");
        let rot = [up_rot(&c.rot[0]), up_rot(&c.rot[1])];
        let [y, qkv, o, lse, wqkv, wo] = <Gpu as FusedBackend>::attn_fwd(up(h), ws.map(up), rot, slopes_pos(&c.alibi), c.heads, c.scale);
        (down(y), AttnSaved { qkv: down(qkv), o: down(o), lse: down(lse), wqkv: down(wqkv), wo: down(wo) })
    }

    fn block_bwd(
        dy: Tensor<Gpu, 3>,
        h: Tensor<Gpu, 3>,
        s: AttnSaved<Gpu>,
        c: &AttnConsts<Gpu>,
        w_dtype: DType,
        k_add: bool,
        fused: bool,
    ) -> (Tensor<Gpu, 3>, [Tensor<Gpu, 2>; 4], Option<Tensor<Gpu, 2>>) {
        if !fused {
            return attention_block::block_bwd(dy, h, s, c, w_dtype, k_add);
        }
        assert!(!k_add, "the CUDA attention op adds nothing to k");
        let rot = [up_rot(&c.rot[0]), up_rot(&c.rot[1])];
        let saved = [up(s.qkv), up(s.o), up(s.lse), up(s.wqkv), up(s.wo)];
        let [dh, dwq, dwk, dwv, dwo] = <Gpu as FusedBackend>::attn_bwd(up(dy), up(h), saved, rot, slopes_pos(&c.alibi), c.heads, c.scale, w_dtype);
        (down(dh), [down(dwq), down(dwk), down(dwv), down(dwo)], None)
    }

    fn layer_fwd(x: Tensor<Gpu, 3>, w: LayerWeights<Gpu>, c: &LayerConsts<Gpu>, fused: bool) -> (Tensor<Gpu, 3>, LayerSaved<Gpu>) {
        if !fused {
            return layer::layer_fwd(x, w, c);
        }
        let seq = w.mlp_norm.is_some();
        let w2 = w.mlp_norm.as_ref().map(|(w2, _)| w2.clone());
        let mut ws = vec![up(w.norm.0)];
        ws.extend(w.norm.1.map(up));
        ws.extend(w.mlp_norm.into_iter().flat_map(|(w, b)| std::iter::once(up(w)).chain(b.map(up))));
        ws.extend(w.attn.map(up).into_iter().chain(w.mlp.map(up)));
        let rot = [up_rot(&c.attn.rot[0]), up_rot(&c.attn.rot[1])];
        let k_add = w.k_add.is_some();
        let out = <Gpu as LayerBackend>::layer_fwd(up(x), ws, w.k_add.map(up), rot, slopes_pos(&c.attn.alibi), c.attn.heads, c.attn.scale, c.eps, seq, None);
        let mut out = out.into_iter();
        let mut next = |what: &str| out.next().unwrap_or_else(|| panic!("layer_fwd: {what}"));
        let (y, n, mean, rstd) = (down(next("y")), down(next("n")), down(next("mean")), down(next("rstd")));
        let attn = AttnSaved { qkv: down(next("qkv")), o: down(next("o")), lse: down(next("lse")), wqkv: down(next("wqkv")), wo: down(next("wo")) };
        let mlp = [(); 3].map(|_| down(next("mlp")));
        let seq = w2.map(|w| LayerSeqSaved { x: down(next("x'")), n: down(next("n'")), stats: [down(next("mean'")), down(next("rstd'"))], w });
        (y, LayerSaved { n, stats: [mean, rstd], attn, mlp, seq, k_add })
    }

    fn layer_bwd(dy: Tensor<Gpu, 3>, x: Tensor<Gpu, 3>, norm_w: Tensor<Gpu, 1>, s: LayerSaved<Gpu>, c: &LayerConsts<Gpu>, layer: bool, w_dtype: DType, fused: bool) -> layer::Grads<Gpu> {
        if !fused {
            return layer::layer_bwd(dy, x, norm_w, s, c, layer, w_dtype);
        }
        let (a, k_add) = (s.attn, s.k_add);
        let saved = vec![up(s.n), up(s.stats[0].clone()), up(s.stats[1].clone()), up(a.qkv), up(a.o), up(a.lse), up(a.wqkv), up(a.wo)];
        let mut saved: Vec<_> = saved.into_iter().chain(s.mlp.map(up)).collect();
        let norms = (1 + layer as usize) * (1 + s.seq.is_some() as usize);
        if let Some(q) = s.seq {
            saved.extend([up(q.x), up(q.n), up(q.stats[0].clone()), up(q.stats[1].clone()), up(q.w)]);
        }
        let rot = [up_rot(&c.attn.rot[0]), up_rot(&c.attn.rot[1])];
        let out = <Gpu as LayerBackend>::layer_bwd(up(dy), up(x), up(norm_w), saved, rot, slopes_pos(&c.attn.alibi), c.attn.heads, c.attn.scale, layer, k_add, w_dtype);
        let mut out = out.into_iter();
        let dx = down(out.next().expect("dx"));
        let norm = (0..norms).map(|_| down(out.next().expect("norm gradients"))).collect();
        let mats = [(); 7].map(|_| down(out.next().expect("weight gradients")));
        layer::Grads { dx, norm, mats, k_add: out.next().map(down) }
    }

    fn read_later(t: Tensor<Gpu, 1>) -> Pending {
        crate::staged::cuda::read_later(t)
    }

    const OPTIM_KERNELS: bool = true;

    fn has_collective() -> bool {
        crate::nccl::configured()
    }

    fn all_reduce_mean(ts: Vec<FloatTensor<Gpu>>) -> Vec<FloatTensor<Gpu>> {
        <Gpu as FusedBackend>::all_reduce_mean(ts)
    }

    fn sum_squares(tensors: Vec<FloatTensor<Gpu>>) -> Tensor<Gpu, 1> {
        down(<Gpu as FusedBackend>::sum_squares(tensors))
    }

    fn adamw(ps: Vec<FloatTensor<Gpu>>, gs: Vec<FloatTensor<Gpu>>, mvs: Option<Vec<[FloatTensor<Gpu>; 2]>>, stats: Option<Tensor<Gpu, 1>>, h: [f32; 11]) -> Vec<[FloatTensor<Gpu>; 3]> {
        let none = ps.iter().map(|_| None).collect();
        <Gpu as FusedBackend>::adamw(ps, gs, mvs, stats.map(up), h, none)
    }
}
