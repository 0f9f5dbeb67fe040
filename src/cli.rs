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
    for s in sets {
        let (k, v) = crate::config::parse_set(s)?;
        let mut t = toml::Table::new();
        crate::config::set_dotted(&mut t, &k, v);
        layers.push((Source::Set(s.clone()), t));
    }
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
    let s = train::train(cfg, &TrainOptions { out: out.clone(), resume, label })?;
    println!("{}: {} steps, {} tokens, {:.1} s, final val loss {:.4} (ppl {:.1})", out.display(), s.steps, s.tokens, s.wall_s, s.final_val_loss, s.final_val_loss.exp());
    Ok(())
}
