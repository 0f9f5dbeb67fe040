//! Validation loss on the fixed validation set, overall and per window index.

use crate::data::TokenFile;
use crate::model::{token_losses, BakaLM};
use crate::state::BakaState;
use crate::train::batches::{load, val_offsets};
use burn::prelude::*;

#[derive(Debug, Clone)]
pub struct EvalResult {
    /// Mean cross-entropy (nats/token) over all predicted tokens.
    pub loss: f64,
    /// Mean loss of each window index (0-based) inside a sample.
    pub per_window: Vec<f64>,
    /// Tokens predicted.
    pub tokens: usize,
    /// The evaluated (input) token ids, so callers can count bytes for bits-per-byte.
    pub offsets: Vec<usize>,
}

/// Evaluates `samples` chunks of `n_windows` windows, `batch` samples at a time.
pub fn evaluate<B: Backend>(model: &BakaLM<B>, val: &TokenFile, samples: usize, n_windows: usize, batch: usize, device: &B::Device) -> EvalResult {
    let w = model.window;
    let len = n_windows * w;
    let offsets = val_offsets(samples, val.len(), len + 1);
    let mut sums = vec![0f64; n_windows];
    for group in offsets.chunks(batch.max(1)) {
        let (x, y) = load::<B>(val, group, len, device);
        let b = group.len();
        let logits = model.forward_chunk(x, &mut BakaState::new());
        let per = token_losses(logits, y).reshape([b, n_windows, w]).sum_dim(2).sum_dim(0).reshape([n_windows]);
        let per: Vec<f32> = per.into_data().convert::<f32>().to_vec().expect("f32 data");
        sums.iter_mut().zip(per).for_each(|(s, v)| *s += v as f64);
    }
    let per_window: Vec<f64> = sums.iter().map(|s| s / (offsets.len() * w) as f64).collect();
    let loss = per_window.iter().sum::<f64>() / n_windows as f64;
    EvalResult { loss, per_window, tokens: offsets.len() * len, offsets }
}
