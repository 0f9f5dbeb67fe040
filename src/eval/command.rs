//! `baka eval` and the experiment's extrapolation evaluations: load a run or an export, score it,
//! write the JSON next to it (saying what it replaced).

use super::{bits_per_byte, evaluate, evaluate_long, long_windows, target_bytes, LongResult, Tokens};
use crate::config::Config;
use crate::data::Prepared;
use crate::kernels::ops::{BakaOps, Ce, Kernels};
use crate::model::BakaLM;
use anyhow::{bail, Result};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which held-out split `baka eval` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The validation split (what the training curves use).
    Val,
    /// The test split (the final numbers).
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Val => "val",
            Split::Test => "test",
        }
    }
    fn file(self, d: &Prepared) -> &crate::data::TokenFile {
        match self {
            Split::Val => &d.val,
            Split::Test => &d.test,
        }
    }
}

/// What `baka eval` was asked.
#[derive(Debug, Clone)]
pub struct EvalArgs {
    pub source: PathBuf,
    /// Samples of this many consecutive windows (the trainer's evaluation).
    pub windows: Option<usize>,
    /// One attention window of this many tokens per sample.
    pub window: Option<usize>,
    pub samples: Option<usize>,
    /// Score this text instead of a split.
    pub text: Option<PathBuf>,
    pub split: Split,
    /// At most this many tokens in `--window`/`--text` mode.
    pub max_tokens: usize,
    pub device: crate::config::Device,
}

/// The samples-of-windows result, as written to `eval-<split>-w<N>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub source: String,
    pub split: String,
    pub windows: usize,
    pub samples: usize,
    pub tokens: usize,
    pub loss: f64,
    pub ppl: f64,
    pub bits_per_byte: f64,
    pub per_window: Vec<f64>,
}

/// A `--window`/`--text` result, as written to its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct LongReport {
    pub source: String,
    /// "val", "test" or the scored text's path.
    pub scored: String,
    /// The window the model was trained with.
    pub trained_window: usize,
    pub ppl: f64,
    #[serde(flatten)]
    pub result: LongResult,
}

/// What `baka eval` printed and wrote.
pub enum Outcome {
    Windows(EvalReport),
    Long(LongReport),
}

/// Runs `baka eval`; returns what to print, the file written and the file it replaced (if any).
pub fn eval_command(a: &EvalArgs) -> Result<(Outcome, PathBuf, Option<String>)> {
    if a.windows.is_some() && (a.window.is_some() || a.text.is_some()) {
        bail!("--windows (samples of consecutive windows) cannot be combined with --window or --text (one window of L tokens)");
    }
    for (k, v) in [("--windows", a.windows), ("--window", a.window), ("--samples", a.samples)] {
        if v == Some(0) {
            bail!("{k} 0: expected a positive number");
        }
    }
    if a.max_tokens == 0 {
        bail!("--max-tokens 0: expected a positive number");
    }
    let (cfg, _) = source_config(&a.source)?;
    crate::backend::check_device(&crate::config::TrainConfig { device: a.device, ..cfg.train.clone() })?;
    crate::with_infer_backend!(a.device, |B, dev| run::<B>(a, &dev))
}

fn run<B: BakaOps>(a: &EvalArgs, dev: &B::Device) -> Result<(Outcome, PathBuf, Option<String>)> {
    let (cfg, model) = load::<B>(&a.source, dev)?;
    let data = data_of(&a.source, &cfg, &mut |s| eprintln!("{s}"))?;
    let stem = if a.source.is_dir() { a.source.clone() } else { a.source.with_extension("") };
    if a.window.is_none() && a.text.is_none() {
        let n_windows = a.windows.unwrap_or(cfg.train.n_windows);
        // as many samples as the run's own numbers: its final test loss, its validation curve
        let samples = a.samples.unwrap_or(match a.split {
            Split::Test => cfg.train.test_samples,
            Split::Val => cfg.train.eval_samples,
        });
        let file = a.split.file(&data);
        let need = n_windows * model.window + 1;
        if file.len() < need {
            bail!("{}: {} tokens, fewer than {n_windows} windows of {} need ({need})", file.path().display(), file.len(), model.window);
        }
        let r = evaluate(&model, file, samples, n_windows, cfg.train.batch.max(8), dev);
        let bytes = target_bytes(file, &r.offsets, n_windows * model.window, &data.token_bytes);
        let report = EvalReport {
            source: a.source.display().to_string(),
            split: a.split.name().into(),
            windows: n_windows,
            samples: r.offsets.len(),
            tokens: r.tokens,
            loss: r.loss,
            ppl: r.loss.exp(),
            bits_per_byte: bits_per_byte(r.loss, r.tokens, bytes),
            per_window: r.per_window,
        };
        let out = out_path(&stem, &format!("eval-{}-w{n_windows}.json", a.split.name()));
        let replaced = write_json(&out, &report)?;
        return Ok((Outcome::Windows(report), out, replaced));
    }
    let length = a.window.unwrap_or(model.window);
    let batch_tokens = cfg.train.batch.max(8) * cfg.train.n_windows * cfg.model.window;
    let text_ids;
    let (tokens, scored, name): (&dyn Tokens, String, String) = match &a.text {
        Some(t) => {
            let tok = crate::data::load_tokenizer(&data.tokenizer_path)?;
            text_ids = super::text::tokens_of(t, &tok, data.eot_id)?;
            let label = t.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "text".into());
            (&text_ids, t.display().to_string(), format!("eval-text-{label}-L{length}.json"))
        }
        None => (a.split.file(&data), a.split.name().to_string(), format!("eval-{}-L{length}.json", a.split.name())),
    };
    let n = long_windows(tokens.count(), length, length, a.max_tokens).1.len();
    let pb = crate::progress::bar(n as u64, &format!("eval L={length}"));
    let result = evaluate_long(&model, tokens, length, length, a.max_tokens, batch_tokens, &data.token_bytes, dev, &mut |done| pb.set_position(done as u64));
    pb.finish_and_clear();
    let report = LongReport { source: a.source.display().to_string(), scored, trained_window: cfg.model.window, ppl: result.loss.exp(), result };
    let out = out_path(&stem, &name);
    let replaced = write_json(&out, &report)?;
    Ok((Outcome::Long(report), out, replaced))
}

/// The data of a run directory (its project's cache, its own tokenizer checked) or of an export.
fn data_of(source: &Path, cfg: &Config, log: &mut dyn FnMut(&str)) -> Result<Prepared> {
    if source.is_dir() {
        return crate::data::for_run(&cfg.data, source, log);
    }
    let p = crate::data::prepare(&cfg.data, log)?;
    let own = source.with_extension("tokenizer.json");
    if own.is_file() && crate::fsutil::sha256_file(&own)? != crate::fsutil::sha256_file(&p.tokenizer_path)? {
        bail!("{}: the data cache's tokenizer differs from the export's {}", p.tokenizer_path.display(), own.display());
    }
    Ok(p)
}

/// The config of a run directory or an export, without loading the weights.
fn source_config(source: &Path) -> Result<(Config, bool)> {
    if source.is_dir() {
        let p = source.join("config.toml");
        if !p.is_file() {
            bail!("{}: not a run directory (no config.toml)", source.display());
        }
        Ok((Config::from_file(&p)?, true))
    } else if source.extension().is_some_and(|e| e == "safetensors") && source.is_file() {
        Ok((crate::weights::weights_config(source)?, false))
    } else if !source.exists() {
        bail!("{}: no such run directory or weights file", source.display())
    } else {
        bail!("{}: expected a run directory or a .safetensors file", source.display())
    }
}

/// The model of a run or export, computing in the dtype it was trained with (on the CPU with the
/// LM head and the loss as one pass).
fn load<B: Backend>(source: &Path, dev: &B::Device) -> Result<(Config, BakaLM<B>)> {
    let (cfg, model) = crate::weights::load_any::<B>(source, dev)?;
    let kernels = Kernels { ce: Ce::Chunked, ..Kernels::REFERENCE };
    let dtype = cfg.train.dtype.float();
    Ok((cfg, model.with_kernels(dtype, kernels)))
}

fn out_path(stem: &Path, name: &str) -> PathBuf {
    if stem.is_dir() {
        stem.join(name)
    } else {
        let base = stem.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        stem.with_file_name(format!("{base}.{name}"))
    }
}

/// Writes `value` as JSON to `path` atomically; returns a line saying what it replaced, if the
/// file existed (nothing that exists is replaced without saying so).
fn write_json(path: &Path, value: &impl Serialize) -> Result<Option<String>> {
    let before = std::fs::read_to_string(path).ok();
    crate::fsutil::write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())?;
    Ok(before.map(|old| {
        let loss = serde_json::from_str::<serde_json::Value>(&old).ok().and_then(|v| v.get("loss").and_then(|l| l.as_f64()));
        match loss {
            Some(l) => format!("replaced {} (it held loss {l:.4})", path.display()),
            None => format!("replaced {}", path.display()),
        }
    }))
}

/// `extrapolation.json` of a run: the loss at each evaluation length.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extrapolation {
    pub split: String,
    pub points: Vec<ExtraPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtraPoint {
    pub length: usize,
    pub samples: usize,
    pub tokens: usize,
    pub loss: f64,
    pub bits_per_byte: f64,
    /// (start, end, loss) of 8 equal position buckets.
    pub buckets: Vec<(usize, usize, f64)>,
}

/// Tokens of the test split scored at every length: as many as the run's final test loss uses
/// (`train.test_samples` samples), rounded up to a multiple of the longest length, so every
/// length is scored on the same spans of the test split (`long_windows`).
pub fn extrapolation_budget(lengths: &[usize], test_tokens: usize) -> usize {
    let longest = lengths.iter().copied().max().unwrap_or(1).max(1);
    longest * test_tokens.max(1).div_ceil(longest)
}

/// Scores a finished run on the test split at each of `lengths` missing from its
/// `extrapolation.json`, on the run's device, and adds them to the file.
pub fn extrapolate(run: &Path, lengths: &[usize], log: &mut dyn FnMut(&str)) -> Result<()> {
    let path = run.join("extrapolation.json");
    let mut have: Extrapolation = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| anyhow::anyhow!("{}: {e}; delete it to evaluate again", path.display()))?,
        Err(_) => Extrapolation { split: "test".into(), points: vec![] },
    };
    let todo: Vec<usize> = lengths.iter().copied().filter(|l| !have.points.iter().any(|p| p.length == *l)).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let (cfg, _) = source_config(run)?;
    let device = cfg.train.device;
    if device.is_cuda() {
        // the settings' check of `check_device`; the memory pools stay the process's (an
        // experiment scores many runs in one process)
        crate::kernels::env::check().map_err(anyhow::Error::msg)?;
    }
    let budget = extrapolation_budget(lengths, cfg.train.test_samples * cfg.train.n_windows * cfg.model.window);
    let longest = lengths.iter().copied().max().unwrap_or(1);
    let points: Vec<ExtraPoint> = crate::with_infer_backend!(device, |B, dev| {
        let (cfg, model) = load::<B>(run, &dev)?;
        let data = crate::data::for_run(&cfg.data, run, &mut |_| {})?;
        let batch_tokens = cfg.train.batch.max(8) * cfg.train.n_windows * cfg.model.window;
        let mut out = vec![];
        for &l in &todo {
            let r = evaluate_long(&model, &data.test, l, longest, budget, batch_tokens, &data.token_bytes, &dev, &mut |_| {});
            log(&format!("{}: L = {l}: {:.4} nats/token, {:.4} bits/byte", run.display(), r.loss, r.bits_per_byte));
            out.push(ExtraPoint {
                length: r.length,
                samples: r.samples,
                tokens: r.tokens,
                loss: r.loss,
                bits_per_byte: r.bits_per_byte,
                buckets: r.buckets.iter().map(|b| (b.start, b.end, b.loss)).collect(),
            });
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    have.points.extend(points);
    have.points.sort_by_key(|p| p.length);
    crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&have)?.as_bytes())
}
