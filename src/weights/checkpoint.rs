//! Run checkpoints on disk, `<run>/checkpoint/{model.bin, optim.bin, state.json}`: where they are,
//! their checksums and the model's weights. Writing them and the optimizer state belong to
//! training (`train::checkpoint`).

use crate::fsutil::sha256_file;
use crate::model::BakaLM;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The recorder of checkpoint files.
pub type Rec = BinFileRecorder<FullPrecisionSettings>;

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

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
