//! Inference: `baka logits` (JSON logits, for parity checks) and `baka generate` (sampling).

use crate::kernels::ops::BakaOps;
use crate::model::BakaLM;
use crate::state::BakaState;
use anyhow::{bail, Result};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;

fn ids_tensor<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, ids.len()]), device)
}

/// Logits `[n, vocab]` of `ids`, read in windows of `window` tokens with the state carried.
pub fn logits<B: BakaOps>(model: &BakaLM<B>, ids: &[u32], window: usize, device: &B::Device) -> Result<Vec<Vec<f32>>> {
    let v = model.vocab();
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= v) {
        bail!("--tokens: id {bad} is out of range (vocab {v})");
    }
    if window == 0 {
        bail!("--windows-of must be positive");
    }
    let mut state = BakaState::new();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(window) {
        let l = model.forward_window(ids_tensor::<B>(chunk, device), &mut state);
        let flat: Vec<f32> = l.into_data().convert::<f32>().to_vec().expect("f32");
        out.extend(flat.chunks(v).map(<[f32]>::to_vec));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    /// 0 = no top-k filter.
    pub top_k: usize,
    pub seed: u64,
}

/// Picks the next id from the logits of the real vocab (padding rows are never sampled).
fn sample(logits: &[f32], n_real: usize, o: &GenOptions, rng: &mut StdRng) -> u32 {
    let l = &logits[..n_real.min(logits.len())];
    let argmax = || l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0) as u32;
    if o.temperature <= 0.0 {
        return argmax();
    }
    let mut idx: Vec<usize> = (0..l.len()).collect();
    if o.top_k > 0 && o.top_k < l.len() {
        idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        idx.truncate(o.top_k);
    }
    let max = idx.iter().map(|&i| l[i] as f64).fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = idx.iter().map(|&i| ((l[i] as f64 - max) / o.temperature).exp()).collect();
    let mut r = rng.random::<f64>() * w.iter().sum::<f64>();
    for (k, wk) in w.iter().enumerate() {
        r -= wk;
        if r <= 0.0 {
            return idx[k] as u32;
        }
    }
    idx[idx.len() - 1] as u32
}

/// Samples `max_tokens` after `prompt`, streaming decoded text to `out` as it comes. Full windows
/// are committed to the state (memory, offset); the open window is re-read for every token.
pub fn generate<B: BakaOps>(model: &BakaLM<B>, tok: &tokenizers::Tokenizer, prompt: &str, o: &GenOptions, device: &B::Device, out: &mut dyn Write) -> Result<String> {
    let enc = tok.encode(prompt, false).map_err(|e| anyhow::anyhow!("--prompt: cannot encode ({e})"))?;
    let mut cur: Vec<u32> = enc.get_ids().to_vec();
    if cur.is_empty() {
        cur.push(crate::data::tokenizer::eot_id(tok).unwrap_or(0));
    }
    let (w, n_real) = (model.window, tok.get_vocab_size(true));
    let mut state = BakaState::new();
    let mut rng = StdRng::seed_from_u64(o.seed);
    let token_bytes = crate::utf8_stream::TokenBytes::new(tok);
    let mut stream = crate::utf8_stream::Utf8Stream::default();
    let mut new_ids = Vec::new();
    write!(out, "{prompt}")?;
    for _ in 0..o.max_tokens {
        while cur.len() > w {
            model.forward_window(ids_tensor::<B>(&cur[..w], device), &mut state);
            cur.drain(..w);
        }
        let l = model.forward_window(ids_tensor::<B>(&cur, device), &mut state.clone());
        let last: Vec<f32> = l.narrow(1, cur.len() - 1, 1).into_data().convert::<f32>().to_vec().expect("f32");
        let next = sample(&last, n_real, o, &mut rng);
        cur.push(next);
        new_ids.push(next);
        // only whole characters: a token that ends inside one waits for the next
        let text = stream.push(token_bytes.of(next));
        if !text.is_empty() {
            write!(out, "{text}")?;
            out.flush()?;
        }
    }
    writeln!(out, "{}", stream.finish())?;
    Ok(tok.decode(&new_ids, false).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_seeded_and_respects_top_k_and_greedy() {
        let l = [0.1f32, 2.0, 1.9, -1.0, 5.0];
        let g = GenOptions { max_tokens: 1, temperature: 0.0, top_k: 0, seed: 1 };
        assert_eq!(sample(&l, 4, &g, &mut StdRng::seed_from_u64(1)), 1, "padding row 4 must never be chosen");
        let o = GenOptions { temperature: 1.0, top_k: 2, ..g };
        let mut rng = StdRng::seed_from_u64(3);
        let draws: Vec<u32> = (0..200).map(|_| sample(&l, 4, &o, &mut rng)).collect();
        assert!(draws.iter().all(|&d| d == 1 || d == 2));
        assert!(draws.contains(&1) && draws.contains(&2));
        let mut rng2 = StdRng::seed_from_u64(3);
        assert_eq!(draws, (0..200).map(|_| sample(&l, 4, &o, &mut rng2)).collect::<Vec<_>>());
    }
}
