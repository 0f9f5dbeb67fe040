//! safetensors export/import with PyTorch-style names and `[out, in]` Linear layout.
//!
//! One name map serves both directions: a visitor walks burn's module tree, and
//! [`torch_name`] turns burn's path (`layers.0.attn.q.weight`, burn layout `[in, out]`) into the
//! exported name (`layers.0.attn.q.weight`, `[out, in]`). See README "Weights" for the table.

use crate::config::Config;
use crate::model::BakaLM;
use crate::train::checkpoint;
use anyhow::{bail, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "bakallm-1";

/// Exported name of a burn parameter path, and whether it is a Linear weight (transposed).
pub fn torch_name(burn_path: &str) -> (String, bool) {
    let p = burn_path.replace(".layer.gamma", ".weight").replace(".layer.beta", ".bias").replace(".rms.gamma", ".weight").replace(".attn.pos.scale", ".pos.scale");
    let linear = p.ends_with(".weight") && [".q.", ".k.", ".v.", ".o.", ".gate.", ".up.", ".down.", "lm_head."].iter().any(|s| p.contains(s));
    (p, linear)
}

/// Tracks the dotted path of the current parameter while walking the module tree.
#[derive(Default)]
struct Path_(Vec<String>);

impl Path_ {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
}

/// burn calls `enter_module` for every struct field (parameters included) and Vec index, so the
/// path at a parameter is its full dotted burn name, e.g. `layers.0.attn.q.weight`.
struct Collect {
    path: Path_,
    out: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let burn_path = self.path.0.join(".");
        let (name, linear) = torch_name(&burn_path);
        let t = param.val();
        let (dims, t) = if linear {
            let t2: Tensor<B, 2> = t.reshape([param.dims()[0], param.dims()[1]]).transpose();
            (t2.dims().to_vec(), t2.into_data())
        } else {
            (t.dims().to_vec(), t.into_data())
        };
        self.out.push((name, dims, t.convert::<f32>().to_vec().expect("f32 data")));
    }
}

/// All parameters under their exported names, in a stable order.
pub fn named_tensors<B: Backend>(model: &BakaLM<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut c = Collect { path: Path_::default(), out: Vec::new() };
    model.visit(&mut c);
    c.out
}

/// Replaces every parameter with the tensor of the same exported name, checking shapes.
struct Assign<'a, 'b, B: Backend> {
    path: Path_,
    st: &'a SafeTensors<'b>,
    file: &'a Path,
    device: B::Device,
    error: Option<anyhow::Error>,
    used: usize,
}

impl<B: Backend> ModuleMapper<B> for Assign<'_, '_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (name, linear) = torch_name(&self.path.0.join("."));
        let mut want = param.dims().to_vec();
        if linear {
            want.reverse();
        }
        let loaded = match self.st.tensor(&name) {
            Err(_) => Err(anyhow::anyhow!("{}: missing tensor {name} (weights of another branch?)", self.file.display())),
            Ok(v) if v.dtype() != Dtype::F32 => Err(anyhow::anyhow!("{}: tensor {name} is {:?}, expected F32", self.file.display(), v.dtype())),
            Ok(v) if v.shape() != want.as_slice() => Err(anyhow::anyhow!("{}: tensor {name} has shape {:?}, expected {:?} (weights of another config?)", self.file.display(), v.shape(), want)),
            Ok(v) => Ok(v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<f32>>()),
        };
        let (id, old, mapper) = param.consume();
        match loaded {
            Err(e) => {
                self.error.get_or_insert(e);
                Param::from_mapped_value(id, old, mapper)
            }
            Ok(values) => {
                self.used += 1;
                let t = Tensor::<B, 2>::from_data(TensorData::new(values, [want[0], want.iter().skip(1).product()]), &self.device);
                let t: Tensor<B, D> = if linear { t.transpose().reshape(old.dims()) } else { t.reshape(old.dims()) };
                Param::from_mapped_value(id, t, mapper)
            }
        }
    }
}

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

/// The branch config stored in an export's metadata (checked, one-line errors).
fn config_of(file: &Path, bytes: &[u8]) -> Result<Config> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", file.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        bail!("{}: not a bakallm export (metadata format is not {FORMAT})", file.display());
    }
    let cfg: Config = serde_json::from_str(meta.get("config").map(String::as_str).unwrap_or("")).map_err(|e| anyhow::anyhow!("{}: bad config metadata ({e})", file.display()))?;
    cfg.validate().map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(cfg)
}

/// The config of exported weights, without loading the tensors.
pub fn weights_config(file: &Path) -> Result<Config> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    config_of(file, &bytes)
}

/// Loads exported weights: the config from the metadata, every tensor by the name map.
pub fn load_weights<B: Backend>(file: &Path, device: &B::Device) -> Result<(Config, BakaLM<B>)> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let cfg = config_of(file, &bytes)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", file.display()))?;
    let model = BakaLM::<B>::new(&cfg.model, &cfg.memory, cfg.train.seed, device);
    let mut a = Assign::<B> { path: Path_::default(), st: &st, file, device: device.clone(), error: None, used: 0 };
    let model = model.map(&mut a);
    if let Some(e) = a.error {
        return Err(e);
    }
    if a.used != st.names().len() {
        bail!("{}: has {} tensors, the config's model has {} (weights of another branch?)", file.display(), st.names().len(), a.used);
    }
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
