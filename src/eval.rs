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

/// `baka eval`: the result as written to `eval_w<N>.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub source: String,
    pub windows: usize,
    pub samples: usize,
    pub tokens: usize,
    pub loss: f64,
    pub ppl: f64,
    pub bits_per_byte: f64,
    pub per_window: Vec<f64>,
}

/// Evaluates a run directory or exported weights on the validation set, with `windows` windows
/// per sample (more than trained = length extrapolation), and writes the JSON next to it.
pub fn eval_command(path: &std::path::Path, windows: Option<usize>, samples: Option<usize>) -> anyhow::Result<(EvalReport, std::path::PathBuf)> {
    type B = crate::backend::Cpu;
    let device = Default::default();
    let (cfg, model) = crate::export::load_any::<B>(path, &device)?;
    let n_windows = windows.unwrap_or(cfg.train.n_windows);
    let samples = samples.unwrap_or(cfg.train.eval_samples);
    if n_windows == 0 || samples == 0 {
        anyhow::bail!("--windows and --samples must be positive");
    }
    let data = crate::data::prepare(&cfg.data, &mut |s| eprintln!("{s}"))?;
    let need = n_windows * model.window + 1;
    if data.val.len() < need {
        anyhow::bail!("{}: {} validation tokens, fewer than {n_windows} windows of {} need ({need})", data.val.path().display(), data.val.len(), model.window);
    }
    let r = evaluate(&model, &data.val, samples, n_windows, cfg.train.batch.max(8), &device);
    let tok = crate::data::load_tokenizer(&data.tokenizer_path)?;
    let lens = crate::data::tokenizer::token_byte_lengths(&tok, data.vocab_size);
    let len = n_windows * model.window;
    let mut buf = vec![0u32; len];
    let bytes: u64 = r.offsets.iter().map(|&o| {
        data.val.read_into(o + 1, &mut buf);
        buf.iter().map(|&t| lens.get(t as usize).copied().unwrap_or(0) as u64).sum::<u64>()
    }).sum();
    let total_nats = r.loss * r.tokens as f64;
    let report = EvalReport {
        source: path.display().to_string(),
        windows: n_windows,
        samples: r.offsets.len(),
        tokens: r.tokens,
        loss: r.loss,
        ppl: r.loss.exp(),
        bits_per_byte: total_nats / std::f64::consts::LN_2 / bytes.max(1) as f64,
        per_window: r.per_window,
    };
    let out = if path.is_dir() { path.join(format!("eval_w{n_windows}.json")) } else { path.with_extension(format!("eval_w{n_windows}.json")) };
    crate::fsutil::write_atomic(&out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok((report, out))
}
