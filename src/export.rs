//! `baka export`: a run's weights as `weights/<run>.safetensors` with its config and tokenizer.

use crate::weights::{load_run, named_tensors, FORMAT};
use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Writes `weights/<name>.safetensors` + `<name>.json` (config) + `<name>.tokenizer.json`.
pub fn export(run: &Path, out: Option<PathBuf>, force: bool) -> Result<PathBuf> {
    let (cfg, model) = load_run::<crate::backend::Cpu>(run, &Default::default())?;
    let out = out.unwrap_or_else(|| PathBuf::from("weights").join(format!("{}.safetensors", run.file_name().and_then(|s| s.to_str()).unwrap_or("model"))));
    let (json, tok) = (out.with_extension("json"), out.with_extension("tokenizer.json"));
    for p in [&out, &json, &tok] {
        if p.exists() && !force {
            bail!("{}: already exists; pass --force to overwrite it", p.display());
        }
    }
    let tensors = named_tensors(&model);
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors.iter().zip(&bytes).map(|((n, dims, _), b)| Ok((n.clone(), TensorView::new(Dtype::F32, dims.clone(), b)?))).collect::<Result<Vec<_>>>()?;
    let cfg_json = serde_json::to_string(&cfg)?;
    let meta = HashMap::from([("format".to_string(), FORMAT.to_string()), ("config".to_string(), cfg_json.clone())]);
    let data = safetensors::serialize(views, &Some(meta))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_dir(dir)?;
    }
    let tok_src = if run.join("tokenizer.json").is_file() { run.join("tokenizer.json") } else { crate::data::for_run(&cfg.data, run, &mut |s| eprintln!("{s}"))?.tokenizer_path };
    let tok_bytes = std::fs::read(&tok_src).with_context(|| format!("{}: cannot read tokenizer", tok_src.display()))?;
    crate::fsutil::write_atomic(&out, &data)?;
    crate::fsutil::write_atomic(&json, serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    crate::fsutil::write_atomic(&tok, &tok_bytes)?;
    Ok(out)
}
