//! [`BakaOps`] on CUDA: the training backend runs bakallm's kernels where [`Kernels`] asks for
//! them and their conditions hold (the flash kernels' dtype and head dims), and the reference
//! otherwise; inference runs the reference with cuBLAS linears.

use super::attention::{attention_ad, Path};
use super::ops::{AttnKernel, AttnWeights, BakaOps, Ce, Fusion, Kernels, Matmul, MlpWeights, NormWeights, Positions, Rot};
use super::prims::Alibi;
use super::reference as r;
use super::{attention_block, cross_entropy, embedding, flash, gate, heads, layer, linear, mlp, norm};
use crate::backend::{Gpu, GpuTrain};
use burn::prelude::*;

type T<const D: usize> = Tensor<GpuTrain, D>;

/// The untracked tables (constants) of a rotation.
fn inner_rot(rot: &Rot<GpuTrain>) -> Rot<Gpu> {
    rot.as_ref().map(|(c, s)| (c.clone().inner(), s.clone().inner()))
}

/// The attention sublayer's constants where the flash kernels take `x [b, L, d]`'s dtype and head
/// dim; `None` elsewhere.
fn block_consts(x: &T<3>, pos: &Positions<GpuTrain>, heads: usize, scale: f32) -> Option<attention_block::Consts<Gpu>> {
    let [b, l, d] = x.dims();
    flash::supports(x.dtype(), [b * heads, l, d / heads]).then(|| attention_block::Consts {
        rot: [inner_rot(&pos.rot_q), inner_rot(&pos.rot_k)],
        alibi: pos.alibi().map(|a| Alibi { table: a.table.inner(), slopes_pos: a.slopes_pos.inner() }),
        heads,
        scale,
    })
}

/// Whether the whole attention sublayer can run as one op: cuBLAS linears and nothing added to k
/// before the head split (linspace's ramp).
fn block_fits(w: &AttnWeights<GpuTrain>, k: &Kernels) -> bool {
    matches!(k.attention, AttnKernel::Block | AttnKernel::Layer) && k.matmul == Matmul::Cublas && w.k_scale.is_none()
}

/// The whole layer as one op (`layer.rs`), parallel or with the MLP's own norm `n2` (sequential),
/// where the kernels asked for and the flash kernels' conditions allow; `None` elsewhere. The op
/// takes linspace's ramp ⊗ scale as a key term, differentiated here by autodiff.
fn layer_op(x: &T<3>, n: &NormWeights<GpuTrain>, a: &AttnWeights<GpuTrain>, n2: Option<&NormWeights<GpuTrain>>, m: &MlpWeights<GpuTrain>, pos: &Positions<GpuTrain>, k: &Kernels) -> Option<T<3>> {
    let whole = k.attention == AttnKernel::Layer && k.matmul == Matmul::Cublas && k.gate == Fusion::Fused && k.norm == Fusion::Fused;
    // one epsilon and one kind of norm for both
    let same = n2.is_none_or(|n2| n2.eps == n.eps && n2.bias.is_some() == n.bias.is_some());
    if !(whole && same) {
        return None;
    }
    let attn = block_consts(x, pos, a.heads, a.scale())?;
    let [_, l, d] = x.dims();
    let k_add = r::key_term(pos, a, x.dtype().into()).map(|t| t.reshape([l, d]));
    let norm = |n: &NormWeights<GpuTrain>| (n.weight.clone(), n.bias.clone());
    let w = layer::Weights { norm: norm(n), attn: [&a.q, &a.k, &a.v, &a.o].map(|t| t.clone()), mlp: [&m.gate, &m.up, &m.down].map(|t| t.clone()), mlp_norm: n2.map(norm), k_add };
    Some(layer::layer_ad(x.clone(), w, layer::Consts { attn, eps: n.eps as f32 }, true))
}

impl BakaOps for GpuTrain {
    fn dense(x: T<3>, w: T<2>, k: &Kernels) -> T<3> {
        match k.matmul {
            Matmul::Cublas => linear::linear_ad(x, w, true),
            Matmul::Burn => r::linear(x, w),
        }
    }

    fn embed(weight: T<2>, ids: Tensor<GpuTrain, 2, Int>, k: &Kernels) -> T<3> {
        match k.embedding {
            Fusion::Fused => embedding::embedding_ad(weight, ids.inner(), true),
            Fusion::Burn => burn::tensor::module::embedding(weight, ids),
        }
    }

    fn norm(x: T<3>, w: &NormWeights<GpuTrain>, k: &Kernels) -> T<3> {
        if k.norm == Fusion::Burn {
            return r::norm(x, w);
        }
        let [b, l, d] = x.dims();
        norm::norm_ad(x.reshape([b * l, d]), w.weight.clone(), w.bias.clone(), w.eps as f32, true).reshape([b, l, d])
    }

    fn self_attention(h: T<3>, w: &AttnWeights<GpuTrain>, pos: &Positions<GpuTrain>, k: &Kernels) -> T<3> {
        if k.attention == AttnKernel::Burn {
            return r::attention(h, w, pos, k);
        }
        let (n, scale) = (w.heads, w.scale());
        if block_fits(w, k) {
            if let Some(c) = block_consts(&h, pos, n, scale) {
                return attention_block::attention_block_ad(h, [&w.q, &w.k, &w.v, &w.o].map(|t| t.clone()), c, true);
            }
        }
        // head split with the rotation, attention, head merge: one kernel or GEMM sequence each
        let q = heads::split_heads_ad(Self::dense(h.clone(), w.q.clone(), k), &inner_rot(&pos.rot_q), n, true);
        let key = heads::split_heads_ad(r::k_proj(h.clone(), w, pos, k), &inner_rot(&pos.rot_k), n, true);
        let v = heads::split_heads_ad(Self::dense(h, w.v.clone(), k), &None, n, true);
        let flash = k.attention != AttnKernel::Fused && flash::supports(q.dtype(), q.dims());
        let path = if flash { Path::Flash } else { Path::Gemm };
        let y = attention_ad(q, key, v, pos.bias.clone().inner(), pos.slopes_pos.clone().map(|v| v.inner()), n, scale, true, path);
        Self::dense(heads::merge_heads_ad(y, n, true), w.o.clone(), k)
    }

    fn mlp(x: T<3>, w: &MlpWeights<GpuTrain>, k: &Kernels) -> T<3> {
        match (k.gate, k.matmul) {
            (Fusion::Fused, Matmul::Cublas) => mlp::mlp_ad(x, w.gate.clone(), w.up.clone(), w.down.clone(), true),
            (Fusion::Fused, Matmul::Burn) => {
                let (up, g) = (Self::dense(x.clone(), w.up.clone(), k), Self::dense(x, w.gate.clone(), k));
                Self::dense(gate::silu_mul_ad(g, up, true), w.down.clone(), k)
            }
            (Fusion::Burn, _) => r::mlp(x, w, k),
        }
    }

    fn parallel_layer(x: T<3>, n: &NormWeights<GpuTrain>, a: &AttnWeights<GpuTrain>, m: &MlpWeights<GpuTrain>, pos: &Positions<GpuTrain>, k: &Kernels) -> T<3> {
        layer_op(&x, n, a, None, m, pos, k).unwrap_or_else(|| r::parallel_layer(x, n, a, m, pos, k))
    }

    fn sequential_layer(x: T<3>, n: &NormWeights<GpuTrain>, a: &AttnWeights<GpuTrain>, n2: &NormWeights<GpuTrain>, m: &MlpWeights<GpuTrain>, pos: &Positions<GpuTrain>, k: &Kernels) -> T<3> {
        layer_op(&x, n, a, Some(n2), m, pos, k).unwrap_or_else(|| r::sequential_layer(x, n, a, n2, m, pos, k))
    }

    fn head_loss(h: T<3>, w: T<2>, targets: Tensor<GpuTrain, 2, Int>, k: &Kernels) -> T<1> {
        let [b, n, d] = h.dims();
        let t = targets.clone().inner().reshape([b * n]);
        match k.ce {
            Ce::Chunked => cross_entropy::head_ce_mean(h.reshape([b * n, d]), w, t, k.ce_chunk, true),
            Ce::Autodiff => r::head_token_losses(h, w, targets, k).mean(),
            Ce::Fused | Ce::ClosedForm => {
                let logits = Self::dense(h, w, k);
                let v = logits.dims()[2];
                cross_entropy::token_losses(logits.reshape([b * n, v]), t, k.ce == Ce::Fused).mean()
            }
        }
    }
}

impl BakaOps for Gpu {
    fn dense(x: Tensor<Gpu, 3>, w: Tensor<Gpu, 2>, k: &Kernels) -> Tensor<Gpu, 3> {
        if k.matmul == Matmul::Burn {
            return r::linear(x, w);
        }
        let ([b, l, d], n) = (x.dims(), w.dims()[1]);
        let w = r::to(w, x.dtype().into());
        super::cublas::matmul(x.reshape([1, b * l, d]), w.unsqueeze::<3>()).reshape([b, l, n])
    }
}
