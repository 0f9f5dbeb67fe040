//! Character vectors from an R lazy-load database (`data/Rdata.rdb` + `data/Rdata.rdx`).
//!
//! `Rdata.rdx` is a gzip-compressed serialized list `(variables, references, compressed)`;
//! `variables` is a named list mapping each object name to an integer vector
//! `(offset, length)` into `Rdata.rdb`. There every object is a 4-byte big-endian
//! uncompressed length followed by a zlib stream (`compressed = TRUE`). Each object is in
//! R's XDR serialization (read by the private `xdr` module). A character vector (STRSXP) holds one string per
//! line; NA becomes an empty line; strings flagged Latin-1 are decoded as such, all others
//! must be valid UTF-8.

use anyhow::{anyhow, Result};
use flate2::read::{GzDecoder, ZlibDecoder};
use std::io::Read;
use std::path::Path;
use xdr::{unserialize, Reader, Value, STRSXP, TYPE_NAMES};

mod xdr;

/// Returns `(object name, text)` for every object of the database, sorted by name; the text
/// is the vector's elements joined with newlines, trimmed. Objects that are not character
/// vectors are an error.
pub fn r_character_vectors(rdb: &Path, rdx: &Path) -> Result<Vec<(String, String)>> {
    let (db, index) = (read_file(rdb)?, read_file(rdx)?);
    character_vectors(&rdb.display().to_string(), &db, &rdx.display().to_string(), index)
}

/// [`r_character_vectors`] over the files' bytes (`rdb` and `rdx` name them in errors).
pub fn character_vectors(rdb: &str, db: &[u8], rdx: &str, index: Vec<u8>) -> Result<Vec<(String, String)>> {
    let index = if index.starts_with(b"X\n") {
        index
    } else {
        let mut raw = Vec::new();
        GzDecoder::new(index.as_slice()).read_to_end(&mut raw).map_err(|e| anyhow!("{rdx}: not a gzip stream: {e}"))?;
        raw
    };
    let bad_index = |what: &str| anyhow!("{rdx}: {what}");
    let root = unserialize(&index).map_err(|e| bad_index(&e.to_string()))?;
    let compressed = match root.field("compressed") {
        Some(Value::Ints(v)) => v.first().copied(),
        _ => None,
    };
    if compressed != Some(1) {
        return Err(bad_index("expected `compressed` = TRUE (zlib); other codecs are not supported"));
    }
    let Some(Value::List(objects, names)) = root.field("variables") else {
        return Err(bad_index("expected a named list `variables`"));
    };
    let mut out = Vec::new();
    for (obj, name) in objects.iter().zip(names) {
        let bad = |what: String| anyhow!("{rdb}: object '{name}': {what}");
        let (offset, len) = match obj {
            Value::Ints(v) if v.len() == 2 && v[0] >= 0 && v[1] >= 0 => (v[0] as usize, v[1] as usize),
            _ => {
                let what = format!("entry '{name}' is not an integer (offset, length) pair");
                return Err(bad_index(&what));
            }
        };
        let raw = inflate_object(db, offset, len).map_err(bad)?;
        let mut r = Reader::new(&raw).map_err(|e| bad(e.to_string()))?;
        let ty = r.peek_type().map_err(|e| bad(e.to_string()))?;
        if ty != STRSXP {
            let kind = TYPE_NAMES.split_whitespace().nth(ty as usize).unwrap_or("?");
            return Err(bad(format!("is an R object of type {kind} ({ty}), expected a character vector (STRSXP)")));
        }
        if let Value::Str(lines) = r.item(0).map_err(|e| bad(e.to_string()))? {
            let lines: Vec<&str> = lines.iter().map(|l| l.as_deref().unwrap_or("")).collect();
            out.push((name.clone(), lines.join("\n").trim().to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// The object at `offset`: a 4-byte big-endian uncompressed length, then a zlib stream.
fn inflate_object(db: &[u8], offset: usize, len: usize) -> Result<Vec<u8>, String> {
    let Some(bytes) = db.get(offset..offset.saturating_add(len)) else {
        let size = db.len();
        return Err(format!("points past the end of the file (offset {offset} + length {len} > {size})"));
    };
    let Some((head, stream)) = bytes.split_first_chunk::<4>() else {
        return Err(format!("length {len} is too short for the 4-byte size header"));
    };
    let expected = u32::from_be_bytes(*head) as usize;
    let mut raw = Vec::with_capacity(expected.min(len.saturating_mul(64)));
    ZlibDecoder::new(stream).read_to_end(&mut raw).map_err(|e| format!("not a zlib stream: {e}"))?;
    if raw.len() != expected {
        return Err(format!("decompressed to {} bytes, expected {expected}", raw.len()));
    }
    Ok(raw)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))
}

#[cfg(test)]
mod tests;
