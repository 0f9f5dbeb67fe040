//! Resumable checkpoints: `<run>/checkpoint/{model.bin, optim.bin, state.json}`.
//!
//! Written into `checkpoint.tmp/` (every file fsynced, SHA-256 recorded in state.json), then
//! swapped in with renames: `checkpoint` → `checkpoint.old`, `checkpoint.tmp` → `checkpoint`,
//! then `checkpoint.old` is removed. At every instant one complete checkpoint exists on disk.
//! Reading them: `weights::checkpoint`.

use super::adamw::AdamW;
use crate::fsutil::{create_dir, sha256_file, sync_dir, write_atomic};
use crate::model::BakaLM;
pub use crate::weights::checkpoint::{dir, latest, load_model, read_state, CkptState};
use crate::weights::checkpoint::{one_line, Rec};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use std::fs;
use std::path::Path;

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

pub fn load_optim<B: AutodiffBackend>(ckpt: &Path, optim: AdamW<B>, device: &B::Device) -> Result<AdamW<B>> {
    let path = ckpt.join("optim");
    let record = Rec::new().load(path.clone(), device).map_err(|e| anyhow::anyhow!("{}.bin: cannot load optimizer state ({})", path.display(), one_line(&e.to_string())))?;
    Ok(optim.load_record(record))
}
