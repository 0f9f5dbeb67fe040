//! `meta.json` of a prepared data cache: provenance and statistics of the corpus, its split and
//! its tokenizer; its first fields decide whether the cache is reusable (`Meta::matches`).

use super::split::Block;
use super::{sources, DataConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct FileMeta {
    pub(super) name: String,
    pub(super) bytes: u64,
    pub(super) latin1: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct SplitMeta {
    pub(super) documents: usize,
    /// Held-out units: whole documents, or spans of long ones.
    pub(super) blocks: usize,
    /// UTF-8 bytes of decoded text.
    pub(super) bytes: u64,
    /// Including end-of-document separators.
    pub(super) tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Seconds {
    pub(super) corpus: f64,
    /// None when an existing tokenizer.json was reused.
    pub(super) tokenizer_training: Option<f64>,
    pub(super) encoding: f64,
    pub(super) total: f64,
}

/// meta.json: provenance and statistics; its first fields decide whether a cache is reusable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Meta {
    pub(super) format: u32,
    pub(super) corpus_id: String,
    pub(super) corpus_source: String,
    /// What each source of a built-in corpus gave (bytes and documents after deduplication).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) sources: Vec<sources::SourceStats>,
    pub(super) val_fraction: f64,
    pub(super) test_fraction: f64,
    pub(super) block_bytes: usize,
    pub(super) vocab_size: usize,
    pub(super) tokenizer_source: String,
    pub(super) tokenizer_sha256: String,
    pub(super) eot_id: Option<u32>,
    pub(super) train: SplitMeta,
    pub(super) val: SplitMeta,
    pub(super) test: SplitMeta,
    pub(super) latin1_files: Vec<String>,
    pub(super) files: Vec<FileMeta>,
    pub(super) seconds: Seconds,
}

/// 2: whole documents (or long spans) held out for validation and test.
pub(super) const META_FORMAT: u32 = 2;

impl Meta {
    /// Cache hit test: same corpus, split, vocabulary and tokenizer bytes.
    pub(super) fn matches(&self, corpus_id: &str, cfg: &DataConfig, vocab_size: usize, tok_sha: &str) -> bool {
        self.format == META_FORMAT
            && self.corpus_id == corpus_id
            && self.val_fraction == cfg.val_fraction
            && self.test_fraction == cfg.test_fraction
            && self.block_bytes == cfg.block_bytes
            && self.vocab_size == vocab_size
            && self.tokenizer_sha256 == tok_sha
    }
}

pub(super) fn split_meta(blocks: &[Block], tokens: u64) -> SplitMeta {
    let mut documents = 0;
    for (i, b) in blocks.iter().enumerate() {
        if i == 0 || blocks[i - 1].doc != b.doc {
            documents += 1;
        }
    }
    SplitMeta { documents, blocks: blocks.len(), bytes: blocks.iter().map(|b| b.range.len() as u64).sum(), tokens }
}
