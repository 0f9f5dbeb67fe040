//! Cutting documents into held-out units and assigning them to train / validation / test.
//!
//! A unit is a whole document, or — for a document longer than `span_bytes` (a whole book) —
//! a long contiguous span of it cut at a paragraph boundary. Units are taken in the order of a
//! stable hash of `"{name}#{index}"` into the test split, then the validation split, until each
//! holds its share of the corpus's bytes (a unit that would take a split past 1.5× its share is
//! left for the next), and the rest is training text. So the choice is the same on every
//! machine, whole short documents are held out, and a split never takes more than its share by
//! more than half of it (or one unit when it would be empty otherwise).

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
        let cut = ["\n\n", "\n", ". "].iter().find_map(|sep| window.rfind(sep).map(|i| i + sep.len()).filter(|&c| c >= min)).unwrap_or(window.len());
        out.push(start..start + cut);
        start += cut;
    }
    out
}

/// A held-out unit: a document or one span of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Index into `Corpus::docs`.
    pub doc: usize,
    /// Position of the span within its document (0 for a whole document).
    pub index: usize,
    pub range: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Units in document order.
    pub train: Vec<Block>,
    pub val: Vec<Block>,
    pub test: Vec<Block>,
}

/// Stable 64-bit hash of `"{name}#{index}"`: first 8 bytes of SHA-256, big-endian.
pub fn block_hash(name: &str, index: usize) -> u64 {
    let d = Sha256::digest(format!("{name}#{index}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap())
}

/// Splits the corpus into units (see the module doc) and assigns them: test gets
/// `test_fraction` of the bytes, validation `val_fraction`, training the rest; each of the
/// three gets at least one unit.
pub fn split_corpus(docs: &[Document], span_bytes: usize, val_fraction: f64, test_fraction: f64) -> Result<Split> {
    let mut units: Vec<(Block, u64)> = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        units.extend(units_of(d, doc, span_bytes));
    }
    split_units(units, val_fraction, test_fraction)
}

/// The units of document number `d`, each with its hash.
pub fn units_of(d: usize, doc: &Document, span_bytes: usize) -> impl Iterator<Item = (Block, u64)> + '_ {
    split_document(&doc.text, span_bytes).into_iter().enumerate().map(move |(index, range)| (Block { doc: d, index, range }, block_hash(&doc.name, index)))
}

/// Assigns units (in document order, with their hashes) as [`split_corpus`] does; needs only
/// their sizes and hashes, not the text.
pub fn split_units(units: Vec<(Block, u64)>, val_fraction: f64, test_fraction: f64) -> Result<Split> {
    if units.len() < 3 {
        bail!("corpus has {} unit(s) of text; need at least 3 (training, validation, test): add text or lower data.block_bytes", units.len());
    }
    let total: usize = units.iter().map(|u| u.0.range.len()).sum();
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (units[i].1, i));
    // 0 = train, 1 = val, 2 = test
    let mut side = vec![0u8; units.len()];
    let targets = [(2u8, test_fraction), (1u8, val_fraction)];
    let mut held = [0usize; 3];
    for &i in &order {
        let len = units[i].0.range.len();
        for &(s, frac) in &targets {
            let target = frac * total as f64;
            if (held[s as usize] as f64) < target && (held[s as usize] + len) as f64 <= 1.5 * target {
                side[i] = s;
                held[s as usize] += len;
                break;
            }
        }
    }
    // a split that no unit fit gets the smallest training unit (hash order among equals)
    for s in [2u8, 1] {
        if !side.contains(&s) {
            let i = order.iter().copied().filter(|&i| side[i] == 0).min_by_key(|&i| units[i].0.range.len()).expect("3 units");
            side[i] = s;
        }
    }
    if !side.contains(&0) {
        bail!("corpus has too little text for a training split after holding out validation and test: add text or lower data.block_bytes");
    }
    let mut split = Split::default();
    for ((block, _), s) in units.into_iter().zip(side) {
        match s {
            0 => split.train.push(block),
            1 => split.val.push(block),
            _ => split.test.push(block),
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
    fn split_is_stable_whole_documents_and_proportional() {
        // Pinned value: if this changes, every cached split on every machine changes.
        assert_eq!(block_hash("a.txt", 0), 0xd1f0c837c3b34d5f);
        // 300 short documents (speeches) and 4 long ones (books)
        let mut docs: Vec<Document> = (0..300).map(|i| doc(&format!("s{i:03}.txt"), prose(i, 20_000 + (i as usize % 7) * 3000, "\n\n", "\n"))).collect();
        docs.extend((0..4).map(|i| doc(&format!("book{i}.txt"), prose(1000 + i, 1_500_000, "\n\n", "\n"))));
        let total: usize = docs.iter().map(|d| d.text.len()).sum();
        let s1 = split_corpus(&docs, 262_144, 0.02, 0.03).unwrap();
        let s2 = split_corpus(&docs, 262_144, 0.02, 0.03).unwrap();
        assert_eq!((&s1.train, &s1.val, &s1.test), (&s2.train, &s2.val, &s2.test));
        let bytes = |b: &[Block]| b.iter().map(|b| b.range.len()).sum::<usize>();
        let largest = |b: &[Block]| b.iter().map(|b| b.range.len()).max().unwrap_or(0);
        for (part, frac) in [(&s1.val, 0.02), (&s1.test, 0.03)] {
            let got = bytes(part) as f64;
            let want = frac * total as f64;
            assert!(got >= want - largest(&s1.train) as f64 && got <= 1.5 * want, "{got} vs share {want}");
        }
        // every unit in exactly one split, in document order; short documents held out whole
        let mut all: Vec<&Block> = s1.train.iter().chain(&s1.val).chain(&s1.test).collect();
        assert_eq!(bytes(&s1.train) + bytes(&s1.val) + bytes(&s1.test), total);
        all.sort_by_key(|b| (b.doc, b.index));
        all.dedup();
        assert_eq!(all.len(), s1.train.len() + s1.val.len() + s1.test.len());
        for part in [&s1.train, &s1.val, &s1.test] {
            for w in part.windows(2) {
                assert!((w[0].doc, w[0].index) < (w[1].doc, w[1].index), "units out of document order");
            }
        }
        for b in s1.val.iter().chain(&s1.test).filter(|b| b.doc < 300) {
            assert_eq!(b.range, 0..docs[b.doc].text.len(), "a short document is held out whole");
        }
        assert!(s1.val.iter().chain(&s1.test).any(|b| b.doc < 300));
    }

    #[test]
    fn split_guarantees_one_unit_each_and_refuses_tiny_corpora() {
        let docs: Vec<Document> = (0..3).map(|i| doc(&format!("{i}.txt"), prose(7 + i, 1500, "\n\n", "\n"))).collect();
        for frac in [1e-9, 0.3] {
            let s = split_corpus(&docs, 100_000, frac, frac).unwrap();
            assert_eq!((s.train.len(), s.val.len(), s.test.len()), (1, 1, 1), "fraction {frac}");
        }
        // a folder of one small and one large file: the split takes at most its share ±1 unit
        let docs = vec![doc("a.jsonl.txt", prose(1, 64_000, "\n\n", "\n")), doc("b.txt", prose(2, 137_000, "\n\n", "\n"))];
        let s = split_corpus(&docs, 4096, 0.02, 0.02).unwrap();
        let held: usize = s.val.iter().chain(&s.test).map(|b| b.range.len()).sum();
        assert!(held <= 3 * 4096 + (0.04 * 201_000.0) as usize, "held out {held} bytes");
        let e = split_corpus(&docs[..1], 100_000, 0.02, 0.02).unwrap_err().to_string();
        assert!(e.contains("need at least 3"), "{e}");
    }
}
