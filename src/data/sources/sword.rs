//! SWORD zText / zCom modules with `CompressType=ZIP` (Bibles and commentaries).
//!
//! Each testament (`ot`, `nt`) has a block index `<t>.<b|c|v>zs` (the letter is the block
//! type: book, chapter, verse): an array of 12-byte little-endian records
//! `(offset u32, compressed size u32, uncompressed size u32)` pointing into `<t>.<b|c|v>zz`.
//! Every block is a zlib stream holding UTF-8 OSIS XML (the block's verses concatenated).
//! Records with compressed size 0 are unused. The verse index (`<t>.<b|c|v>zv`) is not needed.

use super::osis::osis_to_text;
use anyhow::{anyhow, bail, Result};
use flate2::read::ZlibDecoder;
use std::io::Read;
use std::path::Path;

const RECORD: usize = 12;

/// Reads every ZIP-compressed block of the SWORD module in `dir` and converts it to text.
///
/// Returns `(name, text)` pairs named `<testament>/<block index, 4 digits>` (e.g. `ot/0003`),
/// in index order (`ot` first), leaving out blocks whose text is empty.
pub fn sword_module(dir: &Path) -> Result<Vec<(String, String)>> {
    let read = |name: &str| std::fs::read(dir.join(name)).ok();
    module_from(&dir.display().to_string(), read)
}

/// [`sword_module`] over files given by name (`ot.bzs`, ...; None when absent), e.g. read
/// from a Debian package; `shown` names the module folder in errors.
pub fn module_from(shown: &str, file: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Vec<(String, String)>> {
    let mut docs = Vec::new();
    let mut found = false;
    for testament in ["ot", "nt"] {
        for block_type in ['b', 'c', 'v'] {
            let index_name = format!("{testament}.{block_type}zs");
            let Some(idx) = file(&index_name) else {
                continue;
            };
            found = true;
            let data_name = format!("{testament}.{block_type}zz");
            let data = file(&data_name).ok_or_else(|| anyhow!("{shown}/{data_name}: missing (its index {index_name} is there)"))?;
            for (i, xml) in sword_blocks(&format!("{shown}/{index_name}"), &idx, &format!("{shown}/{data_name}"), &data)? {
                let text = osis_to_text(&xml);
                if !text.is_empty() {
                    docs.push((format!("{testament}/{i:04}"), text));
                }
            }
        }
    }
    if !found {
        bail!("{shown}: no SWORD block index found (expected ot/nt.bzs, .czs or .vzs)");
    }
    Ok(docs)
}

/// Decompresses the blocks listed in the index `idx` (`*.?zs`, named `index` in errors) from
/// `zz` (`*.?zz`, named `data`).
///
/// Returns `(block index, OSIS XML)` for every record with a non-zero compressed size.
pub fn sword_blocks(index: &str, idx: &[u8], data: &str, zz: &[u8]) -> Result<Vec<(usize, String)>> {
    if !idx.len().is_multiple_of(RECORD) {
        bail!("{index}: length {} is not a multiple of {RECORD} (the block index is made of {RECORD}-byte records)", idx.len());
    }
    let mut blocks = Vec::new();
    for (i, rec) in idx.chunks_exact(RECORD).enumerate() {
        let field = |k: usize| u32::from_le_bytes([rec[k], rec[k + 1], rec[k + 2], rec[k + 3]]);
        let (offset, size, full_size) = (field(0), field(4), field(8));
        if size == 0 {
            continue;
        }
        let end = u64::from(offset) + u64::from(size);
        if end > zz.len() as u64 {
            bail!("{data}: block {i} points past the end of the file (offset {offset} + size {size} > {})", zz.len());
        }
        let compressed = &zz[offset as usize..end as usize];
        let mut raw = Vec::with_capacity(full_size.min(size.saturating_mul(64)) as usize);
        ZlibDecoder::new(compressed).read_to_end(&mut raw).map_err(|e| anyhow!("{data}: block {i} is not a zlib stream: {e}"))?;
        if raw.len() as u64 != u64::from(full_size) {
            bail!("{data}: block {i} decompressed to {} bytes, but the index says {full_size}", raw.len());
        }
        let xml = String::from_utf8(raw).map_err(|e| anyhow!("{data}: block {i} is not valid UTF-8: {e}"))?;
        blocks.push((i, xml));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests;
