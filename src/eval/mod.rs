//! Evaluation: validation/test loss over samples of consecutive windows (the trainer's), and
//! loss over one attention window of any length L with loss by position ("train short, test
//! long"), on a token file or on any text.

pub mod command;
pub mod text;

use crate::data::batches::{load, val_offsets};
pub use crate::data::Tokens;
use crate::kernels::ops::BakaOps;
use crate::model::BakaLM;
use crate::state::BakaState;

#[derive(Debug, Clone)]
pub struct EvalResult {
    /// Mean cross-entropy (nats/token) over all predicted tokens.
    pub loss: f64,
    /// Mean loss of each window index (0-based) inside a sample.
    pub per_window: Vec<f64>,
    /// Tokens predicted.
    pub tokens: usize,
    /// Offsets of the evaluated samples, so callers can count bytes for bits per byte.
    pub offsets: Vec<usize>,
}

/// Evaluates `samples` chunks of `n_windows` windows, spread evenly over `tokens`, `batch`
/// samples at a time.
pub fn evaluate<B: BakaOps>(model: &BakaLM<B>, tokens: &dyn Tokens, samples: usize, n_windows: usize, batch: usize, device: &B::Device) -> EvalResult {
    let w = model.window;
    let len = n_windows * w;
    let offsets = val_offsets(samples, tokens.count(), len + 1);
    let mut sums = vec![0f64; n_windows];
    for group in offsets.chunks(batch.max(1)) {
        let (x, y) = load::<B>(tokens, group, len, device);
        let b = group.len();
        let per = model.chunk_losses(x, y, &mut BakaState::new()).reshape([b, n_windows, w]).sum_dim(2).sum_dim(0).reshape([n_windows]);
        let per: Vec<f32> = per.into_data().convert::<f32>().to_vec().expect("f32 data");
        sums.iter_mut().zip(per).for_each(|(s, v)| *s += v as f64);
    }
    let per_window: Vec<f64> = sums.iter().map(|s| s / (offsets.len() * w) as f64).collect();
    let loss = per_window.iter().sum::<f64>() / n_windows as f64;
    EvalResult { loss, per_window, tokens: offsets.len() * len, offsets }
}

/// UTF-8 bytes of the targets of samples of `len` tokens at `offsets` (tokens `o+1 ..= o+len`).
pub fn target_bytes(file: &dyn Tokens, offsets: &[usize], len: usize, token_bytes: &[u32]) -> u64 {
    let mut buf = vec![0u32; len];
    offsets
        .iter()
        .map(|&o| {
            file.read_into(o + 1, &mut buf);
            buf.iter().map(|&t| token_bytes.get(t as usize).copied().unwrap_or(0) as u64).sum::<u64>()
        })
        .sum()
}

/// Bits per byte of a mean loss (nats/token) over `tokens` tokens that stand for `bytes` bytes.
pub fn bits_per_byte(loss: f64, tokens: usize, bytes: u64) -> f64 {
    loss * tokens as f64 / std::f64::consts::LN_2 / bytes.max(1) as f64
}

/// The result of [`evaluate_long`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct LongResult {
    /// Tokens in the one attention window of each sample.
    pub length: usize,
    pub samples: usize,
    /// Tokens predicted, and the UTF-8 bytes they stand for.
    pub tokens: usize,
    pub bytes: u64,
    pub loss: f64,
    pub bits_per_byte: f64,
    /// Mean loss of the positions `[start, end)` of the window, in 8 equal buckets.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bucket {
    pub start: usize,
    pub end: usize,
    pub loss: f64,
}

/// The windows of [`evaluate_long`] over `count` tokens: their length (at most `length`, less when
/// the text is shorter) and their offsets. Spans of `span` tokens (at least `length`) are spread
/// evenly over the text, as many as fit in `max_tokens` (at least one), and each is cut into
/// ⌊span / length⌋ consecutive windows: with `span` the longest length of a sweep, every length
/// scores the same tokens, drawn from the whole text rather than its start.
pub fn long_windows(count: usize, length: usize, span: usize, max_tokens: usize) -> (usize, Vec<usize>) {
    let room = count.saturating_sub(1).max(1);
    let (len, span) = (length.min(room).max(1), span.max(length).min(room).max(1));
    let spans = (room / span).min(max_tokens / span).max(1);
    let offsets = val_offsets(spans, count.max(span + 1), span + 1).into_iter().flat_map(|o| (0..span / len).map(move |k| o + k * len)).collect();
    (len, offsets)
}

/// Scores `tokens` with one attention window of `length` tokens per sample, positions restarting
/// at 0 in each, at the windows of [`long_windows`] (spans of `span` tokens spread evenly, at most
/// `max_tokens` tokens; a text shorter than `length` + 1 is one shorter sample), `batch_tokens`
/// tokens per forward pass. `progress` is called with the samples done so far.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_long<B: BakaOps>(
    model: &BakaLM<B>,
    tokens: &dyn Tokens,
    length: usize,
    span: usize,
    max_tokens: usize,
    batch_tokens: usize,
    token_bytes: &[u32],
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> LongResult {
    let (len, offsets) = long_windows(tokens.count(), length, span, max_tokens);
    let n = offsets.len();
    let mut m = model.clone();
    m.window = len;
    let mut pos = vec![0f64; len];
    let batch = (batch_tokens / len).max(1);
    for (i, group) in offsets.chunks(batch).enumerate() {
        let b = group.len();
        let (x, y) = load::<B>(tokens, group, len, device);
        let per: Vec<f32> = m.chunk_losses(x, y, &mut BakaState::new()).sum_dim(0).reshape([len]).into_data().convert::<f32>().to_vec().expect("f32 data");
        pos.iter_mut().zip(per).for_each(|(s, v)| *s += v as f64);
        progress((i * batch + b).min(n));
    }
    let count = n * len;
    let loss = pos.iter().sum::<f64>() / count as f64;
    let bytes = target_bytes(tokens, &offsets, len, token_bytes);
    let k = 8.min(len);
    let buckets = (0..k)
        .map(|j| {
            let (start, end) = (j * len / k, (j + 1) * len / k);
            Bucket { start, end, loss: pos[start..end].iter().sum::<f64>() / ((end - start) * n) as f64 }
        })
        .collect();
    LongResult { length: len, samples: n, tokens: count, bytes, loss, bits_per_byte: bits_per_byte(loss, count, bytes), buckets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::config::MemoryConfig;
    use crate::model::{ModelConfig, PositionKind};

    fn model(kind: PositionKind, memory: usize) -> BakaLM<Cpu> {
        let c = ModelConfig { vocab: 64, d_model: 16, n_layers: 2, n_heads: 2, d_ff: 32, window: 8, positions: kind, ..Default::default() };
        let m = MemoryConfig { tokens: memory, ..Default::default() };
        BakaLM::new(&c, &m, 3, &Default::default())
    }

    fn tokens(n: usize) -> Vec<u32> {
        (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % 64).collect()
    }

    #[test]
    fn one_window_at_the_trained_length_equals_the_samples_eval() {
        let dev = Default::default();
        let toks = tokens(6 * 8 + 1);
        for kind in [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos, PositionKind::Linspace, PositionKind::Alibi] {
            let m = model(kind, 0);
            // 6 samples of one 8-token window: evenly spread over 49 tokens = back to back from 0
            let a = evaluate(&m, &toks, 6, 1, 2, &dev);
            assert_eq!(a.offsets, vec![0, 8, 16, 24, 32, 40]);
            let b = evaluate_long(&m, &toks, 8, 8, 48, 16, &[1; 64], &dev, &mut |_| {});
            assert_eq!((b.samples, b.tokens, b.bytes), (6, 48, 48));
            assert!((a.loss - b.loss).abs() < 1e-6, "{kind:?}: {} vs {}", a.loss, b.loss);
            assert!((b.bits_per_byte - b.loss / std::f64::consts::LN_2).abs() < 1e-9);
        }
    }

    /// Every length of a sweep scores the same tokens, spans spread over the whole text.
    #[test]
    fn long_windows_cover_the_same_spans_at_every_length() {
        // 1,000 tokens, spans of 64 within a budget of 256 tokens: 4 spans over the whole text
        let (len, at64) = long_windows(1000, 64, 64, 256);
        assert_eq!((len, at64.clone()), (64, vec![0, 311, 623, 935]));
        let (len, at16) = long_windows(1000, 16, 64, 256);
        assert_eq!((len, at16.len()), (16, 16));
        let covered = |l: usize, offs: &[usize]| offs.iter().flat_map(|&o| o..o + l).collect::<Vec<_>>();
        assert_eq!(covered(16, &at16), covered(64, &at64), "the same tokens at both lengths");
        // a length that does not divide the span leaves the span's tail out
        assert_eq!(long_windows(1000, 48, 64, 256).1, vec![0, 311, 623, 935]);
        // a text shorter than the span: one span of what there is
        assert_eq!(long_windows(40, 16, 64, 256), (16, vec![0, 16]));
        assert_eq!(long_windows(5, 512, 512, 1 << 20), (4, vec![0]));
    }

    #[test]
    fn longer_windows_than_trained_give_finite_losses_for_every_scheme() {
        let dev = Default::default();
        let toks = tokens(4 * 32 + 1);
        for (kind, mem) in [(PositionKind::Nope, 0), (PositionKind::Rope, 0), (PositionKind::Xpos, 0), (PositionKind::Linspace, 0), (PositionKind::Alibi, 0), (PositionKind::Rope, 4)] {
            let m = model(kind, mem);
            for l in [16, 32] {
                let r = evaluate_long(&m, &toks, l, 32, 1 << 20, 64, &[2; 64], &dev, &mut |_| {});
                assert_eq!(r.length, l);
                assert!(r.loss.is_finite() && r.loss > 0.0, "{kind:?} memory {mem} L {l}: {}", r.loss);
                assert_eq!(r.buckets.len(), 8);
                let mean = r.buckets.iter().map(|b| b.loss).sum::<f64>() / 8.0;
                assert!((mean - r.loss).abs() < 1e-6, "equal buckets average to the loss");
            }
        }
        // a text shorter than the window is one shorter sample
        let r = evaluate_long(&model(PositionKind::Rope, 0), &tokens(5), 512, 512, 1 << 20, 64, &[1; 64], &dev, &mut |_| {});
        assert_eq!((r.length, r.samples, r.tokens), (4, 1, 4));
    }
}
