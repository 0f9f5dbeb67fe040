//! Model weights by their exported names (PyTorch-style, `[out, in]` Linear layout) and the
//! safetensors files of `baka export`.
//!
//! One name map serves both directions: a visitor walks burn's module tree, and
//! [`torch_name`] turns burn's path (`layers.0.attn.q.weight`, burn layout `[in, out]`) into the
//! exported name (`layers.0.attn.q.weight`, `[out, in]`). See README "Weights" for the table.
//!
//! Why not burn-store's safetensors export: burn 0.21's `store` feature builds burn-store without
//! its safetensors support (that needs burn-store as a direct dependency), its PyTorch adapter
//! renames LayerNorm's `gamma`/`beta` but not RMSNorm's, and the `.layer.`, `.rms.` and
//! `attn.pos.scale` paths would still need a remap of their own; this one name map serves export
//! and import, and the numpy parity test (`tests/parity`) pins the file it writes.

use crate::config::Config;
use crate::model::BakaLM;
use anyhow::{bail, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors};
use std::path::Path;

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
