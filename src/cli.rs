//! What each `baka` command does, called by main.rs after argument parsing.

use crate::config::{list_branches, read_toml, Config, Source};
use crate::experiment::Experiment;
use crate::train::{self, TrainOptions};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// `baka prepare [EXP] [--set data.k=v]`.
pub fn prepare(experiment: Option<&Path>, sets: &[String]) -> Result<()> {
    let mut layers = Vec::new();
    if let Some(p) = experiment {
        let e = Experiment::load(p)?;
        layers.push((Source::File(p.to_path_buf()), e.overrides.clone()));
    }
    layers.extend(crate::config::set_layers(sets)?);
    let cfg = Config::from_layers(&layers)?;
    let p = crate::data::prepare(&cfg.data, &mut |s| eprintln!("{s}"))?;
    println!("tokenizer {} (vocab {}), train {} tokens, validation {} tokens", p.tokenizer_path.display(), p.vocab_size, p.train.len(), p.val.len());
    Ok(())
}

/// `baka branches`: one line per branch file.
pub fn branches() -> Result<()> {
    for path in list_branches()? {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        let mut t = read_toml(&path)?;
        t.entry("branch").or_insert(toml::Value::String(name.clone()));
        let c = Config::from_layers(&[(Source::File(path.clone()), t)])?;
        let m = &c.model;
        let mem = if c.memory.tokens > 0 { format!("memory {}", c.memory.tokens) } else { "no memory".into() };
        println!("{name:<16} {:<9} {mem:<10} d{} L{} H{} ff{} win{}  {}", m.positions.name(), m.d_model, m.n_layers, m.n_heads, m.d_ff, m.window, c.description);
    }
    Ok(())
}

/// `baka train`.
pub fn train(branch: &str, sets: &[String], out: Option<PathBuf>, resume: bool) -> Result<()> {
    let cfg = Config::load(branch, &[], sets)?;
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-s{}", cfg.branch, cfg.train.seed)));
    let label = format!("{} s{}", cfg.branch, cfg.train.seed);
    // `--gpus N`: this process starts the ranks (copies of itself) and waits for them
    if crate::dist::start_ranks(&[&cfg.train], " (resume with --resume)")? {
        return Ok(());
    }
    let s = train::train(cfg, &TrainOptions { out: out.clone(), resume, label })?;
    if !crate::dist::is_writer() {
        return Ok(());
    }
    println!("{}: {} steps, {} tokens, {:.1} s, final val loss {:.4} (ppl {:.1})", out.display(), s.steps, s.tokens, s.wall_s, s.final_val_loss, s.final_val_loss.exp());
    Ok(())
}

/// `baka experiment EXP [--only B]... [--resume] [--set k=v]...`.
pub fn experiment(path: &Path, opts: &crate::experiment::RunOptions) -> Result<()> {
    let e = Experiment::load(path)?;
    crate::experiment::run(&e, opts)
}

/// `baka plot EXP.toml | RUN_DIR... [--out DIR] [--steps A..B] [--by KEY]...`: charts from the CSVs alone.
pub fn plot(inputs: &[PathBuf], out: Option<PathBuf>, steps: Option<&str>, by: &[String]) -> Result<()> {
    let steps = steps.map(crate::plot::parse_step_range).transpose()?;
    if let [one] = inputs {
        if one.extension().is_some_and(|e| e == "toml") {
            let e = Experiment::load(one)?;
            let dirs = crate::experiment::run_dirs(&e)?;
            return draw_runs(&dirs, by, out.unwrap_or_else(|| Path::new("plots").join(&e.name)), &e.name, steps);
        }
    }
    if inputs.is_empty() {
        anyhow::bail!("baka plot needs an experiment TOML or one or more run directories");
    }
    let name = out.as_ref().and_then(|o| o.file_name()).and_then(|s| s.to_str()).unwrap_or("runs").to_string();
    draw_runs(inputs, by, out.unwrap_or_else(|| PathBuf::from("plots/runs")), &name, steps)
}

fn draw_runs(dirs: &[PathBuf], by: &[String], out: PathBuf, title: &str, steps: Option<(u64, u64)>) -> Result<()> {
    for f in crate::plot::draw_dirs(dirs, by, &out, title, steps)?.1 {
        println!("{}", f.display());
    }
    Ok(())
}

/// `baka report EXP [--steps A..B]`: charts + report.md.
pub fn report(path: &Path, steps: Option<&str>) -> Result<()> {
    let e = Experiment::load(path)?;
    let steps = steps.map(crate::plot::parse_step_range).transpose()?;
    let report = crate::experiment::draw(&e, steps)?;
    println!("{}", report.display());
    Ok(())
}

/// `baka eval`.
pub fn eval(args: &crate::eval::command::EvalArgs) -> Result<()> {
    use crate::eval::command::Outcome;
    let (r, out, replaced) = crate::eval::command::eval_command(args)?;
    match r {
        Outcome::Windows(r) => {
            println!("{}: {} split, {} windows x {} samples, {} tokens", r.source, r.split, r.windows, r.samples, r.tokens);
            println!("loss {:.4} nats/token, ppl {:.2}, {:.4} bits/byte", r.loss, r.ppl, r.bits_per_byte);
            for (i, l) in r.per_window.iter().enumerate() {
                println!("  window {i}: {l:.4}");
            }
        }
        Outcome::Long(r) => {
            let x = &r.result;
            println!("{}: {} scored with one window of {} tokens (trained: {}), {} samples, {} tokens, {} bytes", r.source, r.scored, x.length, r.trained_window, x.samples, x.tokens, x.bytes);
            println!("loss {:.4} nats/token, ppl {:.2}, {:.4} bits/byte", x.loss, r.ppl, x.bits_per_byte);
            for b in &x.buckets {
                println!("  positions {:>6}..{:<6} {:.4}", b.start, b.end, b.loss);
            }
        }
    }
    if let Some(r) = replaced {
        println!("{r}");
    }
    println!("wrote {}", out.display());
    Ok(())
}

/// `baka export`.
pub fn export(run: &Path, out: Option<PathBuf>, force: bool) -> Result<()> {
    let p = crate::export::export(run, out, force)?;
    println!("{}", p.display());
    Ok(())
}

/// `baka logits`: `{"vocab", "window", "tokens", "logits": [[...]]}` on stdout.
pub fn logits(source: &Path, tokens: &[u32], windows_of: Option<usize>) -> Result<()> {
    type B = crate::backend::Cpu;
    let device = Default::default();
    let (_, model) = crate::weights::load_any::<B>(source, &device)?;
    let window = windows_of.unwrap_or(model.window);
    let l = crate::generate::logits(&model, tokens, window, &device)?;
    let j = serde_json::json!({ "vocab": model.vocab(), "window": window, "tokens": tokens, "logits": l });
    println!("{j}");
    Ok(())
}

/// `baka generate`.
pub fn generate(source: &Path, prompt: &str, o: &crate::generate::GenOptions) -> Result<()> {
    type B = crate::backend::Cpu;
    let device = Default::default();
    let (cfg, model) = crate::weights::load_any::<B>(source, &device)?;
    let tok = tokenizer_for(source, &cfg)?;
    crate::generate::generate(&model, &tok, prompt, o, &device, &mut std::io::stdout())?;
    Ok(())
}

/// The tokenizer of a run (its data cache) or of exported weights (`<name>.tokenizer.json`).
fn tokenizer_for(source: &Path, cfg: &Config) -> Result<tokenizers::Tokenizer> {
    let path = if source.is_file() {
        source.with_extension("tokenizer.json")
    } else if source.join("tokenizer.json").is_file() {
        source.join("tokenizer.json") // the tokenizer the run was trained with
    } else {
        crate::data::for_run(&cfg.data, source, &mut |s| eprintln!("{s}"))?.tokenizer_path
    };
    crate::data::load_tokenizer(&path)
}

/// `baka encode SOURCE --text T`: `{"ids": [...]}` with the run's or export's tokenizer.
pub fn encode(source: &Path, text: &str) -> Result<()> {
    let cfg = if source.is_file() { crate::weights::weights_config(source)? } else { Config::from_file(&source.join("config.toml"))? };
    let tok = tokenizer_for(source, &cfg)?;
    let enc = tok.encode(text, false).map_err(|e| anyhow::anyhow!("--text: cannot encode ({e})"))?;
    println!("{}", serde_json::json!({ "ids": enc.get_ids() }));
    Ok(())
}

/// `baka bench`: prints one JSON line.
pub fn bench(branch: &str, sets: &[String], o: &crate::bench::BenchOptions) -> Result<()> {
    let cfg = Config::load(branch, &[], sets)?;
    if crate::dist::start_ranks(&[&cfg.train], "")? {
        return Ok(());
    }
    let line = crate::bench::bench(cfg, o)?;
    if crate::dist::is_writer() {
        println!("{line}");
    }
    Ok(())
}
