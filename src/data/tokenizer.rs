//! Byte-level BPE (GPT-2 style) with Hugging Face `tokenizers`: train, load, save, encode.
//!
//! Byte-level means every string is encodable (256-symbol base alphabet, no unknown
//! token) and `decode(encode(s)) == s`, and the saved `tokenizer.json` is the standard
//! format that Python `tokenizers`/`transformers` load as-is.

use super::corpus::Document;
use super::split::Block;
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

/// Text per `encode_batch_fast` call: bounds the memory held by `Encoding`s
/// (tens of bytes per token) while leaving enough blocks to keep every core busy.
const ENCODE_CHUNK_BYTES: usize = 8 << 20;

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

/// Encodes the blocks of one split in order (in parallel, chunk by chunk) and appends
/// `eot` after the last block of each document *within this split*, so every split is
/// a stream of whole-document pieces separated by `eot`. No special tokens are added
/// per block, and any truncation/padding in a loaded tokenizer.json is switched off so
/// no text is lost.
pub fn encode_split(tok: &Tokenizer, docs: &[Document], blocks: &[Block], eot: Option<u32>) -> Result<Vec<u32>> {
    let mut tok = tok.clone();
    tok.with_truncation(None).one_line(|| "cannot disable truncation".to_string())?;
    tok.with_padding(None);
    let total_bytes: usize = blocks.iter().map(|b| b.range.len()).sum();
    // ~4 bytes per token for English BPE; only a capacity hint.
    let mut out: Vec<u32> = Vec::with_capacity(total_bytes / 3 + blocks.len());
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i;
        let mut bytes = 0;
        while j < blocks.len() && (j == i || bytes + blocks[j].range.len() <= ENCODE_CHUNK_BYTES) {
            bytes += blocks[j].range.len();
            j += 1;
        }
        let texts: Vec<&str> = blocks[i..j].iter().map(|b| &docs[b.doc].text[b.range.clone()]).collect();
        let encodings = tok.encode_batch_fast(texts, false).one_line(|| "tokenization failed".to_string())?;
        for (k, enc) in encodings.iter().enumerate() {
            out.extend_from_slice(enc.get_ids());
            let b = i + k;
            // a document ends, or the next unit of the split is not the next span of this one
            let last_of_doc = b + 1 == blocks.len() || blocks[b + 1].doc != blocks[b].doc || blocks[b + 1].index != blocks[b].index + 1;
            if let (true, Some(eot)) = (last_of_doc, eot) {
                out.push(eot);
            }
        }
        i = j;
    }
    Ok(out)
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

    #[test]
    fn encode_split_appends_eot_after_each_documents_last_block() {
        let corpus: Vec<String> = (0..20).map(|i| format!("{TEXT} {i}")).collect();
        let tok = train_bpe(corpus.iter().map(|s| s.as_str()), 280).unwrap();
        let docs: Vec<Document> = ["aaa bbb", "ccc", "ddd eee"].iter().map(|t| Document { name: t.to_string(), text: t.to_string(), raw_bytes: 0, latin1: false }).collect();
        let blocks = vec![Block { doc: 0, index: 0, range: 0..4 }, Block { doc: 0, index: 1, range: 4..7 }, Block { doc: 2, index: 0, range: 0..7 }];
        let ids = encode_split(&tok, &docs, &blocks, Some(0)).unwrap();
        let eots: Vec<usize> = ids.iter().enumerate().filter(|(_, &t)| t == 0).map(|(i, _)| i).collect();
        assert_eq!(eots.len(), 2, "{ids:?}");
        assert_eq!(*eots.last().unwrap(), ids.len() - 1);
        assert_eq!(tok.decode(&ids, false).unwrap(), format!("aaa bbb{EOT}ddd eee{EOT}"));
        let no_eot = encode_split(&tok, &docs, &blocks, None).unwrap();
        assert_eq!(no_eot.len(), ids.len() - 2);
    }
}
