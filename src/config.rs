//! Run configuration: the structs mirror the TOML of `branches/*.toml` and `experiments/*.toml`.
//!
//! A config is built in layers: built-in defaults (BakaLLM's 001_pristine at full size) ← branch
//! file ← experiment overrides ← `--set key=value`. Every layer is checked key by key, so an
//! error names the layer (file or `--set`) and the dotted key that is wrong.

use crate::data::DataConfig;
use crate::kernels::ops::{AttnKernel, Ce, Fusion, KernelSet, Kernels, Matmul};
use crate::kernels::MAX_FUSED_NORM_D;
use crate::model::ModelConfig;
use anyhow::{bail, Context, Result};
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Value;

/// RMT memory (Bulatov et al. 2022); `tokens = 0` switches it off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Number of memory tokens M (BakaLLM used 16).
    pub tokens: usize,
    /// Gradients flow through memory inside groups of this many windows, then it is detached.
    pub bptt_windows: usize,
    /// Inputs of the write slots after window 0: the memory just read (the RMT paper's scheme,
    /// and BakaLLM's) or the learned init every window.
    pub write_init: WriteInit,
    /// "none": memory tokens get no positional signal; "window": they are positioned by their
    /// index in the [read ; window ; write] sequence like ordinary tokens.
    pub positions: String,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self { tokens: 0, bptt_windows: 2, write_init: WriteInit::Previous, positions: "none".into() }
    }
}

/// `memory.write_init`: what the write slots of window k > 0 take as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteInit {
    /// The memory read from the previous window: the same memory tokens are read and written
    /// (Bulatov et al. 2022, and BakaLLM's 005_rmt).
    Previous,
    /// The learned `memory.init` vectors in every window (not the paper's scheme).
    Learned,
}

/// Optimisation and bookkeeping. Defaults are BakaLLM's recipe: AdamW lr 1e-3, constant, clip 1.0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub seed: u64,
    pub steps: usize,
    /// Samples per step; each sample is `n_windows` consecutive windows of real text.
    pub batch: usize,
    pub n_windows: usize,
    pub lr: f64,
    /// "constant" or "cosine" (decays to `lr * min_lr_ratio` at the last step).
    pub schedule: String,
    pub warmup_steps: usize,
    pub min_lr_ratio: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (as torch.nn.utils.clip_grad_norm_); 0 switches it off.
    pub clip: f64,
    /// Evaluate every this many steps (and at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Validation samples (each `n_windows` windows) in the fixed validation set.
    pub eval_samples: usize,
    /// Test samples (each `n_windows` windows), scored once when the run finishes.
    pub test_samples: usize,
    /// Write a resumable checkpoint every this many steps (and at the end); 0 = only at the end.
    pub checkpoint_every: usize,
    /// On a non-finite loss or gradient: false stops the run; true skips that step's update.
    pub skip_spikes: bool,
    /// "cpu" (burn-flex) or "cuda" (needs a binary built with `--features cuda`).
    pub device: Device,
    /// "f32" or "bf16" (bf16 only on cuda): the activations' dtype; weights stay f32.
    pub dtype: Dtype,
    /// "fast": bakallm's kernels where the device has them (CUDA: cuBLAS linears, the whole
    /// parallel layer as one op, fused norm, gate, embedding, AdamW, and the LM head + loss in
    /// chunks; CPU: the LM head + loss as one pass); "reference": burn's ops everywhere.
    pub kernels: KernelSet,
    /// Rows of logits per chunk of the LM head's loss on CUDA: `ce_chunk × vocab` logits exist
    /// at a time.
    pub ce_chunk: usize,
    /// CUDA memory pools (set once per process, src/backend.rs): "shared" (tensors over 1 MiB
    /// sliced out of shared 1 GiB pages), "sliced" (cubecl's default: pages graded by slice size,
    /// up to a quarter of the GPU each) or "exclusive" (cubecl's: a page per tensor). CPU: unused.
    pub memory_pool: MemoryPool,
    /// Developer overrides of single kernels (unset: as `kernels` says), for tests and for
    /// benchmarking one kernel against burn's ops; documented in docs/kernels.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matmul: Option<Matmul>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttnKernel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layernorm: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adamw: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ce: Option<Ce>,
}

/// `train.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
    pub fn is_cuda(self) -> bool {
        self == Self::Cuda
    }
}

/// `train.dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }
    pub fn float(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
        }
    }
}

/// `train.memory_pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemoryPool {
    #[default]
    Shared,
    Sliced,
    Exclusive,
}

impl TrainConfig {
    /// The kernels this run uses: `kernels` with the developer overrides applied. On the CPU only
    /// the loss has a choice (the one-pass LM head + loss, or autodiff).
    pub fn kernels(&self) -> Kernels {
        let base = match self.kernels {
            KernelSet::Fast => Kernels::FAST,
            KernelSet::Reference => Kernels::REFERENCE,
        };
        Kernels {
            matmul: self.matmul.unwrap_or(base.matmul),
            attention: self.attention.unwrap_or(base.attention),
            embedding: self.embedding.unwrap_or(base.embedding),
            norm: self.layernorm.unwrap_or(base.norm),
            gate: self.gate.unwrap_or(base.gate),
            ce: self.ce.unwrap_or(base.ce),
            ce_chunk: self.ce_chunk,
        }
    }

    /// Whether the optimizer step runs as bakallm's fused kernel (CUDA).
    pub fn fused_adamw(&self) -> bool {
        self.adamw.unwrap_or(if self.kernels == KernelSet::Fast { Fusion::Fused } else { Fusion::Burn }) == Fusion::Fused
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 1000,
            batch: 6,
            n_windows: 4,
            lr: 1e-3,
            schedule: "constant".into(),
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            clip: 1.0,
            eval_every: 100,
            eval_samples: 16,
            test_samples: 64,
            checkpoint_every: 0,
            skip_spikes: false,
            device: Device::Cpu,
            dtype: Dtype::F32,
            kernels: KernelSet::Fast,
            ce_chunk: 4096,
            memory_pool: MemoryPool::Shared,
            matmul: None,
            attention: None,
            embedding: None,
            layernorm: None,
            gate: None,
            adamw: None,
            ce: None,
        }
    }
}

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

/// Turns a serde error on a layer into one line naming the layer and key.
fn layer_error(src: &Source, e: toml::de::Error) -> anyhow::Error {
    let msg = e.message().trim().replace('\n', " ");
    anyhow::anyhow!("{src}: {msg}")
}

/// Checks one layer on its own against the defaults, so the error names the right culprit.
fn check_layer(src: &Source, layer: &toml::Table) -> Result<()> {
    let mut t = Value::try_from(Config::default())?.as_table().cloned().expect("table");
    merge(&mut t, layer);
    Config::deserialize(Value::Table(t)).map(|_| ()).map_err(|e| layer_error(src, e))
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
        if !["none", "window"].contains(&m.positions.as_str()) {
            bail!("memory.positions = {:?}: expected \"none\" or \"window\"", m.positions);
        }
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
        if !["constant", "cosine"].contains(&t.schedule.as_str()) {
            bail!("train.schedule = {:?}: expected \"constant\" or \"cosine\"", t.schedule);
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

    /// Where this model does not take the kernels `train.kernels` and the overrides ask for (CUDA),
    /// and what runs instead: said once when a run starts, so a run is never silently slower.
    pub fn kernel_fallbacks(&self) -> Vec<String> {
        let (t, m) = (&self.train, &self.model);
        let k = t.kernels();
        if !t.device.is_cuda() {
            return vec![];
        }
        let mut notes = vec![];
        let flash_based = matches!(k.attention, AttnKernel::Layer | AttnKernel::Block | AttnKernel::Flash);
        let hd = m.head_dim();
        if flash_based && !(t.dtype == Dtype::Bf16 && (hd == 32 || hd == 64)) {
            notes.push(format!("the flash kernels need train.dtype = \"bf16\" and a head dim of 32 or 64 (got {}, {hd}): attention runs as GEMMs and softmax kernels", t.dtype.name()));
        } else if matches!(k.attention, AttnKernel::Layer | AttnKernel::Block) {
            if m.positions == crate::model::PositionKind::Linspace {
                notes.push("linspace adds its ramp to k before the head split: the attention runs as flash kernels between the projections, not as one op".into());
            } else if k.matmul == Matmul::Burn {
                notes.push("train.matmul = \"burn\": the attention runs as flash kernels between burn's linears, not as one op".into());
            } else if k.attention == AttnKernel::Layer && m.residual == "sequential" {
                notes.push("model.residual = \"sequential\": each sublayer runs as its own op (no single-op layer)".into());
            } else if k.attention == AttnKernel::Layer && (k.norm == Fusion::Burn || k.gate == Fusion::Burn) {
                notes.push("the single-op layer needs the fused norm and gate: the attention sublayer runs as one op, the rest as their ops".into());
            }
        }
        notes
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
mod tests {
    use super::*;

    fn layer(src: &str) -> (Source, toml::Table) {
        (Source::File(PathBuf::from("test.toml")), toml::from_str(src).unwrap())
    }

    #[test]
    fn defaults_are_bakallm_pristine() {
        let c = Config::from_layers(&[]).unwrap();
        assert_eq!((c.model.d_model, c.model.n_layers, c.model.n_heads, c.model.d_ff, c.model.window), (768, 12, 12, 3072, 512));
        assert_eq!((c.train.lr, c.train.clip, c.train.schedule.as_str()), (1e-3, 1.0, "constant"));
    }

    #[test]
    fn unknown_key_names_layer_and_key() {
        let e = Config::from_layers(&[layer("[model]\nd_modle = 3")]).unwrap_err().to_string();
        assert!(e.contains("test.toml") && e.contains("d_modle"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn wrong_type_names_layer() {
        let (k, v) = parse_set("model.d_model=abc").unwrap();
        let mut t = toml::Table::new();
        set_dotted(&mut t, &k, v);
        let e = Config::from_layers(&[(Source::Set("model.d_model=abc".into()), t)]).unwrap_err().to_string();
        assert!(e.starts_with("--set model.d_model=abc"), "{e}");
    }

    #[test]
    fn set_parses_numbers_strings_and_bools() {
        assert_eq!(parse_set("a.b=128").unwrap().1, Value::Integer(128));
        assert_eq!(parse_set("a.b=1e-3").unwrap().1, Value::Float(1e-3));
        assert_eq!(parse_set("a.b=nope").unwrap().1, Value::String("nope".into()));
        assert_eq!(parse_set("a.b=true").unwrap().1, Value::Boolean(true));
        assert!(parse_set("novalue").is_err());
    }

    #[test]
    fn kernel_fallbacks_are_said_on_cuda_only() {
        let cuda = "[train]\ndevice = \"cuda\"";
        let notes = |extra: &str| Config::from_layers(&[layer(&format!("{cuda}\n{extra}"))]).unwrap().kernel_fallbacks();
        let bf16 = |extra: &str| notes(&format!("dtype = \"bf16\"\n{extra}"));
        assert!(bf16("").is_empty(), "pristine (head dim 64, bf16) takes every kernel");
        assert!(notes("")[0].contains("bf16"), "f32 keeps the flash kernels out");
        assert!(bf16("[model]\npositions = \"linspace\"")[0].contains("linspace"));
        assert!(bf16("[model]\nresidual = \"sequential\"")[0].contains("sequential"));
        assert!(bf16("attention = \"flash\"\n[model]\nresidual = \"sequential\"").is_empty());
        assert!(notes("kernels = \"reference\"").is_empty());
        assert!(Config::from_layers(&[layer("[model]\npositions = \"linspace\"")]).unwrap().kernel_fallbacks().is_empty());
    }

    #[test]
    fn fused_layernorm_width_is_checked_on_cuda_only() {
        let wide = "[model]\nd_model = 8192\nn_heads = 64\n[train]\ndevice = \"cuda\"";
        let e = Config::from_layers(&[layer(wide)]).unwrap_err().to_string();
        assert!(e.contains("train.layernorm") && e.contains("8192") && e.contains("burn"), "{e}");
        assert!(Config::from_layers(&[layer(&format!("{wide}\nlayernorm = \"burn\""))]).is_ok());
        assert!(Config::from_layers(&[layer("[model]\nd_model = 8192\nn_heads = 64")]).is_ok());
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = Config::from_layers(&[layer("[model]\nd_model = 100\nn_heads = 12")]).unwrap_err().to_string();
        assert!(e.contains("model.n_heads") || e.contains("model.d_model"), "{e}");
        let e = Config::from_layers(&[layer("[train]\nbatch = 0")]).unwrap_err().to_string();
        assert!(e.contains("train.batch"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = Config::from_layers(&[layer("[model]\npositions = \"alibi\"\n[memory]\ntokens = 4")]).unwrap();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(c, back);
    }
}
