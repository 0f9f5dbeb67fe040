//! RMT memory (Bulatov et al. 2022, "Recurrent Memory Transformer"; BakaLLM 005_rmt).
//!
//! Window 0's sequence is `[tokens ; write]`, window k > 0's is `[read ; tokens ; write]`, where
//! `read` is the last layer's output at the previous window's write slots. Loss is only on tokens.

use super::init::Init;
use super::positions::Layout;
use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// RMT memory (Bulatov et al. 2022); `tokens = 0` switches it off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Number of memory tokens M (BakaLLM used 16).
    pub tokens: usize,
    /// Gradients flow through memory inside groups of this many windows, then it is detached.
    pub bptt_windows: usize,
    /// Inputs of the write slots after window 0: the memory just read (the RMT paper's scheme,
    /// and BakaLLM's) or the learned init every window.
    pub write_init: WriteInit,
    pub positions: MemoryPositions,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self { tokens: 0, bptt_windows: 2, write_init: WriteInit::Previous, positions: MemoryPositions::None }
    }
}

/// `memory.positions`: the memory slots' positional signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryPositions {
    /// None: memory is a summary, not tokens at a place.
    None,
    /// Positioned by their index in the `[read ; window ; write]` sequence like ordinary tokens.
    Window,
}

/// `memory.write_init`: what the write slots of window k > 0 take as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteInit {
    /// The memory read from the previous window: the same memory tokens are read and written
    /// (Bulatov et al. 2022, and BakaLLM's 005_rmt).
    Previous,
    /// The learned `memory.init` vectors in every window (not the paper's scheme).
    Learned,
}

#[derive(Module, Debug)]
pub struct Memory<B: Backend> {
    /// Learned write-slot inputs `[M, d]` (`memory.init` in the export).
    pub init: Param<Tensor<B, 2>>,
    /// The write slots' inputs after window 0 are the memory just read (the RMT paper's scheme and
    /// BakaLLM's); false: the learned init in every window.
    pub write_previous: bool,
    /// `memory.positions = "window"`: memory slots are positioned like tokens.
    pub positioned: bool,
}

impl<B: Backend> Memory<B> {
    pub fn new(m: usize, d: usize, std: f64, write_previous: bool, positioned: bool, init: &mut Init<B>) -> Self {
        Self { init: init.param([m, d], std), write_previous, positioned }
    }

    pub fn tokens(&self) -> usize {
        self.init.dims()[0]
    }

    /// Builds `[read? ; x ; write]` and its layout. `base` is the first token's position,
    /// `ramp_start` the linspace start for this window. The learned slots are cast to `x`'s dtype.
    pub fn assemble(&self, x: Tensor<B, 3>, read: Option<Tensor<B, 3>>, base: usize, ramp_start: f64) -> (Tensor<B, 3>, Layout) {
        let [b, t, d] = x.dims();
        let m = self.tokens();
        let dt = x.dtype().into();
        let learned = || crate::kernels::reference::to(self.init.val(), dt).unsqueeze::<3>().expand([b, m, d]);
        let write = match (&read, self.write_previous) {
            (Some(r), true) => r.clone(),
            _ => learned(),
        };
        let n_read = if read.is_some() { m } else { 0 };
        let parts: Vec<Tensor<B, 3>> = read.into_iter().chain([x, write]).collect();
        let len = n_read + t + m;
        let pos = (0..len)
            .map(|i| {
                let is_token = i >= n_read && i < n_read + t;
                match (self.positioned, is_token) {
                    (true, _) => Some((base + i) as f64),
                    (false, true) => Some((base + i - n_read) as f64),
                    (false, false) => None,
                }
            })
            .collect();
        (Tensor::cat(parts, 1), Layout::new(pos, base as f64, ramp_start))
    }

    /// Splits the last layer's output back into (token states `[b, T, d]`, write slots `[b, M, d]`).
    pub fn split(&self, h: Tensor<B, 3>, had_read: bool) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [_, l, _] = h.dims();
        let m = self.tokens();
        let n_read = if had_read { m } else { 0 };
        let t = l - n_read - m;
        (h.clone().narrow(1, n_read, t), h.narrow(1, n_read + t, m))
    }
}
