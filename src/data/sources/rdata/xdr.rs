//! R's XDR serialization format (`serialize(x, NULL, xdr = TRUE)`, versions 2 and 3).
//!
//! `"X\n"`, then big-endian i32s: format version, writer's R version, minimal reader R
//! version and (version 3) the length and bytes of the native encoding name, then the object.
//! Each object starts with a flags word: low 8 bits the SEXP type, bit 9 "has attributes",
//! bit 10 "has tag", bits 12.. the string encoding (`LATIN1` = 1 << 2, `UTF8` = 1 << 3).
//! Only the types a lazy-load index and character data need are read: NULL, symbols (and
//! references to them), pairlists, strings (CHARSXP, length -1 = NA), logical, integer,
//! character and generic vectors; attributes are read, and kept only as a list's `names`.

use anyhow::{anyhow, bail, Result};

/// The subset of R values this reader understands.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Sym(String),
    Str(Vec<Option<String>>),
    /// Logical or integer vector.
    Ints(Vec<i32>),
    /// Generic vector with its `names` attribute ("" where absent).
    List(Vec<Value>, Vec<String>),
    Pairlist(Vec<(Option<String>, Value)>),
}

impl Value {
    /// The element called `name` of a named list.
    pub(super) fn field(&self, name: &str) -> Option<&Value> {
        let Value::List(items, names) = self else {
            return None;
        };
        let i = names.iter().position(|n| n == name)?;
        items.get(i)
    }
}

pub(super) const STRSXP: u32 = 16;
const NILVALUE: u32 = 254;
const REFSXP: u32 = 255;
const MAX_DEPTH: usize = 64;
/// SEXP type names by number (for error messages).
pub(super) const TYPE_NAMES: &str = "NILSXP SYMSXP LISTSXP CLOSXP ENVSXP PROMSXP LANGSXP SPECIALSXP \
    BUILTINSXP CHARSXP LGLSXP ? ? INTSXP REALSXP CPLXSXP STRSXP DOTSXP ANYSXP VECSXP EXPRSXP \
    BCODESXP EXTPTRSXP WEAKREFSXP RAWSXP S4SXP";

/// Parses one XDR-serialized R object (`"X\n"` header included).
pub(super) fn unserialize(buf: &[u8]) -> Result<Value> {
    Reader::new(buf)?.item(0)
}

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Reference table; only symbols are ever stored here by this reader.
    symbols: Vec<String>,
}

impl<'a> Reader<'a> {
    /// Checks the serialization header and positions the reader on the object.
    pub(super) fn new(buf: &'a [u8]) -> Result<Self> {
        let Some(body) = buf.strip_prefix(b"X\n") else {
            bail!("not an R XDR serialization (expected \"X\\n\")");
        };
        let mut r = Reader { buf: body, pos: 0, symbols: Vec::new() };
        let version = r.int()?;
        r.take(8)?; // writer's and minimal reader's R versions
        match version {
            2 => {}
            3 => {
                let n = r.len()?;
                r.take(n)?; // native encoding name
            }
            v => bail!("unsupported serialization format version {v} (expected 2 or 3)"),
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (at, left) = (self.pos + 2, self.buf.len() - self.pos);
        let bytes = self.buf.get(self.pos..self.pos.saturating_add(n));
        let bytes = bytes.ok_or_else(|| anyhow!("truncated at byte {at} (needs {n} bytes, {left} left)"))?;
        self.pos += n;
        Ok(bytes)
    }

    fn int(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self) -> Result<usize> {
        let n = self.int()?;
        usize::try_from(n).map_err(|_| anyhow!("unsupported length {n} at byte {}", self.pos - 2))
    }

    pub(super) fn peek_type(&mut self) -> Result<u32> {
        let ty = self.int()? as u32 & 0xff;
        self.pos -= 4;
        Ok(ty)
    }

    /// Reads `n` elements, reserving no more than the remaining bytes could hold.
    fn vec<T>(&mut self, width: usize, mut read: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n.min((self.buf.len() - self.pos) / width));
        for _ in 0..n {
            v.push(read(self)?);
        }
        Ok(v)
    }

    pub(super) fn item(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            bail!("objects nested deeper than {MAX_DEPTH} levels");
        }
        let flags = self.int()? as u32;
        let value = match flags & 0xff {
            NILVALUE => return Ok(Value::Null),
            REFSXP => {
                let i = (flags >> 8) as usize;
                let sym = self.symbols.get(i.wrapping_sub(1)).cloned();
                return sym.map(Value::Sym).ok_or_else(|| anyhow!("bad reference {i}"));
            }
            1 => {
                let name = self.charsxp()?.unwrap_or_default();
                self.symbols.push(name.clone());
                return Ok(Value::Sym(name));
            }
            2 => return self.pairlist(flags, depth),
            10 | 13 => Value::Ints(self.vec(4, Self::int)?),
            STRSXP => Value::Str(self.vec(8, Self::charsxp)?),
            19 | 20 => Value::List(self.vec(4, |r| r.item(depth + 1))?, Vec::new()),
            t => bail!("unsupported R object type {t} at byte {}", self.pos - 2),
        };
        if flags & (1 << 9) == 0 {
            return Ok(value);
        }
        let Value::Pairlist(attrs) = self.item(depth + 1)? else {
            bail!("attributes are not a pairlist (before byte {})", self.pos + 2);
        };
        let Value::List(items, _) = value else {
            return Ok(value); // attributes of other vectors (class, dim, …) are dropped
        };
        let names = match attrs.into_iter().find(|(tag, _)| tag.as_deref() == Some("names")) {
            Some((_, Value::Str(n))) => n.into_iter().map(Option::unwrap_or_default).collect(),
            _ => vec![String::new(); items.len()],
        };
        Ok(Value::List(items, names))
    }

    /// A pairlist whose first cell's flags were already read; the tail is read iteratively.
    fn pairlist(&mut self, mut flags: u32, depth: usize) -> Result<Value> {
        let mut cells = Vec::new();
        loop {
            if flags & (1 << 9) != 0 {
                self.item(depth + 1)?; // attributes of the cell itself
            }
            let tag = match flags & (1 << 10) {
                0 => None,
                _ => match self.item(depth + 1)? {
                    Value::Sym(s) => Some(s),
                    _ => bail!("pairlist tag is not a symbol (before byte {})", self.pos + 2),
                },
            };
            cells.push((tag, self.item(depth + 1)?));
            flags = self.int()? as u32;
            match flags & 0xff {
                NILVALUE => return Ok(Value::Pairlist(cells)),
                2 => {}
                t => bail!("pairlist tail of type {t}, expected another cell or NULL"),
            }
        }
    }

    /// A CHARSXP (string); `None` for NA.
    fn charsxp(&mut self) -> Result<Option<String>> {
        let at = self.pos + 2;
        let flags = self.int()? as u32;
        if flags & 0xff != 9 {
            let ty = flags & 0xff;
            bail!("expected a string (CHARSXP, type 9) at byte {at}, found type {ty}");
        }
        if self.int()? == -1 {
            return Ok(None);
        }
        self.pos -= 4;
        let n = self.len()?;
        let bytes = self.take(n)?;
        const LATIN1: u32 = 1 << (12 + 2);
        if flags & LATIN1 != 0 {
            return Ok(Some(bytes.iter().map(|&b| char::from(b)).collect()));
        }
        let s = std::str::from_utf8(bytes).map_err(|e| anyhow!("string at byte {at} is not valid UTF-8: {e}"))?;
        Ok(Some(s.to_string()))
    }
}
