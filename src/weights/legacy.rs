//! Checkpoints written before 2026-12-03, whose model record has another layout: burn records
//! every non-parameter field of a module as one empty entry, and the model's modules then carried
//! their kernel switches as such fields. These mirror that layout, so such a checkpoint still
//! loads (evaluation, export, `--resume` with its optimizer state: the parameter ids are kept).

use crate::model::attention::{Attention, LinspaceScale};
use crate::model::block::Block;
use crate::model::memory::Memory;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::BakaLM;
use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear, RmsNorm};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct OldNorm<B: Backend> {
    layer: Option<LayerNorm<B>>,
    rms: Option<RmsNorm<B>>,
    eps: (),
    fused: (),
}

#[derive(Module, Debug)]
pub struct OldAttention<B: Backend> {
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    pos: Option<LinspaceScale<B>>,
    n_heads: (),
    compute: (),
}

#[derive(Module, Debug)]
pub struct OldMlp<B: Backend> {
    gate: Linear<B>,
    up: Linear<B>,
    down: Linear<B>,
    compute: (),
}

#[derive(Module, Debug)]
pub struct OldBlock<B: Backend> {
    attn_norm: OldNorm<B>,
    mlp_norm: Option<OldNorm<B>>,
    attn: OldAttention<B>,
    mlp: OldMlp<B>,
}

#[derive(Module, Debug)]
pub struct OldMemory<B: Backend> {
    init: Param<Tensor<B, 2>>,
    write_previous: (),
    positioned: (),
    compute: (),
}

#[derive(Module, Debug)]
pub struct OldBakaLM<B: Backend> {
    embed: Embedding<B>,
    layers: Vec<OldBlock<B>>,
    norm: OldNorm<B>,
    lm_head: Linear<B>,
    memory: Option<OldMemory<B>>,
    window: (),
    bptt_windows: (),
    global_positions: (),
    pos: (),
    compute: (),
}

/// The parameters of `m` in the old layout (to load an old record into).
pub fn split<B: Backend>(m: BakaLM<B>) -> OldBakaLM<B> {
    let norm = |n: Norm<B>| OldNorm { layer: n.layer, rms: n.rms, eps: (), fused: () };
    let block = |b: Block<B>| OldBlock {
        attn_norm: norm(b.attn_norm),
        mlp_norm: b.mlp_norm.map(norm),
        attn: OldAttention { q: b.attn.q, k: b.attn.k, v: b.attn.v, o: b.attn.o, pos: b.attn.pos, n_heads: (), compute: () },
        mlp: OldMlp { gate: b.mlp.gate, up: b.mlp.up, down: b.mlp.down, compute: () },
    };
    let memory = m.memory.map(|mem| OldMemory { init: mem.init, write_previous: (), positioned: (), compute: () });
    OldBakaLM {
        embed: m.embed,
        layers: m.layers.into_iter().map(block).collect(),
        norm: norm(m.norm),
        lm_head: m.lm_head,
        memory,
        window: (),
        bptt_windows: (),
        global_positions: (),
        pos: (),
        compute: (),
    }
}

/// `like` (its constants: heads, flags, kernels) with the parameters of `old`.
pub fn restore<B: Backend>(old: OldBakaLM<B>, like: BakaLM<B>) -> BakaLM<B> {
    let norm = |n: OldNorm<B>, like: &Norm<B>| Norm { layer: n.layer, rms: n.rms, eps: like.eps };
    let layers = old
        .layers
        .into_iter()
        .zip(&like.layers)
        .map(|(b, l)| Block {
            attn_norm: norm(b.attn_norm, &l.attn_norm),
            mlp_norm: b.mlp_norm.zip(l.mlp_norm.as_ref()).map(|(n, l)| norm(n, l)),
            attn: Attention { q: b.attn.q, k: b.attn.k, v: b.attn.v, o: b.attn.o, pos: b.attn.pos, n_heads: l.attn.n_heads },
            mlp: Mlp { gate: b.mlp.gate, up: b.mlp.up, down: b.mlp.down },
        })
        .collect();
    let memory = old.memory.zip(like.memory.as_ref()).map(|(m, l)| Memory { init: m.init, write_previous: l.write_previous, positioned: l.positioned });
    let norm_f = norm(old.norm, &like.norm);
    BakaLM { embed: old.embed, layers, norm: norm_f, lm_head: old.lm_head, memory, ..like }
}
