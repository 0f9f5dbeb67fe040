//! The training loop: sample → forward over the windows → loss → backward → clip → AdamW,
//! with evaluation, CSV rows, checkpoints and resume.

use super::adamw::AdamW;
use super::checkpoint::{self, CkptState};
use super::metrics::{f, CsvLog, EVAL_HEADER, METRICS_HEADER};
use super::optim::lr_at;
use super::step::{train_step_marked, PendingStats, StepStats};
use crate::config::Config;
use crate::data::batches::{load, train_offsets};
use crate::data::{self, Prepared};
use crate::eval::{bits_per_byte, evaluate, target_bytes};
use crate::fsutil::{create_dir, write_atomic};
use crate::kernels::ops::TrainOps;
use crate::model::{padded_vocab, param_count, BakaLM};
use anyhow::{bail, Result};
use burn::module::AutodiffModule;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Prefix of the progress bar (e.g. "[3/12] 002_nope s1").
    pub label: String,
}

/// `<run>/run.json`, written when a run finishes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub branch: String,
    pub seed: u64,
    pub finished: bool,
    pub steps: usize,
    pub tokens: u64,
    pub wall_s: f64,
    pub final_val_loss: f64,
    pub params: usize,
    pub config_sha256: String,
    /// Loss on the test split (`train.test_samples` samples), and bits per byte of both splits.
    #[serde(default)]
    pub test_loss: Option<f64>,
    #[serde(default)]
    pub val_bits_per_byte: Option<f64>,
    #[serde(default)]
    pub test_bits_per_byte: Option<f64>,
    /// Parameters outside the embedding and the LM head, and the training split's tokens: the
    /// run's scale (tokens per parameter, epochs). Absent in runs from before 2026-12-04.
    #[serde(default)]
    pub non_embedding_params: Option<usize>,
    #[serde(default)]
    pub train_split_tokens: Option<u64>,
}

fn sha256_text(s: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

/// Prepares the data and resolves what depends on it (the vocab), checking that samples fit.
pub fn prepare_run(mut cfg: Config) -> Result<(Config, Prepared)> {
    let writer = crate::dist::is_writer(); // the other ranks of a multi-GPU run say nothing
    let prepared = data::prepare(&cfg.data, &mut |s| {
        if writer {
            eprintln!("{s}")
        }
    })?;
    let tok_vocab = prepared.vocab_size;
    if cfg.model.vocab == 0 {
        cfg.model.vocab = padded_vocab(tok_vocab);
    } else if cfg.model.vocab < tok_vocab {
        bail!("model.vocab = {} is smaller than the vocab of {} ({tok_vocab} ids)", cfg.model.vocab, prepared.train.path().display());
    }
    let need = cfg.train.n_windows * cfg.model.window + 1;
    for (name, file) in [("train", &prepared.train), ("validation", &prepared.val), ("test", &prepared.test)] {
        if file.len() < need {
            bail!("{}: the {name} split has {} tokens, fewer than one sample needs (train.n_windows × model.window + 1 = {need})", file.path().display(), file.len());
        }
    }
    Ok((cfg, prepared))
}

/// Trains one run into `opts.out`. Refuses to overwrite an existing run unless resuming. Among
/// several ranks (`crate::dist`) each trains its share and rank 0 alone writes the run's files.
pub fn train(cfg: Config, opts: &TrainOptions) -> Result<RunSummary> {
    crate::backend::check_device(&cfg.train)?;
    crate::dist::join_ranks(cfg.train.gpus, cfg.train.device, "train")?;
    let writer = crate::dist::is_writer();
    // rank 0 prepares (and caches) the data first; the others then find it prepared
    if !writer {
        crate::dist::barrier()?;
    }
    let (cfg, prepared) = prepare_run(cfg)?;
    if writer {
        crate::dist::barrier()?;
    }
    let out = &opts.out;
    let text = cfg.to_toml();
    let cfg_sha = run_identity(&cfg);
    let resume_from = if !writer {
        crate::dist::barrier()?; // rank 0 has checked the directory
        match (opts.resume, checkpoint::latest(out)) {
            (true, Some(dir)) => Some((dir.clone(), checkpoint::read_state(&dir)?)),
            _ => None,
        }
    } else if opts.resume {
        match checkpoint::latest(out) {
            Some(dir) => {
                let state = checkpoint::read_state(&dir)?;
                if state.config_sha256 != cfg_sha && !same_run_as_written(out, &cfg) {
                    let old = std::fs::read_to_string(out.join("config.toml")).unwrap_or_default();
                    bail!("{}: cannot resume with a changed config ({}); use the same settings or a new --out", out.display(), config_diff(&old, &text));
                }
                Some((dir, state))
            }
            None if out.join("metrics.csv").exists() => bail!("{}: no checkpoint to resume from (the run stopped before its first checkpoint); remove the directory to start over", out.display()),
            None => None,
        }
    } else {
        if out.join("metrics.csv").exists() || out.join("checkpoint").exists() {
            bail!("{}: already holds a run; pass --resume to continue it, or choose another --out", out.display());
        }
        None
    };
    if writer {
        crate::dist::barrier()?;
        create_dir(out)?;
        // the run keeps the tokenizer it is trained with; a resumed run must find the same one
        data::run_cache::keep_tokenizer(out, &prepared.tokenizer_path)?;
        write_atomic(&out.join("config.toml"), text.as_bytes())?;
    }
    let device = cfg.train.device;
    crate::with_train_backend!(device, |B, dev| run::<B>(&cfg, &prepared, opts, resume_from, cfg_sha, &dev))
}

/// The hash that identifies a run's config: without `train.steps` (which may grow on resume)
/// and `train.gpus` (the ranks change how a step is computed, not which).
fn run_identity(cfg: &Config) -> String {
    sha256_text(&Config { train: identifying(&cfg.train), ..cfg.clone() }.to_toml())
}

/// The settings that make a run what it is: `t` without `train.steps` and `train.gpus`.
fn identifying(t: &crate::config::TrainConfig) -> crate::config::TrainConfig {
    crate::config::TrainConfig { steps: 0, gpus: 1, ..t.clone() }
}

/// Whether the run's own `config.toml` (written by an earlier version, whose resolved config
/// spelled the kernel settings out one by one) describes the same run as `cfg`: equal once the
/// kernels are resolved and what does not identify a run ([`identifying`]) is left out.
fn same_run_as_written(out: &Path, cfg: &Config) -> bool {
    let normal = |c: &Config| {
        let t = &c.train;
        let train = crate::config::TrainConfig { kernels: Default::default(), ..identifying(&t.without_overrides()) };
        (Config { train, ..c.clone() }, t.kernels(), t.fused_adamw())
    };
    Config::from_file(&out.join("config.toml")).is_ok_and(|old| normal(&old) == normal(cfg))
}

fn config_diff(old: &str, new: &str) -> String {
    let flat = |s: &str| -> Vec<(String, String)> {
        let mut v = Vec::new();
        let mut sect = String::new();
        for l in s.lines() {
            if l.starts_with('[') {
                sect = l.trim_matches(['[', ']']).to_string() + ".";
            } else if let Some((k, val)) = l.split_once(" = ") {
                v.push((format!("{sect}{k}"), val.to_string()));
            }
        }
        v
    };
    let (o, n) = (flat(old), flat(new));
    let diffs: Vec<String> = n.iter().filter(|kv| !o.contains(kv) && kv.0 != "train.steps").map(|(k, v)| format!("{k} is now {v}")).take(3).collect();
    if diffs.is_empty() {
        "config.toml differs".into()
    } else {
        diffs.join(", ")
    }
}

fn progress(steps: usize, start: usize, label: &str) -> ProgressBar {
    let pb = crate::progress::bar(steps as u64, label);
    pb.set_position(start as u64);
    pb
}

fn run<B: TrainOps>(cfg: &Config, data: &Prepared, opts: &TrainOptions, resume: Option<(PathBuf, CkptState)>, cfg_sha: String, dev: &B::Device) -> Result<RunSummary> {
    let t = &cfg.train;
    let (out, w) = (&opts.out, cfg.model.window);
    let len = t.n_windows * w;
    let mut model = BakaLM::<B>::new(&cfg.model, &cfg.memory, t.seed, dev).with_kernels(t.dtype.float(), t.kernels());
    let mut optim = AdamW::<B>::new(t);
    let (mut step0, mut tokens, mut elapsed0) = (0usize, 0u64, 0f64);
    let (writer, rank, ranks) = (crate::dist::is_writer(), crate::dist::rank(), crate::dist::size());
    if let Some((dir, st)) = &resume {
        model = checkpoint::load_model(dir, model, dev)?;
        optim = checkpoint::load_optim(dir, optim, dev)?;
        (step0, tokens, elapsed0) = (st.step, st.tokens, st.elapsed_s);
        if writer {
            eprintln!("resuming {} from step {} ({})", out.display(), st.step, dir.display());
        }
    }
    let keep = resume.as_ref().map(|(_, s)| s.step as u64);
    let open = |name: &str, header: &str| if writer { CsvLog::open(&out.join(name), header, keep) } else { Ok(CsvLog::discard()) };
    let (mut metrics, mut evals) = (open("metrics.csv", METRICS_HEADER)?, open("eval.csv", EVAL_HEADER)?);
    let started = Instant::now();
    let elapsed = || elapsed0 + started.elapsed().as_secs_f64();
    // rank 0 evaluates alone: at the batch one rank trains with
    let eval_batch = (t.batch / ranks).max(8);
    // rank 0 evaluates; the others wait for it at the next step's all-reduce
    let do_eval = |model: &BakaLM<B>, step: usize, tokens: u64, metrics: &mut CsvLog, evals: &mut CsvLog| -> Result<f64> {
        if !writer {
            return Ok(f64::NAN);
        }
        let r = evaluate(&model.valid(), &data.val, t.eval_samples, t.n_windows, eval_batch, dev);
        let lr = lr_at(t, step.max(1));
        metrics.row(&[step.to_string(), tokens.to_string(), format!("{:.3}", elapsed()), "val".into(), f(r.loss as f32), format!("{lr:e}"), String::new(), String::new()])?;
        for (i, l) in r.per_window.iter().enumerate() {
            evals.row(&[step.to_string(), i.to_string(), f(*l as f32)])?;
        }
        Ok(r.loss)
    };
    let (mut last_val, mut val_step) = (f64::NAN, step0);
    if step0 == 0 {
        last_val = do_eval(&model, 0, 0, &mut metrics, &mut evals)?;
    }
    for note in cfg.kernel_fallbacks().into_iter().filter(|_| writer) {
        eprintln!("{} kernels: {note}", opts.label);
    }
    let pb = if writer { progress(t.steps, step0, &opts.label) } else { ProgressBar::hidden() };
    let plain_every = (t.steps / 10).max(1);
    let ckpt = |model: &BakaLM<B>, optim: &_, step: usize, tokens: u64, el: f64| {
        let st = CkptState { format: 1, step, tokens, elapsed_s: el, config_sha256: cfg_sha.clone(), model_sha256: String::new(), optim_sha256: String::new() };
        checkpoint::save(out, model, optim, st)
    };
    // A step's stats still on the device are read after the next step is queued
    // (`StepStats::later`), so the GPU never waits for the host between steps; an eval or
    // checkpoint step, and the last, is read at once (and on the CPU every step).
    let mut pending: Option<(usize, f64, PendingStats)> = None;
    // when the last (up to 8) steps were read, since the last eval or checkpoint: tok/s over them
    let mut read_at: std::collections::VecDeque<Instant> = [Instant::now()].into();
    // the step's metrics row; returns (loss, tok/s)
    let finish = |step: usize, lr: f64, stats: PendingStats, optim: &mut AdamW<B>, tokens: &mut u64, metrics: &mut CsvLog, read_at: &mut std::collections::VecDeque<Instant>| -> Result<(f32, f64)> {
        let (loss_v, norm_v) = stats.wait(optim);
        if (!loss_v.is_finite() || !norm_v.is_finite()) && !t.skip_spikes {
            let what = if loss_v.is_finite() { format!("gradient norm is {norm_v}") } else { format!("training loss is {loss_v}") };
            pb.abandon();
            bail!("{}: step {step}: {what}; stopped (last good checkpoint kept; lower train.lr, or set train.skip_spikes = true to skip such steps)", out.display());
        }
        *tokens += (t.batch * len) as u64;
        read_at.push_back(Instant::now());
        if read_at.len() > 9 {
            read_at.pop_front();
        }
        let tps = ((read_at.len() - 1) * t.batch * len) as f64 / (read_at[read_at.len() - 1] - read_at[0]).as_secs_f64();
        crate::faults::hit("before-metrics-row");
        metrics.row(&[step.to_string(), tokens.to_string(), format!("{:.3}", elapsed()), "train".into(), f(loss_v), format!("{lr:e}"), f(norm_v), format!("{tps:.1}")])?;
        crate::faults::hit("after-metrics-row");
        Ok((loss_v, tps))
    };
    // the validation loss is only as new as the last eval: its step is shown with it
    let show = |step: usize, (loss_v, tps): (f32, f64), last_val: f64, val_step: usize| {
        let val = if last_val.is_nan() { "val –".to_string() } else { format!("val {last_val:.3} @{val_step}") };
        pb.set_message(format!("loss {loss_v:.3} | {val} | {:.0} tok/s", tps));
        pb.inc(1);
        if writer && pb.is_hidden() && (step.is_multiple_of(plain_every) || step == t.steps) {
            eprintln!("{} step {step}/{} loss {loss_v:.4} {val} {tps:.0} tok/s", opts.label, t.steps);
        }
    };
    for step in step0 + 1..=t.steps {
        // the step's samples are the same for any number of ranks; rank r takes the r-th share
        let all = train_offsets(t.seed, step, t.batch, data.train.len(), len + 1);
        let share = t.batch / ranks;
        let (x, y) = load::<B>(&data.train, &all[rank * share..(rank + 1) * share], len, dev);
        let lr = lr_at(t, step);
        let (next, stats) = train_step_marked(model, &mut optim, x, y, lr, t, &mut |_| {})?;
        model = next;
        if let Some((s, l, p)) = pending.take() {
            let shown = finish(s, l, p, &mut optim, &mut tokens, &mut metrics, &mut read_at)?;
            show(s, shown, last_val, val_step);
        }
        let eval_now = step == t.steps || (t.eval_every > 0 && step % t.eval_every == 0);
        let ckpt_now = step == t.steps || (t.checkpoint_every > 0 && step % t.checkpoint_every == 0);
        if matches!(stats, StepStats::OnDevice(_)) && !(eval_now || ckpt_now) {
            pending = Some((step, lr, stats.later()));
            continue;
        }
        let shown = finish(step, lr, stats.now(), &mut optim, &mut tokens, &mut metrics, &mut read_at)?;
        if eval_now {
            last_val = do_eval(&model, step, tokens, &mut metrics, &mut evals)?;
            val_step = step;
        }
        // several ranks: the same weights on each, checked at every eval and checkpoint
        if eval_now || ckpt_now {
            crate::dist::grads::check_same_weights(&model, step)?;
        }
        if ckpt_now && writer {
            ckpt(&model, &optim, step, tokens, elapsed())?;
            crate::faults::hit("after-checkpoint");
        }
        read_at = [Instant::now()].into();
        show(step, shown, last_val, val_step);
    }
    pb.finish_and_clear();
    // the run as trained, before rank 0 scores it (what the other ranks return)
    let trained = RunSummary {
        branch: cfg.branch.clone(),
        seed: t.seed,
        finished: true,
        steps: t.steps,
        tokens,
        wall_s: elapsed(),
        final_val_loss: f64::NAN,
        params: param_count(&cfg.model, &cfg.memory),
        config_sha256: cfg_sha,
        test_loss: None,
        val_bits_per_byte: None,
        test_bits_per_byte: None,
        non_embedding_params: None,
        train_split_tokens: None,
    };
    if !writer {
        return Ok(trained);
    }
    if last_val.is_nan() {
        // resumed after the final step: recompute for the summary
        last_val = evaluate(&model.valid(), &data.val, t.eval_samples, t.n_windows, eval_batch, dev).loss;
    }
    // the final numbers: the held-out test split, once, and bits per byte of both splits
    let test = evaluate(&model.valid(), &data.test, t.test_samples, t.n_windows, eval_batch, dev);
    metrics.row(&[
        t.steps.to_string(),
        tokens.to_string(),
        format!("{:.3}", elapsed()),
        "test".into(),
        f(test.loss as f32),
        format!("{:e}", lr_at(t, t.steps.max(1))),
        String::new(),
        String::new(),
    ])?;
    let test_bpb = bits_per_byte(test.loss, test.tokens, target_bytes(&data.test, &test.offsets, len, &data.token_bytes));
    let val_offsets = crate::data::batches::val_offsets(t.eval_samples, data.val.len(), len + 1);
    let val_bpb = bits_per_byte(last_val, val_offsets.len() * len, target_bytes(&data.val, &val_offsets, len, &data.token_bytes));
    let params = trained.params;
    let summary = RunSummary {
        wall_s: elapsed(),
        final_val_loss: last_val,
        test_loss: Some(test.loss),
        val_bits_per_byte: Some(val_bpb),
        test_bits_per_byte: Some(test_bpb),
        non_embedding_params: Some(params - 2 * cfg.model.vocab * cfg.model.d_model),
        train_split_tokens: Some(data.train.len() as u64),
        ..trained
    };
    write_atomic(&out.join("run.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    Ok(summary)
}

/// Reads `<run>/run.json` if the run finished.
pub fn finished(run: &Path) -> Option<RunSummary> {
    let s = std::fs::read_to_string(run.join("run.json")).ok()?;
    serde_json::from_str::<RunSummary>(&s).ok().filter(|s| s.finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run written before 2026-12-03 spelled every kernel out (`matmul = "cublas"`, …); resumed
    /// with today's defaults (`kernels = "fast"`, nothing spelled out) it is the same run.
    #[test]
    fn a_run_written_with_the_old_kernel_keys_is_the_same_run() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-2026-12-02/run");
        let old = Config::from_file(&dir.join("config.toml")).unwrap();
        assert!(old.train.matmul.is_some() && old.train.attention.is_some(), "the fixture spells its kernels out");
        let t = crate::config::TrainConfig { matmul: None, attention: None, embedding: None, layernorm: None, gate: None, adamw: None, ce: None, ..old.train.clone() };
        let now = Config { train: t.clone(), ..old.clone() };
        assert!(same_run_as_written(&dir, &now));
        assert!(same_run_as_written(&dir, &Config { train: crate::config::TrainConfig { steps: 99, ..t.clone() }, ..old.clone() }), "steps may grow on resume");
        assert!(!same_run_as_written(&dir, &Config { train: crate::config::TrainConfig { lr: 0.5, ..t.clone() }, ..old.clone() }));
        let reference = crate::config::TrainConfig { kernels: crate::kernels::ops::KernelSet::Reference, ..t };
        assert!(!same_run_as_written(&dir, &Config { train: reference, ..old }), "other kernels are another run");
    }
}
