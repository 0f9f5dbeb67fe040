//! Byte-level BPE (GPT-2 style) with Hugging Face `tokenizers`: train, load, save, encode.
//!
//! Byte-level means every string is encodable (256-symbol base alphabet, no unknown
//! token) and `decode(encode(s)) == s`, and the saved `tokenizer.json` is the standard
//! format that Python `tokenizers`/`transformers` load as-is.

use super::OneLine;
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::{AddedToken, Tokenizer};

/// End-of-document separator; id 0 in tokenizers we train.
pub const EOT: &str = "<|endoftext|>";

/// Trains a byte-level BPE of `vocab_size` entries (special token + 256 bytes + merges)
/// on `texts`. Merges need a pair seen at least twice, so a small corpus may end up
/// with fewer entries than asked for; callers should look at `get_vocab_size(true)`.
pub fn train_bpe<'a>(texts: impl Iterator<Item = &'a str> + Send, vocab_size: usize) -> Result<Tokenizer> {
    // add_prefix_space = false: text is not rewritten; trim_offsets = false: offsets
    // cover the raw bytes; use_regex = true: the GPT-2 split pattern.
    let byte_level = ByteLevel::new(false, false, true);
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(byte_level));
    tok.with_decoder(Some(ByteLevelDecoder::new(false, false, true)));
    tok.with_post_processor(Some(ByteLevelProcessor::new(false, false, true)));
    tok.train(&mut trainer, texts).one_line(|| "BPE training failed".to_string())?;
    if tok.token_to_id(EOT) != Some(0) {
        bail!("BPE training did not give {EOT} id 0 (got {:?})", tok.token_to_id(EOT));
    }
    Ok(tok)
}

/// Loads any `tokenizer.json` (ours, GPT-2's, Pythia's...).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        bail!("tokenizer file {} does not exist", path.display());
    }
    Tokenizer::from_file(path).map_err(|e| anyhow!("{}: not a valid tokenizer.json ({})", path.display(), e.to_string().replace('\n', " ")))
}

/// Saves atomically (pretty JSON, like Python's `save`).
pub fn save_tokenizer(tok: &Tokenizer, path: &Path) -> Result<()> {
    let json = tok.to_string(true).one_line(|| format!("cannot serialise tokenizer for {}", path.display()))?;
    crate::fsutil::write_atomic(path, json.as_bytes())
}

/// The end-of-document id, if the tokenizer has `<|endoftext|>`.
pub fn eot_id(tok: &Tokenizer) -> Option<u32> {
    tok.token_to_id(EOT)
}

/// UTF-8 bytes each token id stands for (0 for special tokens), for bits-per-byte.
/// Byte-level BPE tokens are strings of byte-alphabet chars, one char per byte; other
/// tokenizers are measured by decoding each id on its own.
pub fn token_byte_lengths(tok: &Tokenizer, n: usize) -> Vec<u32> {
    use tokenizers::PreTokenizerWrapper;
    let byte_level = matches!(tok.get_pre_tokenizer(), Some(PreTokenizerWrapper::ByteLevel(_)));
    let special: std::collections::HashSet<u32> = tok.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).collect();
    (0..n as u32)
        .map(|id| match tok.id_to_token(id) {
            _ if special.contains(&id) => 0,
            None => 0,
            Some(s) if byte_level => s.chars().count() as u32,
            Some(_) => tok.decode(&[id], false).map(|s| s.len() as u32).unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDir;
    use super::*;

    const TEXT: &str = "It was the best of times, it was the worst of times, it was the age of wisdom, \
        it was the age of foolishness. Ça va? Naïve café — “quoted” 日本語 text.\n\n\tTabs  and  spaces\r\n";

    #[test]
    fn trained_tokenizer_round_trips_and_saves() {
        let corpus: Vec<String> = (0..50).map(|i| format!("{TEXT} number {i}")).collect();
        let tok = train_bpe(corpus.iter().map(|s| s.as_str()), 300).unwrap();
        assert_eq!(tok.get_vocab_size(true), 300);
        assert_eq!(eot_id(&tok), Some(0));
        let enc = tok.encode(TEXT, false).unwrap();
        assert!(enc.get_ids().len() < TEXT.len(), "merges should compress");
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), TEXT);
        // Unseen characters still encode (byte fallback through the byte alphabet).
        let odd = "🦀 Ωmega";
        assert_eq!(tok.decode(tok.encode(odd, false).unwrap().get_ids(), false).unwrap(), odd);

        let d = TestDir::new("tokenizer");
        let p = d.join("tokenizer.json");
        save_tokenizer(&tok, &p).unwrap();
        let back = load_tokenizer(&p).unwrap();
        assert_eq!(back.encode(TEXT, false).unwrap().get_ids(), enc.get_ids());
        std::fs::write(&p, "{ not json").unwrap();
        let e = load_tokenizer(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: not a valid tokenizer.json (", p.display())) && !e.contains('\n'), "{e}");
        let e = load_tokenizer(&d.join("nope.json")).unwrap_err().to_string();
        assert!(e.contains("nope.json does not exist"), "{e}");
    }
}
