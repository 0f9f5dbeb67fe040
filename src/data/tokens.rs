//! Binary token files: a 64-byte little-endian header followed by the token ids.
//!
//! Layout (all integers little-endian):
//! ```text
//! 0..8    magic  b"BAKATOK\0"
//! 8..12   version u32 = 1
//! 12..16  width u32   = 2 (vocab_size <= 65536) or 4 bytes per token
//! 16..20  vocab_size u32 (every token id is < vocab_size)
//! 20..24  reserved u32 = 0
//! 24..32  token count u64
//! 32..64  SHA-256 of the payload
//! 64..    payload: count tokens of `width` bytes each
//! ```
//! Files are memory-mapped on open so training can read random windows without
//! loading the corpus into RAM; the checksum makes silent corruption impossible.

use super::OneLine;
use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BAKATOK\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
/// Tokens converted per chunk when writing (bounds the temporary byte buffer).
const WRITE_CHUNK: usize = 1 << 16;

/// Bytes per token for a vocabulary: u16 when every id fits, else u32.
pub fn width_for(vocab_size: usize) -> usize {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// Appends the little-endian encoding of `tokens` at `width` bytes each to `buf`.
fn encode_chunk(tokens: &[u32], width: usize, buf: &mut Vec<u8>) {
    buf.clear();
    if width == 2 {
        for &t in tokens {
            buf.extend_from_slice(&(t as u16).to_le_bytes());
        }
    } else {
        for &t in tokens {
            buf.extend_from_slice(&t.to_le_bytes());
        }
    }
}

/// Writes a token file atomically. Fails if a token is >= `vocab_size` so a bad
/// tokenizer/vocab combination is caught when the data is made, not mid-training.
pub fn write_token_file(path: &Path, vocab_size: usize, tokens: &[u32]) -> Result<()> {
    let mut w = TokenWriter::create(path, vocab_size)?;
    w.push(tokens)?;
    w.finish()
}

/// A token file written as the tokens come (bounded memory): payload after a blank header into
/// a temporary file, then the header with count and checksum, fsync, rename over `path`.
/// Dropped without `finish`, the temporary file is removed and `path` is untouched.
pub struct TokenWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<File>>,
    width: usize,
    vocab_size: usize,
    count: u64,
    hasher: Sha256,
    buf: Vec<u8>,
}

impl TokenWriter {
    pub fn create(path: &Path, vocab_size: usize) -> Result<Self> {
        if vocab_size == 0 || vocab_size > u32::MAX as usize {
            bail!("{}: vocab_size {} out of range (expected 1..=2^32-1)", path.display(), vocab_size);
        }
        let tmp = crate::fsutil::tmp_path(path);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).one_line(|| format!("cannot create {}", tmp.display()))?);
        file.write_all(&[0u8; HEADER_LEN]).one_line(|| format!("{}: cannot write", path.display()))?;
        let width = width_for(vocab_size);
        Ok(TokenWriter { path: path.to_path_buf(), tmp, file: Some(file), width, vocab_size, count: 0, hasher: Sha256::new(), buf: Vec::with_capacity(WRITE_CHUNK * width) })
    }

    /// Appends tokens; a token >= vocab_size is an error naming its position in the file.
    pub fn push(&mut self, tokens: &[u32]) -> Result<()> {
        if let Some((i, &t)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= self.vocab_size) {
            bail!("{}: token {} at position {} is not below vocab_size {}", self.path.display(), t, self.count + i as u64, self.vocab_size);
        }
        let file = self.file.as_mut().expect("not finished");
        for chunk in tokens.chunks(WRITE_CHUNK) {
            encode_chunk(chunk, self.width, &mut self.buf);
            self.hasher.update(&self.buf);
            file.write_all(&self.buf).one_line(|| format!("{}: write failed", self.path.display()))?;
        }
        self.count += tokens.len() as u64;
        Ok(())
    }

    /// Tokens written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the header, fsyncs and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        let mut header = [0u8; HEADER_LEN];
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(self.width as u32).to_le_bytes());
        header[16..20].copy_from_slice(&(self.vocab_size as u32).to_le_bytes());
        header[20..24].copy_from_slice(&0u32.to_le_bytes());
        header[24..32].copy_from_slice(&self.count.to_le_bytes());
        header[32..64].copy_from_slice(&std::mem::take(&mut self.hasher).finalize());
        let what = || format!("{}: write failed", self.path.display());
        let mut file = self.file.take().expect("not finished").into_inner().map_err(|e| e.into_error()).one_line(what)?;
        file.seek(SeekFrom::Start(0)).one_line(what)?;
        file.write_all(&header).one_line(what)?;
        file.sync_all().one_line(|| format!("{}: cannot fsync", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path).one_line(|| format!("cannot rename {} to {}", self.tmp.display(), self.path.display()))?;
        crate::fsutil::sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        Ok(())
    }
}

impl Drop for TokenWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Storage behind a [`TokenFile`]: a memory map, or nothing for an empty payload
/// (mapping a header-only file is fine, but we never need its bytes after parsing).
enum Storage {
    Mapped(memmap2::Mmap),
    Empty,
}

/// A validated, memory-mapped token file.
pub struct TokenFile {
    path: PathBuf,
    storage: Storage,
    width: usize,
    vocab_size: usize,
    len: usize,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile").field("path", &self.path).field("len", &self.len).field("vocab_size", &self.vocab_size).field("width", &self.width).finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

impl TokenFile {
    /// Opens and fully validates a token file: magic, version, width, exact length
    /// and payload checksum (reads the whole file once). Token ids are not range-checked
    /// here; `write_token_file` already refused out-of-range ids.
    pub fn open(path: &Path) -> Result<Self> {
        let p = path.display();
        let file = File::open(path).one_line(|| format!("{p}: cannot open token file"))?;
        let found = file.metadata().one_line(|| format!("{p}: cannot stat"))?.len();
        if found < HEADER_LEN as u64 {
            let bytes = std::fs::read(path).one_line(|| format!("{p}: cannot read"))?;
            let n = bytes.len().min(MAGIC.len());
            if bytes[..n] != MAGIC[..n] || bytes.is_empty() {
                bail!("{p}: not a bakallm token file (bad magic)");
            }
            bail!("{p}: truncated (expected at least {HEADER_LEN} header bytes, found {found})");
        }
        // SAFETY: the map is read-only; the cache files are only ever replaced by
        // rename (never modified in place), so the mapped pages do not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.one_line(|| format!("{p}: cannot mmap"))?;
        let h = &map[..HEADER_LEN];
        if &h[0..8] != MAGIC {
            bail!("{p}: not a bakallm token file (bad magic)");
        }
        let version = u32_at(h, 8);
        if version != VERSION {
            bail!("{p}: unsupported token file version {version} (expected {VERSION})");
        }
        let width = u32_at(h, 12) as usize;
        let vocab_size = u32_at(h, 16) as usize;
        if vocab_size == 0 {
            bail!("{p}: header says vocab_size 0 (file corrupted?)");
        }
        if width != width_for(vocab_size) {
            bail!("{p}: token width {width} does not match vocab_size {vocab_size} (expected {})", width_for(vocab_size));
        }
        let count = u64::from_le_bytes(h[24..32].try_into().unwrap());
        let expected = count.checked_mul(width as u64).and_then(|b| b.checked_add(HEADER_LEN as u64)).ok_or_else(|| anyhow!("{p}: header token count {count} is impossible (file corrupted?)"))?;
        if found < expected {
            bail!("{p}: truncated (expected {expected} bytes, found {found})");
        }
        if found > expected {
            bail!("{p}: {} trailing bytes (expected {expected} bytes, found {found})", found - expected);
        }
        let digest = Sha256::digest(&map[HEADER_LEN..]);
        if digest[..] != h[32..64] {
            bail!("{p}: checksum mismatch (file corrupted?)");
        }
        let len = usize::try_from(count).one_line(|| format!("{p}: too many tokens for this platform"))?;
        let storage = if len == 0 { Storage::Empty } else { Storage::Mapped(map) };
        Ok(TokenFile { path: path.to_path_buf(), storage, width, vocab_size, len })
    }

    /// Number of tokens in the file.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Vocabulary size recorded in the header; every id is below it.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies tokens `[start, start + out.len())` into `out`.
    ///
    /// # Panics
    /// If the range extends past `len()` (callers choose windows, so this is a bug).
    pub fn read_into(&self, start: usize, out: &mut [u32]) {
        let end = start.checked_add(out.len());
        assert!(end.is_some_and(|e| e <= self.len), "{}: read of tokens [{start}, {start}+{}) past the end ({} tokens)", self.path.display(), out.len(), self.len);
        if out.is_empty() {
            return;
        }
        let Storage::Mapped(map) = &self.storage else { unreachable!("non-empty read from empty file") };
        let bytes = &map[HEADER_LEN + start * self.width..HEADER_LEN + (start + out.len()) * self.width];
        if self.width == 2 {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = u16::from_le_bytes([b[0], b[1]]) as u32;
            }
        } else {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}

/// A sequence of token ids: a token file or tokens in memory.
pub trait Tokens {
    fn count(&self) -> usize;
    /// Copies tokens `[start, start + out.len())` into `out`.
    fn read_into(&self, start: usize, out: &mut [u32]);
}

impl Tokens for TokenFile {
    fn count(&self) -> usize {
        self.len()
    }
    fn read_into(&self, start: usize, out: &mut [u32]) {
        TokenFile::read_into(self, start, out)
    }
}

impl Tokens for Vec<u32> {
    fn count(&self) -> usize {
        self.len()
    }
    fn read_into(&self, start: usize, out: &mut [u32]) {
        out.copy_from_slice(&self[start..start + out.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDir;
    use super::*;

    fn err(path: &Path) -> String {
        format!("{:#}", TokenFile::open(path).unwrap_err())
    }

    #[test]
    fn round_trip_u16_and_u32() {
        let d = TestDir::new("rt");
        for (vocab, width) in [(300usize, 2usize), (65536, 2), (65537, 4), (200_000, 4)] {
            let toks: Vec<u32> = (0..10_000u32).map(|i| (i * 7919) % vocab as u32).collect();
            let p = d.join(format!("v{vocab}.tok"));
            write_token_file(&p, vocab, &toks).unwrap();
            assert!(!crate::fsutil::tmp_path(&p).exists(), "temp file left behind");
            let meta_len = std::fs::metadata(&p).unwrap().len();
            assert_eq!(meta_len as usize, HEADER_LEN + toks.len() * width);
            let f = TokenFile::open(&p).unwrap();
            assert_eq!((f.len(), f.vocab_size(), f.width), (toks.len(), vocab, width));
            let mut all = vec![0u32; toks.len()];
            f.read_into(0, &mut all);
            assert_eq!(all, toks);
            let mut win = vec![0u32; 17];
            f.read_into(4321, &mut win);
            assert_eq!(win, &toks[4321..4338]);
            f.read_into(toks.len(), &mut []);
        }
        // Largest ids survive the narrow encoding exactly.
        let p = d.join("edge.tok");
        write_token_file(&p, 65536, &[0, 65535, 1]).unwrap();
        let mut out = [9u32; 3];
        TokenFile::open(&p).unwrap().read_into(0, &mut out);
        assert_eq!(out, [0, 65535, 1]);
        // Empty payload is valid.
        let p = d.join("empty.tok");
        write_token_file(&p, 300, &[]).unwrap();
        assert!(TokenFile::open(&p).unwrap().is_empty());
    }

    #[test]
    fn rejects_out_of_range_tokens_on_write() {
        let d = TestDir::new("oor");
        let p = d.join("x.tok");
        let e = format!("{:#}", write_token_file(&p, 300, &[1, 300]).unwrap_err());
        assert!(e.contains("token 300 at position 1"), "{e}");
        assert!(!p.exists() && !crate::fsutil::tmp_path(&p).exists());
    }

    #[test]
    #[should_panic(expected = "past the end")]
    fn read_past_end_panics() {
        let d = TestDir::new("panic");
        let p = d.join("x.tok");
        write_token_file(&p, 300, &[1, 2, 3]).unwrap();
        let f = TokenFile::open(&p).unwrap();
        f.read_into(2, &mut [0u32; 2]);
    }

    #[test]
    fn detects_truncation_corruption_and_bad_magic() {
        let d = TestDir::new("bad");
        let p = d.join("train.tok");
        let toks: Vec<u32> = (0..1000).collect();
        write_token_file(&p, 5000, &toks).unwrap();
        let good = std::fs::read(&p).unwrap();
        assert_eq!(good.len(), 64 + 2000);

        std::fs::write(&p, &good[..1000]).unwrap();
        let e = err(&p);
        assert!(e.contains("train.tok: truncated (expected 2064 bytes, found 1000)"), "{e}");

        std::fs::write(&p, &good[..40]).unwrap();
        assert!(err(&p).contains("truncated"), "{}", err(&p));

        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&p, &longer).unwrap();
        assert!(err(&p).contains("1 trailing bytes"), "{}", err(&p));

        let mut flipped = good.clone();
        flipped[64 + 777] ^= 0x10;
        std::fs::write(&p, &flipped).unwrap();
        assert!(err(&p).ends_with("train.tok: checksum mismatch (file corrupted?)"), "{}", err(&p));

        let mut magic = good.clone();
        magic[0] = b'X';
        std::fs::write(&p, &magic).unwrap();
        assert!(err(&p).contains("not a bakallm token file (bad magic)"), "{}", err(&p));

        std::fs::write(&p, b"hello").unwrap();
        assert!(err(&p).contains("bad magic"), "{}", err(&p));
        std::fs::write(&p, b"").unwrap();
        assert!(err(&p).contains("bad magic"), "{}", err(&p));

        let mut version = good.clone();
        version[8] = 2;
        std::fs::write(&p, &version).unwrap();
        assert!(err(&p).contains("unsupported token file version 2"), "{}", err(&p));

        let mut width = good.clone();
        width[12] = 4;
        std::fs::write(&p, &width).unwrap();
        assert!(err(&p).contains("token width 4 does not match vocab_size 5000"), "{}", err(&p));

        std::fs::write(&p, &good).unwrap();
        assert_eq!(TokenFile::open(&p).unwrap().len(), 1000);
        assert!(err(&d.join("missing.tok")).contains("missing.tok: cannot open token file"));
    }
}
