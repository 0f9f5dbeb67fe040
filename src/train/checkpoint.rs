//! Resumable checkpoints: `<run>/checkpoint/{model.bin, optim.bin, state.json}`.
//!
//! Written into `checkpoint.tmp/` (every file fsynced, SHA-256 recorded in state.json), then
//! swapped in with renames: `checkpoint` → `checkpoint.old`, `checkpoint.tmp` → `checkpoint`,
//! then `checkpoint.old` is removed. At every instant one complete checkpoint exists on disk.

use super::adamw::AdamW;
use crate::fsutil::{create_dir, sha256_file, sync_dir, write_atomic};
use crate::model::BakaLM;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

type Rec = BinFileRecorder<FullPrecisionSettings>;

/// Everything besides tensors that a resumed run needs (the sampler is stateless: see batches.rs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CkptState {
    pub format: u32,
    /// Last completed optimizer step.
    pub step: usize,
    pub tokens: u64,
    pub elapsed_s: f64,
    /// SHA-256 of the resolved config.toml text the run was started with.
    pub config_sha256: String,
    pub model_sha256: String,
    pub optim_sha256: String,
}

pub fn dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// The checkpoint directory to read: `checkpoint/`, or `checkpoint.old/` if a crash hit the swap.
pub fn latest(run: &Path) -> Option<PathBuf> {
    [run.join("checkpoint"), run.join("checkpoint.old")].into_iter().find(|d| d.join("state.json").is_file())
}

pub fn save<B: AutodiffBackend>(run: &Path, model: &BakaLM<B>, optim: &AdamW<B>, mut state: CkptState) -> Result<()> {
    let tmp = run.join("checkpoint.tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove stale temporary checkpoint", tmp.display()))?;
    }
    create_dir(&tmp)?;
    crate::faults::io("checkpoint-write").with_context(|| format!("{}: cannot write checkpoint", tmp.display()))?;
    let rec = Rec::new();
    rec.record(model.clone().into_record(), tmp.join("model")).with_context(|| format!("{}: cannot write model", tmp.display()))?;
    rec.record(optim.to_record(), tmp.join("optim")).with_context(|| format!("{}: cannot write optimizer state", tmp.display()))?;
    for f in ["model.bin", "optim.bin"] {
        fs::File::open(tmp.join(f)).and_then(|f| f.sync_all()).with_context(|| format!("{}: fsync failed", tmp.join(f).display()))?;
    }
    state.format = 1;
    state.model_sha256 = sha256_file(&tmp.join("model.bin"))?;
    state.optim_sha256 = sha256_file(&tmp.join("optim.bin"))?;
    write_atomic(&tmp.join("state.json"), serde_json::to_string_pretty(&state)?.as_bytes())?;
    sync_dir(&tmp);
    crate::faults::hit("checkpoint-before-swap");
    let (cur, old) = (run.join("checkpoint"), run.join("checkpoint.old"));
    if old.exists() && cur.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    if cur.exists() {
        fs::rename(&cur, &old).with_context(|| format!("{}: cannot rename", cur.display()))?;
    }
    fs::rename(&tmp, &cur).with_context(|| format!("{}: cannot rename", tmp.display()))?;
    sync_dir(run);
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    Ok(())
}

/// Reads and verifies state.json and the checksums of the tensor files.
pub fn read_state(ckpt: &Path) -> Result<CkptState> {
    let p = ckpt.join("state.json");
    let text = fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    let s: CkptState = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: corrupt checkpoint state ({e})", p.display()))?;
    for (f, want) in [("model.bin", &s.model_sha256), ("optim.bin", &s.optim_sha256)] {
        let path = ckpt.join(f);
        if !path.is_file() {
            bail!("{}: missing (checkpoint incomplete)", path.display());
        }
        if &sha256_file(&path)? != want {
            bail!("{}: checksum mismatch (checkpoint corrupted)", path.display());
        }
    }
    Ok(s)
}

/// Loads model weights from a checkpoint directory into `model` (same config).
pub fn load_model<B: Backend>(ckpt: &Path, model: BakaLM<B>, device: &B::Device) -> Result<BakaLM<B>> {
    let path = ckpt.join("model");
    match Rec::new().load(path.clone(), device) {
        Ok(record) => Ok(model.load_record(record)),
        // a checkpoint written before 2026-12-03 (another record layout)
        Err(e) => match Rec::new().load::<<super::legacy::OldBakaLM<B> as Module<B>>::Record>(path.clone(), device) {
            Ok(record) => Ok(super::legacy::restore(super::legacy::split(model.clone()).load_record(record), model)),
            Err(_) => Err(anyhow::anyhow!("{}.bin: cannot load model ({})", path.display(), one_line(&e.to_string()))),
        },
    }
}

pub fn load_optim<B: AutodiffBackend>(ckpt: &Path, optim: AdamW<B>, device: &B::Device) -> Result<AdamW<B>> {
    let path = ckpt.join("optim");
    let record = Rec::new().load(path.clone(), device).map_err(|e| anyhow::anyhow!("{}.bin: cannot load optimizer state ({})", path.display(), one_line(&e.to_string())))?;
    Ok(optim.load_record(record))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
