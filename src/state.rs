//! `BakaState`: what is carried from one 512-token window to the next (per batch).

use burn::prelude::*;

#[derive(Debug, Clone)]
pub struct BakaState<B: Backend> {
    /// Global position of the current window's first token (0, 512, 1024, …).
    pub offset: usize,
    /// Index of the next window to process.
    pub window: usize,
    /// RMT memory read by the next window `[b, M, d]`; `None` before window 0 or without memory.
    pub memory: Option<Tensor<B, 3>>,
}

impl<B: Backend> Default for BakaState<B> {
    fn default() -> Self {
        Self { offset: 0, window: 0, memory: None }
    }
}

impl<B: Backend> BakaState<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves past a window of `len` tokens; memory is detached at the end of every group of
    /// `bptt_windows` windows (truncated BPTT), so gradients never cross a group boundary.
    pub fn advance(&mut self, len: usize, memory: Option<Tensor<B, 3>>, bptt_windows: usize) {
        self.window += 1;
        self.offset += len;
        self.memory = memory.map(|m| if self.window.is_multiple_of(bptt_windows.max(1)) { m.detach() } else { m });
    }
}
