//! Run configuration: the structs mirror the TOML of `branches/*.toml` and `experiments/*.toml`.
//!
//! A config is built in layers: built-in defaults (BakaLLM's 001_pristine at full size) ← branch
//! file ← experiment overrides ← `--set key=value`. Every layer is checked key by key, so an
//! error names the layer (file or `--set`) and the dotted key that is wrong.

mod train;

use crate::data::DataConfig;
use crate::kernels::ops::{AttnKernel, Ce, Fusion, Matmul};
use crate::kernels::MAX_FUSED_NORM_D;
pub use crate::model::memory::{MemoryConfig, MemoryPositions, WriteInit};
use crate::model::ModelConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Value;
pub use train::{Device, Dtype, MemoryPool, Schedule, TrainConfig};

/// Everything a run needs; written fully resolved to `<run>/config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Branch name (file stem of `branches/<name>.toml`).
    pub branch: String,
    pub description: String,
    pub model: ModelConfig,
    pub memory: MemoryConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
}

/// The TOML spelling of a unit enum variant (its serde name).
pub fn serde_name<T: Serialize>(v: &T) -> String {
    toml::Value::try_from(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Where a layer of settings came from, for error messages.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Set(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Set(s) => write!(f, "--set {s}"),
        }
    }
}

/// One-line message for a TOML parse error (toml's own Display spans several lines).
fn toml_error_line(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Parses a TOML file into a table, with a one-line error naming the file.
pub fn read_toml(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    toml::from_str::<toml::Table>(&text).map_err(|e| anyhow::anyhow!("{}: invalid TOML, {}", path.display(), toml_error_line(&text, &e)))
}

/// Parses `key=value` of `--set`; the value is TOML (`128`, `1e-3`, `true`, `"rope"`), and a bare
/// word that is not valid TOML is taken as a string (`--set model.positions=nope`).
pub fn parse_set(arg: &str) -> Result<(String, Value)> {
    let Some((key, raw)) = arg.split_once('=') else {
        bail!("--set {arg}: expected key=value (e.g. --set model.d_model=128)");
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("--set {arg}: bad key '{key}' (expected a dotted key like model.d_model)");
    }
    let raw = raw.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => Value::String(raw.to_string()),
    };
    Ok((key.to_string(), value))
}

/// Sets a dotted key inside a table, creating sub-tables as needed.
pub fn set_dotted(table: &mut toml::Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cur = table;
    for p in parts {
        let entry = cur.entry(p.to_string()).or_insert_with(|| Value::Table(Default::default()));
        if !entry.is_table() {
            *entry = Value::Table(Default::default());
        }
        cur = entry.as_table_mut().expect("table");
    }
    cur.insert(last.to_string(), value);
}

/// One config layer per `--set key=value`, so an error names the argument at fault.
pub fn set_layers(sets: &[String]) -> Result<Vec<(Source, toml::Table)>> {
    sets.iter()
        .map(|s| {
            let (key, value) = parse_set(s)?;
            let mut t = toml::Table::new();
            set_dotted(&mut t, &key, value);
            Ok((Source::Set(s.clone()), t))
        })
        .collect()
}

/// Deep-merges `over` into `base` (tables merge, everything else replaces).
pub fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Turns a serde error on a layer into one line naming the layer, and the key and value at fault
/// where one key alone fails (`model.norm = "batchnorm": unknown variant …`).
fn layer_error(src: &Source, layer: &toml::Table, e: toml::de::Error) -> anyhow::Error {
    let msg = e.message().trim().replace('\n', " ");
    match culprit(layer, "") {
        Some((key, value)) if !msg.contains(&key) => anyhow::anyhow!("{src}: {key} = {value}: {msg}"),
        _ => anyhow::anyhow!("{src}: {msg}"),
    }
}

/// The first leaf key of `layer` that fails on its own against the defaults, with its value.
fn culprit(layer: &toml::Table, prefix: &str) -> Option<(String, Value)> {
    layer.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(t) => culprit(t, &key),
            _ => {
                let mut alone = toml::Table::new();
                set_dotted(&mut alone, &key, v.clone());
                let mut t = Value::try_from(Config::default()).ok()?.as_table().cloned()?;
                merge(&mut t, &alone);
                Config::deserialize(Value::Table(t)).is_err().then(|| (key, v.clone()))
            }
        }
    })
}

/// Checks one layer on its own against the defaults, so the error names the right culprit.
fn check_layer(src: &Source, layer: &toml::Table) -> Result<()> {
    let mut t = Value::try_from(Config::default())?.as_table().cloned().expect("table");
    merge(&mut t, layer);
    Config::deserialize(Value::Table(t)).map(|_| ()).map_err(|e| layer_error(src, layer, e))
}

impl Config {
    /// Builds a config from layers (lowest priority first), checking each on its own.
    pub fn from_layers(layers: &[(Source, toml::Table)]) -> Result<Config> {
        let mut t = Value::try_from(Config::default())?.as_table().cloned().expect("table");
        for (src, layer) in layers {
            check_layer(src, layer)?;
            merge(&mut t, layer);
        }
        let cfg = Config::deserialize(Value::Table(t)).map_err(|e| anyhow::anyhow!("config: {}", e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads a branch (name or path) and applies `--set` overrides.
    pub fn load(branch: &str, extra: &[(Source, toml::Table)], sets: &[String]) -> Result<Config> {
        let path = find_branch(branch)?;
        let mut file = read_toml(&path)?;
        if !file.contains_key("branch") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("branch");
            file.insert("branch".into(), Value::String(stem.to_string()));
        }
        let mut layers = vec![(Source::File(path), file)];
        layers.extend(extra.iter().cloned());
        layers.extend(set_layers(sets)?);
        Config::from_layers(&layers)
    }

    /// A resolved config file as written to `<run>/config.toml`.
    pub fn from_file(path: &Path) -> Result<Config> {
        Config::from_layers(&[(Source::File(path.to_path_buf()), read_toml(path)?)])
    }

    /// Semantic checks the types cannot express; each error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.data.validate()?;
        let m = &self.memory;
        if m.tokens > 0 && m.bptt_windows == 0 {
            bail!("memory.bptt_windows = 0: expected at least 1");
        }
        let t = &self.train;
        for (k, v) in [("train.steps", t.steps), ("train.batch", t.batch), ("train.n_windows", t.n_windows), ("train.eval_samples", t.eval_samples), ("train.test_samples", t.test_samples)] {
            if v == 0 {
                bail!("{k} = 0: expected a positive integer");
            }
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("train.lr = {}: expected a positive number", t.lr);
        }
        if !(0.0..=1.0).contains(&t.min_lr_ratio) {
            bail!("train.min_lr_ratio = {}: expected a number in [0, 1]", t.min_lr_ratio);
        }
        for (k, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                bail!("{k} = {v}: expected a number in [0, 1)");
            }
        }
        if t.eps <= 0.0 || t.weight_decay < 0.0 || t.clip < 0.0 {
            bail!("train.eps must be > 0, train.weight_decay and train.clip >= 0 (got {}, {}, {})", t.eps, t.weight_decay, t.clip);
        }
        if t.gpus == 0 || !t.batch.is_multiple_of(t.gpus) {
            bail!("train.gpus = {}: expected a divisor of train.batch = {} (each GPU takes an equal share of a step's samples)", t.gpus, t.batch);
        }
        if t.ce_chunk == 0 {
            bail!("train.ce_chunk = 0: expected at least 1 row of logits per chunk");
        }
        if t.dtype == Dtype::Bf16 && !t.device.is_cuda() {
            bail!("train.dtype = \"bf16\" needs train.device = \"cuda\" (the CPU backend computes in f32)");
        }
        if !t.device.is_cuda() {
            if let Some(ce @ (Ce::Fused | Ce::ClosedForm)) = t.ce {
                bail!("train.ce = {:?} needs train.device = \"cuda\": the CPU has \"chunked\" and \"autodiff\"", serde_name(&ce));
            }
        }
        // the norm kernel's backward sums dw and db of a block in shared memory (2·d f32, 48 KiB)
        if t.device.is_cuda() && t.kernels().norm == Fusion::Fused && self.model.d_model > MAX_FUSED_NORM_D {
            bail!("train.layernorm = \"fused\" supports model.d_model up to {MAX_FUSED_NORM_D}, got {}: set train.layernorm = \"burn\"", self.model.d_model);
        }
        Ok(())
    }

    /// The attention kernel this model runs on CUDA and, where that is not the one
    /// `train.kernels` and the overrides ask for, why: said once when a run starts
    /// ([`Self::kernel_fallbacks`]) and in `baka bench`'s line, so a run is never silently slower.
    pub fn attention_as_run(&self) -> (AttnKernel, Option<String>) {
        let (t, m) = (&self.train, &self.model);
        let k = t.kernels();
        let hd = m.head_dim();
        let flash_based = matches!(k.attention, AttnKernel::Layer | AttnKernel::Block | AttnKernel::Flash);
        let one_op = matches!(k.attention, AttnKernel::Layer | AttnKernel::Block);
        let linspace = m.positions == crate::model::PositionKind::Linspace;
        // the attention sublayer alone as one op takes no key term: linspace runs it as flash kernels
        let sublayer = |why: &str| match linspace {
            true => (AttnKernel::Flash, Some(format!("{why}; linspace's ramp on k keeps the attention sublayer apart: flash kernels between the projections"))),
            false => (AttnKernel::Block, Some(format!("{why}: the attention sublayer runs as one op, the rest as their ops"))),
        };
        if flash_based && !crate::kernels::flash_fits(t.dtype == Dtype::Bf16, hd) {
            let why = format!("the flash kernels need train.dtype = \"bf16\" and a head dim of 32 or 64 (got {}, {hd}): attention runs as GEMMs and softmax kernels", t.dtype.name());
            (AttnKernel::Fused, Some(why))
        } else if one_op && k.matmul == Matmul::Burn {
            (AttnKernel::Flash, Some("train.matmul = \"burn\": the attention runs as flash kernels between burn's linears, not as one op".into()))
        } else if k.attention == AttnKernel::Layer && (k.norm == Fusion::Burn || k.gate == Fusion::Burn) {
            sublayer("the single-op layer needs the fused norm and gate")
        } else if k.attention == AttnKernel::Block && linspace {
            (AttnKernel::Flash, Some("train.attention = \"block\" takes no key term: linspace's ramp on k runs the attention as flash kernels between the projections".into()))
        } else {
            (k.attention, None)
        }
    }

    /// Where this model does not take the kernels asked for on CUDA, and what runs instead.
    pub fn kernel_fallbacks(&self) -> Vec<String> {
        if !self.train.device.is_cuda() {
            return vec![];
        }
        self.attention_as_run().1.into_iter().collect()
    }

    /// Fully resolved TOML, as written to `<run>/config.toml`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

/// Directory holding the named branches: `$BAKA_BRANCHES`, else `./branches`.
pub fn branches_dir() -> PathBuf {
    std::env::var_os("BAKA_BRANCHES").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("branches"))
}

/// All branch files, sorted by name.
pub fn list_branches() -> Result<Vec<PathBuf>> {
    let dir = branches_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list branches in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    Ok(v)
}

/// Resolves a branch argument: a path to a .toml file, an exact name (`002_nope`), or a unique
/// suffix after the number (`nope`).
pub fn find_branch(arg: &str) -> Result<PathBuf> {
    let p = Path::new(arg);
    if arg.ends_with(".toml") || arg.contains('/') {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("branch file {arg} does not exist");
    }
    let all = list_branches()?;
    let stem = |p: &PathBuf| p.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
    if let Some(p) = all.iter().find(|p| stem(p) == arg) {
        return Ok(p.clone());
    }
    let hits: Vec<&PathBuf> = all.iter().filter(|p| stem(p).split_once('_').is_some_and(|(_, s)| s == arg)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        _ => {
            let names: Vec<String> = all.iter().map(stem).collect();
            bail!("unknown branch '{arg}' (known: {})", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests;
