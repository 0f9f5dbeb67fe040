//! Building a corpus's token files in passes over its documents, never holding a folder corpus in
//! memory: (1) cut the documents into units and assign them to train / validation / test
//! (`split`); (2) train the BPE on at most `data.tokenizer_sample_bytes` of training units;
//! (3) encode every unit in parallel batches and append it to its split's token file.

use super::corpus::{Corpus, Document, Folder};
use super::split::{self, Block, Split};
use super::tokens::TokenWriter;
use super::OneLine;
use anyhow::Result;
use std::ops::Range;
use std::time::Instant;

/// The documents of a corpus: a built-in one (in memory, tens of MB) or a user folder (streamed).
pub enum Documents {
    Memory(Corpus),
    Folder(Folder),
}

impl Documents {
    pub fn id(&self) -> &str {
        match self {
            Documents::Memory(c) => &c.id,
            Documents::Folder(f) => &f.id,
        }
    }

    pub fn source(&self) -> &str {
        match self {
            Documents::Memory(c) => &c.source,
            Documents::Folder(f) => &f.source,
        }
    }

    /// Hands every document to `each` in the corpus's fixed order; a folder's first pass also
    /// reports (`log`) what it dropped or skipped.
    fn pass(&self, each: &mut dyn FnMut(&Document) -> Result<()>, log: Option<&mut dyn FnMut(&str)>) -> Result<Vec<(String, u64, bool)>> {
        match self {
            Documents::Memory(c) => {
                for d in &c.docs {
                    each(d)?;
                }
                Ok(c.docs.iter().map(|d| (d.name.clone(), d.raw_bytes, d.latin1)).collect())
            }
            Documents::Folder(f) => {
                let pass = f.for_each(each)?;
                if let Some(log) = log {
                    Folder::report(&pass, log);
                }
                Ok(pass.files)
            }
        }
    }
}

/// Where every unit of the corpus goes, without its text.
pub struct Layout {
    pub split: Split,
    /// Per unit, in document order: its byte range in its document and its split (0 train,
    /// 1 validation, 2 test).
    units: Vec<(Range<usize>, u8)>,
    /// Index of each document's first unit in `units` (one more entry at the end).
    first: Vec<usize>,
    /// Per file (a folder) or document (built-in): name, bytes as stored, decoded as Latin-1.
    pub files: Vec<(String, u64, bool)>,
    pub documents: usize,
    pub bytes: u64,
}

/// Pass 1: units and their split.
pub fn layout(docs: &Documents, block_bytes: usize, val_fraction: f64, test_fraction: f64, log: &mut dyn FnMut(&str)) -> Result<Layout> {
    let (mut all, mut first, mut bytes) = (Vec::new(), vec![0], 0u64);
    let files = docs.pass(
        &mut |d| {
            let n = first.len() - 1;
            all.extend(split::units_of(n, d, block_bytes));
            first.push(all.len());
            bytes += d.text.len() as u64;
            Ok(())
        },
        Some(log),
    )?;
    let documents = first.len() - 1;
    log(&format!("corpus {}: {documents} documents, {:.1} MB ({})", docs.id(), bytes as f64 / 1e6, docs.source()));
    let ranges: Vec<Range<usize>> = all.iter().map(|(b, _)| b.range.clone()).collect();
    let split = split::split_units(all, val_fraction, test_fraction)?;
    let mut side = vec![0u8; ranges.len()];
    for (s, part) in [(1u8, &split.val), (2, &split.test)] {
        for b in part.iter() {
            side[first[b.doc] + b.index] = s;
        }
    }
    let units = ranges.into_iter().zip(side).collect();
    Ok(Layout { split, units, first, files, documents, bytes })
}

impl Layout {
    /// The units of document number `d`: (range, split).
    fn of(&self, d: usize) -> &[(Range<usize>, u8)] {
        &self.units[self.first[d]..self.first[d + 1]]
    }

    pub fn bytes_of(blocks: &[Block]) -> u64 {
        blocks.iter().map(|b| b.range.len() as u64).sum()
    }
}

/// Pass 2: the training units' text, in order, up to `cap` bytes (the tokenizer's sample).
pub fn sample(docs: &Documents, layout: &Layout, cap: u64) -> Result<Vec<String>> {
    let (mut out, mut taken, mut d) = (Vec::new(), 0u64, 0);
    docs.pass(
        &mut |doc| {
            for (range, side) in layout.of(d) {
                if *side == 0 && taken < cap {
                    let end = floor_boundary(&doc.text, range.start + (range.len() as u64).min(cap - taken) as usize);
                    out.push(doc.text[range.start..end].to_string());
                    taken += (end - range.start) as u64;
                }
            }
            d += 1;
            Ok(())
        },
        None,
    )?;
    Ok(out)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Text per `encode_batch_fast` call: bounds the memory held by `Encoding`s (tens of bytes per
/// token) while leaving enough units to keep every core busy.
const ENCODE_CHUNK_BYTES: usize = 8 << 20;

/// One split's units waiting to be encoded, and its token file.
struct Pending {
    texts: Vec<String>,
    eot_after: Vec<bool>,
    bytes: usize,
    writer: TokenWriter,
}

impl Pending {
    fn flush(&mut self, tok: &tokenizers::Tokenizer, eot: Option<u32>) -> Result<u64> {
        if self.texts.is_empty() {
            return Ok(0);
        }
        let texts = std::mem::take(&mut self.texts);
        let encodings = tok.encode_batch_fast(texts, false).one_line(|| "tokenization failed".to_string())?;
        let mut n = 0;
        let mut ids: Vec<u32> = Vec::with_capacity(self.bytes / 3);
        for (enc, end) in encodings.iter().zip(std::mem::take(&mut self.eot_after)) {
            ids.extend_from_slice(enc.get_ids());
            if let (true, Some(eot)) = (end, eot) {
                ids.push(eot);
            }
        }
        n += ids.len() as u64;
        self.writer.push(&ids)?;
        self.bytes = 0;
        Ok(n)
    }
}

/// Pass 3: encodes every unit into its split's writer (None: that split's file is kept) and
/// finishes the files. A unit is followed by `eot` when the next unit of its split is not the next
/// span of the same document, so every split is a stream of whole-document pieces separated by
/// `eot`. Returns the tokens written per split.
pub fn encode(docs: &Documents, layout: &Layout, tok: &tokenizers::Tokenizer, eot: Option<u32>, writers: [Option<TokenWriter>; 3], log: &mut dyn FnMut(&str)) -> Result<[u64; 3]> {
    let mut tok = tok.clone();
    tok.with_truncation(None).one_line(|| "cannot disable truncation".to_string())?;
    tok.with_padding(None);
    let mut pending: Vec<Option<Pending>> = writers.into_iter().map(|w| w.map(|writer| Pending { texts: vec![], eot_after: vec![], bytes: 0, writer })).collect();
    let total: u64 = pending.iter().zip([&layout.split.train, &layout.split.val, &layout.split.test]).filter(|(p, _)| p.is_some()).map(|(_, b)| Layout::bytes_of(b)).sum();
    let bar = crate::progress::bytes_bar(total, "encoding");
    let (t, mut done, mut tokens, mut d) = (Instant::now(), 0u64, 0u64, 0usize);
    let mut counts = [0u64; 3];
    docs.pass(
        &mut |doc| {
            let units = layout.of(d);
            for (k, (range, side)) in units.iter().enumerate() {
                let Some(p) = pending[*side as usize].as_mut() else { continue };
                p.texts.push(doc.text[range.clone()].to_string());
                p.eot_after.push(units.get(k + 1).is_none_or(|next| next.1 != *side));
                p.bytes += range.len();
                done += range.len() as u64;
                if p.bytes >= ENCODE_CHUNK_BYTES {
                    let n = p.flush(&tok, eot)?;
                    counts[*side as usize] += n;
                    tokens += n;
                    bar.set_position(done);
                    bar.set_message(format!("{} docs, {:.0}k tokens/s", d + 1, tokens as f64 / t.elapsed().as_secs_f64() / 1e3));
                }
            }
            d += 1;
            Ok(())
        },
        None,
    )?;
    for (s, p) in pending.into_iter().enumerate() {
        if let Some(mut p) = p {
            counts[s] += p.flush(&tok, eot)?;
            p.writer.finish()?;
        }
    }
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    log(&format!(
        "encoded {:.1} MB into {} tokens in {secs:.1}s ({:.1} MB/s, {:.0}k tokens/s)",
        total as f64 / 1e6,
        counts.iter().sum::<u64>(),
        total as f64 / 1e6 / secs.max(1e-9),
        counts.iter().sum::<u64>() as f64 / secs.max(1e-9) / 1e3
    ));
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::{train_bpe, EOT};
    use super::super::TokenFile;
    use super::*;

    #[test]
    fn units_stream_to_their_splits_with_eot_after_each_documents_last_piece() {
        let text = "the whale and the ship and the sea. ".repeat(40);
        let tok = train_bpe([text.as_str()].into_iter(), 300).unwrap();
        let doc = |name: &str, text: &str| Document { name: name.into(), text: text.into(), raw_bytes: text.len() as u64, latin1: false };
        let docs = Documents::Memory(Corpus { id: "t".into(), source: "test".into(), docs: vec![doc("a", "aaa bbb"), doc("b", "ccc"), doc("c", "ddd eee")], sources: vec![] });
        // document a is two units, one in training and one held out; b and c are whole
        let block = |doc, index, range| Block { doc, index, range };
        let split = Split { train: vec![block(0, 0, 0..4), block(2, 0, 0..7)], val: vec![block(0, 1, 4..7)], test: vec![block(1, 0, 0..3)] };
        let layout = Layout { split, units: vec![(0..4, 0), (4..7, 1), (0..3, 2), (0..7, 0)], first: vec![0, 2, 3, 4], files: vec![], documents: 3, bytes: 17 };
        let d = super::super::tests::TestDir::new("encode");
        let writers = ["train", "val", "test"].map(|n| Some(TokenWriter::create(&d.join(n), 300).unwrap()));
        let counts = encode(&docs, &layout, &tok, Some(0), writers, &mut |_| {}).unwrap();
        let read = |n: &str| {
            let f = TokenFile::open(&d.join(n)).unwrap();
            let mut ids = vec![0; f.len()];
            f.read_into(0, &mut ids);
            tok.decode(&ids, false).unwrap()
        };
        // every piece of a document that ends a run of its split is followed by the separator
        assert_eq!(read("train"), format!("aaa {EOT}ddd eee{EOT}"));
        assert_eq!(read("val"), format!("bbb{EOT}"));
        assert_eq!(read("test"), format!("ccc{EOT}"));
        assert_eq!(counts.iter().sum::<u64>(), ["train", "val", "test"].iter().map(|n| TokenFile::open(&d.join(n)).unwrap().len() as u64).sum::<u64>());
        // the tokenizer's sample is the training units in order, cut at the cap
        assert_eq!(sample(&docs, &layout, 100).unwrap(), ["aaa ", "ddd eee"]);
        assert_eq!(sample(&docs, &layout, 6).unwrap(), ["aaa ", "dd"]);
        // without a separator in the tokenizer, none is written; a file not asked for is kept
        let writers = [Some(TokenWriter::create(&d.join("train2"), 300).unwrap()), None, None];
        encode(&docs, &layout, &tok, None, writers, &mut |_| {}).unwrap();
        assert_eq!(read("train2"), "aaa ddd eee");
    }
}
