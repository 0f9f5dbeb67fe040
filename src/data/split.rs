//! Cutting documents into blocks and assigning blocks to train/validation.
//!
//! Documents are few and long (whole books), so splitting by document would make the
//! validation set a handful of books; instead each document is cut into ~`block_bytes`
//! blocks at natural boundaries, and each block goes to a split by a stable hash of its
//! name, so the split is identical on every machine and across runs.

use super::corpus::Document;
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Largest char boundary <= i.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cuts `text` into consecutive byte ranges of at most `block_bytes` that together cover
/// it exactly. Each cut is the last paragraph break (blank line) in the second half of
/// the window; failing that a line break, then a sentence end `". "`, then a hard cut at
/// a char boundary. So every block but the last is between half and all of `block_bytes`.
pub fn split_document(text: &str, block_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        if text.len() - start <= block_bytes {
            out.push(start..text.len());
            break;
        }
        let mut limit = floor_boundary(text, start + block_bytes);
        if limit == start {
            // block_bytes smaller than one character: take the character whole.
            limit = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
        let window = &text[start..limit];
        let min = block_bytes / 2;
        let cut = ["\n\n", "\n", ". "]
            .iter()
            .find_map(|sep| window.rfind(sep).map(|i| i + sep.len()).filter(|&c| c >= min))
            .unwrap_or(window.len());
        out.push(start..start + cut);
        start += cut;
    }
    out
}

/// A block of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Index into `Corpus::docs`.
    pub doc: usize,
    /// Position of the block within its document.
    pub index: usize,
    pub range: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Blocks in document order.
    pub train: Vec<Block>,
    pub val: Vec<Block>,
}

/// Stable 64-bit hash of `"{name}#{index}"`: first 8 bytes of SHA-256, big-endian.
pub fn block_hash(name: &str, index: usize) -> u64 {
    let d = Sha256::digest(format!("{name}#{index}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap())
}

/// Splits every document into blocks and sends a block to validation iff its hash lies
/// in the lowest `val_fraction` of the u64 range. Guarantees >= 1 block on each side
/// (moving the smallest-hash block to validation, or the largest-hash one to training).
pub fn split_corpus(docs: &[Document], block_bytes: usize, val_fraction: f64) -> Result<Split> {
    let threshold = (val_fraction * 18_446_744_073_709_551_616.0) as u64;
    let mut all: Vec<(Block, u64, bool)> = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        for (index, range) in split_document(&doc.text, block_bytes).into_iter().enumerate() {
            let h = block_hash(&doc.name, index);
            all.push((Block { doc: d, index, range }, h, h < threshold));
        }
    }
    if all.len() < 2 {
        bail!(
            "corpus has {} block(s) of text; need at least 2 (one for training, one for validation): add text or lower data.block_bytes",
            all.len()
        );
    }
    if !all.iter().any(|b| b.2) {
        let i = (0..all.len()).min_by_key(|&i| all[i].1).unwrap();
        all[i].2 = true;
    }
    if all.iter().all(|b| b.2) {
        let i = (0..all.len()).max_by_key(|&i| all[i].1).unwrap();
        all[i].2 = false;
    }
    let mut split = Split::default();
    for (block, _, is_val) in all {
        if is_val {
            split.val.push(block)
        } else {
            split.train.push(block)
        }
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, text: String) -> Document {
        Document { name: name.into(), raw_bytes: text.len() as u64, text, latin1: false }
    }

    /// Deterministic pseudo-English: paragraphs of 1..12 sentences.
    fn prose(seed: u64, bytes: usize, para_sep: &str, line_sep: &str) -> String {
        let words = ["the", "whale", "ship", "sea", "captain", "said", "and", "of", "was", "a", "Ahab", "white"];
        let mut s = String::new();
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        while s.len() < bytes {
            for _ in 0..1 + next() % 12 {
                for w in 0..3 + next() % 10 {
                    s.push_str(if w == 0 {
                        ""
                    } else if w % 7 == 0 {
                        line_sep
                    } else {
                        " "
                    });
                    s.push_str(words[next() % words.len()]);
                }
                s.push_str(". ");
            }
            s.push_str(para_sep);
        }
        s
    }

    fn check_cover(text: &str, blocks: &[Range<usize>], b: usize) {
        assert_eq!(blocks.first().unwrap().start, 0);
        assert_eq!(blocks.last().unwrap().end, text.len());
        for w in blocks.windows(2) {
            assert_eq!(w[0].end, w[1].start, "blocks must be contiguous");
        }
        for (i, r) in blocks.iter().enumerate() {
            assert!(r.len() <= b, "block {i} has {} > {b} bytes", r.len());
            if i + 1 < blocks.len() {
                assert!(r.len() >= b / 2, "block {i} has only {} bytes", r.len());
            }
        }
    }

    #[test]
    fn blocks_cut_at_paragraphs_then_lines_then_sentences_then_chars() {
        let b = 2048;
        let text = prose(1, 50_000, "\n\n", "\n");
        let blocks = split_document(&text, b);
        check_cover(&text, &blocks, b);
        assert!(blocks.len() >= 25);
        for r in &blocks[..blocks.len() - 1] {
            assert!(text[..r.end].ends_with("\n\n"), "cut not at a blank line: {:?}", &text[r.end - 10..r.end]);
        }
        let text = prose(2, 50_000, "\n", "\n");
        let blocks = split_document(&text, b);
        check_cover(&text, &blocks, b);
        for r in &blocks[..blocks.len() - 1] {
            assert!(text[..r.end].ends_with('\n'));
        }
        let text = prose(3, 50_000, "", " ");
        assert!(!text.contains('\n'));
        let blocks = split_document(&text, b);
        check_cover(&text, &blocks, b);
        for r in &blocks[..blocks.len() - 1] {
            assert!(text[..r.end].ends_with(". "));
        }
        // No separators at all, multi-byte chars: hard cuts, always at char boundaries
        // (slicing below would panic otherwise).
        let text = "é€x".repeat(3000);
        let blocks = split_document(&text, 1024);
        check_cover(&text, &blocks, 1024);
        let joined: String = blocks.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        // Short document: one block; empty document: none.
        assert_eq!(split_document("hello", 1024), vec![0..5]);
        assert!(split_document("", 1024).is_empty());
    }

    #[test]
    fn split_is_stable_deterministic_and_roughly_proportional() {
        // Pinned value: if this changes, every cached split on every machine changes.
        assert_eq!(block_hash("a.txt", 0), 0xd1f0c837c3b34d5f);
        let docs: Vec<Document> =
            (0..40).map(|i| doc(&format!("d{i:02}.txt"), prose(i, 100_000, "\n\n", "\n"))).collect();
        let s1 = split_corpus(&docs, 2048, 0.1).unwrap();
        let s2 = split_corpus(&docs, 2048, 0.1).unwrap();
        assert_eq!((&s1.train, &s1.val), (&s2.train, &s2.val));
        let total = s1.train.len() + s1.val.len();
        assert!(total > 1500, "{total}");
        let frac = s1.val.len() as f64 / total as f64;
        assert!((0.07..0.13).contains(&frac), "val fraction {frac}");
        for part in [&s1.train, &s1.val] {
            for w in part.windows(2) {
                assert!((w[0].doc, w[0].index) < (w[1].doc, w[1].index), "blocks out of document order");
            }
        }
        let s3 = split_corpus(&docs, 2048, 0.3).unwrap();
        let frac = s3.val.len() as f64 / total as f64;
        assert!((0.26..0.34).contains(&frac), "val fraction {frac}");
        // Growing the fraction only adds validation blocks (threshold rule).
        assert!(s1.val.iter().all(|b| s3.val.contains(b)));
    }

    #[test]
    fn split_guarantees_one_block_each_side() {
        let docs = vec![doc("a.txt", prose(7, 1500, "\n\n", "\n")), doc("b.txt", prose(8, 1500, "\n\n", "\n"))];
        for frac in [1e-9, 0.5] {
            let s = split_corpus(&docs, 100_000, frac).unwrap();
            assert_eq!((s.train.len(), s.val.len()), (1, 1), "val_fraction {frac}");
        }
        let s = split_corpus(&docs, 100_000, 1e-9).unwrap();
        let smallest = if block_hash("a.txt", 0) < block_hash("b.txt", 0) { 0 } else { 1 };
        assert_eq!(s.val[0].doc, smallest);
        let e = split_corpus(&docs[..1], 100_000, 0.5).unwrap_err().to_string();
        assert!(e.contains("need at least 2"), "{e}");
    }
}
