//! The BakaLLM decoder: embedding → layers → final norm → untied LM head, run one window at a
//! time with a [`BakaState`] carried between windows.

pub mod attention;
pub mod block;
pub mod init;
pub mod memory;
pub mod mlp;
pub mod norm;
pub mod positions;
pub mod table_cache;

use crate::kernels::ops::{BakaOps, Kernels};
use crate::kernels::reference::to;
pub use crate::kernels::reference::token_losses;
use crate::state::BakaState;
use anyhow::{bail, Result};
use block::Block;
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use burn::tensor::FloatDType;
use init::Init;
use memory::Memory;
pub use memory::{MemoryConfig, WriteInit};
use norm::Norm;
pub use positions::PositionKind;
use positions::{Layout, PosParams};
use serde::{Deserialize, Serialize};
use table_cache::TableCache;

/// `[model]`: defaults are BakaLLM's 001_pristine (Pythia-160m dims).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Vocabulary rows; 0 = the tokenizer's vocab rounded up to a multiple of 64.
    pub vocab: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    /// Tokens per window (BakaLLM: 512); no attention crosses windows.
    pub window: usize,
    pub norm: NormKind,
    pub residual: Residual,
    pub positions: PositionKind,
    /// Positions are global (`offset + t`) instead of within the window.
    pub global_positions: bool,
    pub rope_base: f64,
    pub xpos_gamma: f64,
    pub xpos_scale_base: f64,
    pub linspace_edge: f64,
    pub norm_eps: f64,
    /// Std of the N(0, std²) init of all matrices (output projections get std/√(2·n_layers)).
    pub init_std: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            vocab: 0,
            d_model: 768,
            n_layers: 12,
            n_heads: 12,
            d_ff: 3072,
            window: 512,
            norm: NormKind::Layernorm,
            residual: Residual::Parallel,
            positions: PositionKind::Rope,
            global_positions: false,
            rope_base: 10000.0,
            xpos_gamma: 0.4,
            xpos_scale_base: 512.0,
            linspace_edge: 0.1,
            norm_eps: 1e-5,
            init_std: 0.02,
        }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        for (k, v) in [("model.d_model", self.d_model), ("model.n_layers", self.n_layers), ("model.n_heads", self.n_heads), ("model.d_ff", self.d_ff), ("model.window", self.window)] {
            if v == 0 {
                bail!("{k} = 0: expected a positive integer");
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            bail!("model.n_heads = {} does not divide model.d_model = {}", self.n_heads, self.d_model);
        }
        if self.positions.rotates() && !(self.d_model / self.n_heads).is_multiple_of(2) {
            bail!("model.positions = \"{}\" needs an even head dim, got d_model/n_heads = {}", self.positions.name(), self.d_model / self.n_heads);
        }
        if self.window > 65536 {
            bail!("model.window = {}: expected at most 65536 tokens", self.window);
        }
        for (k, v) in [("model.rope_base", self.rope_base), ("model.xpos_scale_base", self.xpos_scale_base), ("model.norm_eps", self.norm_eps), ("model.init_std", self.init_std)] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{k} = {v}: expected a positive number");
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    pub fn pos_params(&self) -> PosParams {
        PosParams {
            kind: self.positions,
            n_heads: self.n_heads,
            head_dim: self.head_dim(),
            rope_base: self.rope_base,
            xpos_gamma: self.xpos_gamma,
            xpos_scale_base: self.xpos_scale_base,
            linspace_edge: self.linspace_edge,
        }
    }
}

/// `model.norm`: the pre-norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// LayerNorm with its bias (BakaLLM, GPT-NeoX).
    Layernorm,
    Rmsnorm,
}

/// `model.residual`: how a layer adds its sublayers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Residual {
    /// `x + attn(norm(x)) + mlp(norm(x))`, one shared pre-norm (GPT-NeoX, BakaLLM pristine).
    Parallel,
    /// `x + attn(norm(x))`, then `+ mlp(norm(·))` with its own norm (GPT-2).
    Sequential,
}

/// Number of parameters of a model with this config (checked against burn's count in tests).
pub fn param_count(c: &ModelConfig, mem: &MemoryConfig) -> usize {
    let d = c.d_model;
    let norm = if c.norm == NormKind::Layernorm { 2 * d } else { d };
    let norms = if c.residual == Residual::Sequential { 2 * norm } else { norm };
    let linspace = if c.positions == PositionKind::Linspace { d } else { 0 };
    let layer = 4 * d * d + 3 * d * c.d_ff + norms + linspace;
    2 * c.vocab * d + c.n_layers * layer + norm + mem.tokens * d
}

/// Rounds a tokenizer's vocab up to a multiple of 64 (BakaLLM/nanoGPT padding).
pub fn padded_vocab(n: usize) -> usize {
    n.div_ceil(64) * 64
}

#[derive(Module, Debug)]
pub struct BakaLM<B: Backend> {
    pub embed: Embedding<B>,
    pub layers: Vec<Block<B>>,
    pub norm: Norm<B>,
    pub lm_head: Linear<B>,
    pub memory: Option<Memory<B>>,
    pub window: usize,
    pub bptt_windows: usize,
    pub global_positions: bool,
    pub pos: PosParams,
    /// The activations' dtype (the weights stay f32): F32, or BF16 on CUDA.
    pub dtype: FloatDType,
    /// Which of the backend's kernels run ([`BakaOps`]).
    pub kernels: Kernels,
    /// The position tables of the window layouts met so far, on the device.
    pub tables: TableCache,
}

impl<B: Backend> BakaLM<B> {
    /// A freshly initialised model; `c.vocab` must be resolved (non-zero).
    pub fn new(c: &ModelConfig, mem: &MemoryConfig, seed: u64, device: &B::Device) -> Self {
        assert!(c.vocab > 0, "model.vocab must be resolved before building the model");
        let mut init = Init::new(seed, device);
        let embed = Embedding { weight: init.param([c.vocab, c.d_model], c.init_std) };
        let layers = (0..c.n_layers).map(|_| Block::new(c, &mut init)).collect();
        let norm = Norm::new(c.norm, c.d_model, c.norm_eps, device);
        let lm_head = init.linear(c.d_model, c.vocab, c.init_std);
        let memory = (mem.tokens > 0).then(|| Memory::new(mem.tokens, c.d_model, c.init_std, mem.write_init == WriteInit::Previous, mem.positions == memory::MemoryPositions::Window, &mut init));
        Self {
            embed,
            layers,
            norm,
            lm_head,
            memory,
            window: c.window,
            bptt_windows: mem.bptt_windows.max(1),
            global_positions: c.global_positions,
            pos: c.pos_params(),
            dtype: FloatDType::F32,
            kernels: Kernels::REFERENCE,
            tables: TableCache::default(),
        }
    }

    /// Sets the activations' dtype (f32 or bf16; the weights stay f32) and the kernels.
    pub fn with_kernels(mut self, dtype: FloatDType, kernels: Kernels) -> Self {
        self.dtype = dtype;
        self.kernels = kernels;
        self
    }

    pub fn vocab(&self) -> usize {
        self.lm_head.weight.dims()[1]
    }

    pub fn d_model(&self) -> usize {
        self.lm_head.weight.dims()[0]
    }
}

impl<B: BakaOps> BakaLM<B> {
    /// The embedding rows of `tokens [b, T]`, in the activations' dtype.
    fn embed(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        to(B::embed(self.embed.weight.val(), tokens, &self.kernels), self.dtype)
    }

    /// Layout of one window's sequence and the hidden input `[read? ; x ; write]`.
    fn assemble(&self, x: Tensor<B, 3>, state: &mut BakaState<B>) -> (Tensor<B, 3>, Layout, bool) {
        let t = x.dims()[1];
        let base = if self.global_positions { state.offset } else { 0 };
        let ramp_start = if self.global_positions { self.pos.linspace_edge * state.window as f64 } else { 0.0 };
        match &self.memory {
            None => {
                let layout = Layout::plain(t, base);
                let layout = Layout { linspace_start: ramp_start, ..layout };
                (x, layout, false)
            }
            Some(mem) => {
                let read = state.memory.take();
                let had_read = read.is_some();
                let (seq, layout) = mem.assemble(x, read, base, ramp_start);
                (seq, layout, had_read)
            }
        }
    }

    /// Runs one window given its token embeddings `[b, T, d]`; returns the final normed hidden
    /// states of its tokens and advances `state` (memory, offset).
    pub fn forward_hidden(&self, x: Tensor<B, 3>, state: &mut BakaState<B>) -> Tensor<B, 3> {
        let t = x.dims()[1];
        let (mut h, layout, had_read) = self.assemble(x, state);
        let pos = self.tables.get::<B>(&layout, &self.pos, &h.device(), self.dtype);
        for layer in &self.layers {
            h = layer.forward(h, &pos, &self.kernels);
        }
        let (tokens, write) = match &self.memory {
            None => (h, None),
            Some(mem) => {
                let (tok, write) = mem.split(h, had_read);
                (tok, Some(write))
            }
        };
        state.advance(t, write, self.bptt_windows);
        self.norm.forward(tokens, &self.kernels)
    }

    /// One window `[b, T]` → its final normed hidden states `[b, T, d]`, carrying `state` to the
    /// next window.
    fn window_hidden(&self, tokens: Tensor<B, 2, Int>, state: &mut BakaState<B>) -> Tensor<B, 3> {
        self.forward_hidden(self.embed(tokens), state)
    }

    /// One window `[b, T]` → logits `[b, T, vocab]`, carrying `state` to the next window.
    pub fn forward_window(&self, tokens: Tensor<B, 2, Int>, state: &mut BakaState<B>) -> Tensor<B, 3> {
        let h = self.window_hidden(tokens, state);
        self.head(h)
    }

    /// The LM head: hidden states `[b, T, d]` → logits `[b, T, vocab]`.
    pub fn head(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        B::dense(h, self.lm_head.weight.val(), &self.kernels)
    }

    /// A chunk of consecutive windows `[b, n·T]` (the last window may be shorter) → logits
    /// `[b, n·T, vocab]`: the LM head over [`Self::forward_chunk_hidden`]'s states.
    pub fn forward_chunk(&self, tokens: Tensor<B, 2, Int>, state: &mut BakaState<B>) -> Tensor<B, 3> {
        let [b, len] = tokens.dims();
        if !self.batched(len) {
            return self.each_window(tokens, state, Self::forward_window);
        }
        let h = self.forward_chunk_hidden(tokens, state);
        let (n, d) = (len / self.window, self.d_model());
        self.head(h.reshape([b * n, self.window, d])).reshape([b, len, self.vocab()])
    }

    /// Per-token losses `[b, n·T]` (nats) of a chunk of windows `[b, n·T]` against `targets`.
    pub fn chunk_losses(&self, tokens: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>, state: &mut BakaState<B>) -> Tensor<B, 2> {
        let h = self.forward_chunk_hidden(tokens, state);
        B::head_token_losses(h, self.lm_head.weight.val(), targets, &self.kernels)
    }

    /// Mean loss `[1]` of a chunk of windows `[b, n·T]` against `targets` (training).
    pub fn chunk_loss(&self, tokens: Tensor<B, 2, Int>, targets: Tensor<B, 2, Int>, state: &mut BakaState<B>) -> Tensor<B, 1> {
        let h = self.forward_chunk_hidden(tokens, state);
        B::head_loss(h, self.lm_head.weight.val(), targets, &self.kernels)
    }

    /// Whether a chunk of `len` tokens runs as independent windows batched together: no memory,
    /// local positions, and more than one whole window.
    fn batched(&self, len: usize) -> bool {
        self.memory.is_none() && !self.global_positions && len.is_multiple_of(self.window) && len > self.window
    }

    /// A chunk of consecutive windows `[b, n·T]` → the final normed hidden states `[b, n·T, d]`,
    /// the LM head's input. Without memory and with local positions the windows are independent,
    /// so they are batched into one `[b·n, T]` pass (same result as the loop, tested).
    pub fn forward_chunk_hidden(&self, tokens: Tensor<B, 2, Int>, state: &mut BakaState<B>) -> Tensor<B, 3> {
        let [b, len] = tokens.dims();
        let (w, d) = (self.window, self.d_model());
        if self.batched(len) {
            let n = len / w;
            let h = self.forward_hidden(self.embed(tokens.reshape([b * n, w])), &mut BakaState::new());
            state.window += n;
            state.offset += len;
            return h.reshape([b, len, d]);
        }
        self.each_window(tokens, state, Self::window_hidden)
    }

    /// `f` over each window of `tokens [b, n·T]` in turn (the last may be shorter), carrying
    /// `state`; the results concatenated along the sequence (one window: no copy).
    fn each_window(&self, tokens: Tensor<B, 2, Int>, state: &mut BakaState<B>, f: WindowFn<B>) -> Tensor<B, 3> {
        let (len, w) = (tokens.dims()[1], self.window);
        let mut outs: Vec<Tensor<B, 3>> = (0..len.div_ceil(w)).map(|i| f(self, tokens.clone().narrow(1, i * w, w.min(len - i * w)), state)).collect();
        if outs.len() == 1 {
            return outs.pop().expect("one window");
        }
        Tensor::cat(outs, 1)
    }
}

/// One window's pass: tokens `[b, T]` → `[b, T, ·]`, carrying the state.
type WindowFn<B> = fn(&BakaLM<B>, Tensor<B, 2, Int>, &mut BakaState<B>) -> Tensor<B, 3>;

#[cfg(all(test, feature = "cuda"))]
pub(crate) mod gpu_tests;
#[cfg(test)]
mod tests;
