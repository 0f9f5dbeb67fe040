//! Streaming text out of a byte-level tokenizer without cutting characters: token ids become the
//! bytes they stand for, and only complete UTF-8 sequences are written; an incomplete sequence at
//! the end waits for the next token.

use std::collections::HashMap;

/// GPT-2's byte ↔ printable-char alphabet (what byte-level BPE vocab strings are written in).
fn byte_alphabet() -> HashMap<char, u8> {
    let mut bytes: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    bytes.into_iter().zip(chars).map(|(b, c)| (char::from_u32(c).expect("valid char"), b as u8)).collect()
}

/// The bytes of each token id of a tokenizer (special tokens: none).
pub struct TokenBytes {
    bytes: Vec<Vec<u8>>,
}

impl TokenBytes {
    /// For a byte-level BPE tokenizer each vocab string maps back to raw bytes; other tokenizers
    /// fall back to decoding each id on its own.
    pub fn new(tok: &tokenizers::Tokenizer) -> Self {
        use tokenizers::PreTokenizerWrapper;
        let byte_level = matches!(tok.get_pre_tokenizer(), Some(PreTokenizerWrapper::ByteLevel(_)));
        let alphabet = byte_alphabet();
        let special: std::collections::HashSet<u32> = tok.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).collect();
        let n = tok.get_vocab_size(true) as u32;
        let bytes = (0..n)
            .map(|id| match tok.id_to_token(id) {
                _ if special.contains(&id) => vec![],
                None => vec![],
                Some(s) if byte_level => s.chars().filter_map(|c| alphabet.get(&c).copied()).collect(),
                Some(_) => tok.decode(&[id], false).map(String::into_bytes).unwrap_or_default(),
            })
            .collect();
        Self { bytes }
    }

    pub fn of(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }
}

/// Bytes in, complete UTF-8 out.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes; returns the text that is complete now. Bytes that can never be valid UTF-8
    /// come out as U+FFFD (as a lossy decode would); a sequence cut at the end is kept back.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..good]).expect("valid prefix"));
                    match e.error_len() {
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end (an unfinished sequence, lossily).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_byte_characters_split_across_pushes_come_out_whole() {
        let text = "door’s café — 日本語 ok";
        let bytes = text.as_bytes();
        for cut in 1..5 {
            let mut s = Utf8Stream::default();
            let mut out = String::new();
            for chunk in bytes.chunks(cut) {
                let part = s.push(chunk);
                assert!(!part.contains('\u{FFFD}'), "cut {cut}: {part:?}");
                out += &part;
            }
            out += &s.finish();
            assert_eq!(out, text);
        }
        // an invalid byte is replaced, the rest flows on
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"a\xffb\xe2\x80"), "a\u{FFFD}b");
        assert_eq!(s.push(b"\x99c"), "’c");
        assert_eq!(s.push(b"\xe6"), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn token_bytes_of_a_byte_level_bpe_rebuild_the_text() {
        let corpus = "café naïve — 日本語の本 door’s café naïve 日本 ".repeat(50);
        let tok = crate::data::tokenizer::train_bpe([corpus.as_str()].into_iter(), 300).unwrap();
        let tb = TokenBytes::new(&tok);
        let text = "a café door’s 日本語 猫"; // 猫 is unseen: three byte tokens
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        let mut s = Utf8Stream::default();
        let streamed: String = ids.iter().map(|&id| s.push(tb.of(id))).collect::<String>() + &s.finish();
        assert_eq!(streamed, text);
        assert!(ids.iter().any(|&id| std::str::from_utf8(tb.of(id)).is_err()), "some token must hold part of a character");
    }
}
