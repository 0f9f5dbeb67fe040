//! Model weights on disk, below training, evaluation and export: run checkpoints
//! ([`checkpoint`], with [`legacy`] layouts) and exported safetensors files ([`named`]).

pub mod checkpoint;
mod legacy;
pub mod named;

use crate::config::Config;
use crate::model::BakaLM;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use std::path::Path;

pub use named::{load_weights, named_tensors, torch_name, weights_config, FORMAT};

/// Loads a finished (or checkpointed) run directory: its config.toml and latest checkpoint.
pub fn load_run<B: Backend>(run: &Path, device: &B::Device) -> Result<(Config, BakaLM<B>)> {
    let cfg_path = run.join("config.toml");
    if !cfg_path.is_file() {
        bail!("{}: not a run directory (no config.toml)", run.display());
    }
    let cfg = Config::from_file(&cfg_path)?;
    let ckpt = checkpoint::latest(run).with_context(|| format!("{}: no checkpoint (did the run finish its first checkpoint?)", run.display()))?;
    checkpoint::read_state(&ckpt)?;
    let model = checkpoint::load_model(&ckpt, BakaLM::new(&cfg.model, &cfg.memory, cfg.train.seed, device), device)?;
    Ok((cfg, model))
}

/// A run directory or an exported `.safetensors` file.
pub fn load_any<B: Backend>(path: &Path, device: &B::Device) -> Result<(Config, BakaLM<B>)> {
    if path.is_dir() {
        load_run(path, device)
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        load_weights(path, device)
    } else if !path.exists() {
        bail!("{}: no such run directory or weights file", path.display())
    } else {
        bail!("{}: expected a run directory or a .safetensors file", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_map() {
        assert_eq!(torch_name("layers.3.attn.q.weight"), ("layers.3.attn.q.weight".into(), true));
        assert_eq!(torch_name("layers.0.attn_norm.layer.gamma"), ("layers.0.attn_norm.weight".into(), false));
        assert_eq!(torch_name("layers.0.attn_norm.layer.beta"), ("layers.0.attn_norm.bias".into(), false));
        assert_eq!(torch_name("norm.rms.gamma"), ("norm.weight".into(), false));
        assert_eq!(torch_name("layers.1.attn.pos.scale"), ("layers.1.pos.scale".into(), false));
        assert_eq!(torch_name("lm_head.weight"), ("lm_head.weight".into(), true));
        assert_eq!(torch_name("embed.weight"), ("embed.weight".into(), false));
        assert_eq!(torch_name("memory.init"), ("memory.init".into(), false));
    }
}
