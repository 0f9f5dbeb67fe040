//! Documents from the files of a user corpus folder: `.txt` (one document per file), JSON
//! lines (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`; one document per record, its text in the
//! `data.text_field` string field) and `.parquet` (one per row: `super::parquet`), the formats HF
//! dataset dumps come in.

use anyhow::{anyhow, bail, Result};
use std::io::{BufRead, Read};
use std::path::Path;

/// How a user corpus folder is read (from `[data]`).
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Decode non-UTF-8 `.txt` files as Latin-1 (`data.latin1_fallback`).
    pub latin1_fallback: bool,
    /// The string field of a JSON record that holds its text (`data.text_field`).
    pub text_field: String,
    /// Skip and count bad records instead of failing (`data.skip_bad_records`).
    pub skip_bad_records: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { latin1_fallback: false, text_field: "text".into(), skip_bad_records: false }
    }
}

/// What a file holds, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    JsonLines(Compression),
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The extensions a corpus folder may hold, for error messages.
pub const KNOWN: &str = ".txt, .jsonl, .jsonl.gz, .jsonl.zst or .parquet";

impl Format {
    /// The format of a file named `name` (case-insensitive), or `None` for any other file.
    pub fn of(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".txt") {
            Some(Self::Text)
        } else if n.ends_with(".jsonl") {
            Some(Self::JsonLines(Compression::None))
        } else if n.ends_with(".jsonl.gz") {
            Some(Self::JsonLines(Compression::Gzip))
        } else if n.ends_with(".jsonl.zst") {
            Some(Self::JsonLines(Compression::Zstd))
        } else if n.ends_with(".parquet") {
            Some(Self::Parquet)
        } else {
            None
        }
    }
}

/// Bad records skipped under `data.skip_bad_records`: how many, and the first one's place and why.
#[derive(Debug, Default)]
pub struct Skipped {
    pub count: usize,
    pub first: Option<String>,
}

impl Skipped {
    /// A bad `what` (record, row) at `place` for `why`: counted with `skip`, else the error.
    pub fn bad(&mut self, skip: bool, place: String, why: String, what: &str) -> Result<()> {
        if !skip {
            bail!("{place}: {why} (set data.skip_bad_records = true to skip and count such {what})");
        }
        self.count += 1;
        self.first.get_or_insert_with(|| format!("{place}: {why}"));
        Ok(())
    }
}

/// Streams the records of a JSON-lines file (`input` as stored, decompressed here) to `each` as
/// `(line, text)`, line numbers from 1; blank lines are not records. A line that is not UTF-8 or
/// not a JSON object with a string `field` is an error naming `shown` and the line, or with `skip`
/// is counted in `skipped`.
pub fn json_lines(shown: &str, input: impl Read, compression: Compression, field: &str, skip: bool, skipped: &mut Skipped, each: &mut dyn FnMut(usize, String) -> Result<()>) -> Result<()> {
    let (reader, what): (Box<dyn Read>, &str) = match compression {
        Compression::None => (Box::new(input), "readable"),
        Compression::Gzip => (Box::new(flate2::read::MultiGzDecoder::new(input)), "readable gzip"),
        Compression::Zstd => (Box::new(zstd::Decoder::new(input).map_err(|e| anyhow!("{shown}: not a readable zstd file ({e})"))?), "readable zstd"),
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
    let mut line = Vec::new();
    for i in 1.. {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| anyhow!("{shown}: not a {what} file ({e})"))? == 0 {
            break;
        }
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match record(l, field) {
            Ok(text) => each(i, text)?,
            Err(why) => skipped.bad(skip, format!("{shown}:{i}"), why, "records")?,
        }
    }
    Ok(())
}

/// The text of one JSON record, or why it has none.
fn record(line: &[u8], field: &str) -> std::result::Result<String, String> {
    let line = std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 at byte {}", e.valid_up_to()))?;
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not a JSON record ({e})"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    match obj.get(field) {
        Some(serde_json::Value::String(s)) => Ok(if s.contains("\r\n") { s.replace("\r\n", "\n") } else { s.clone() }),
        Some(other) => Err(format!("field {field:?} is not a string but {} (data.text_field)", kind(other))),
        None => Err(format!("no field {field:?} (data.text_field)")),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Whether `path` names a file this module reads.
pub fn is_corpus_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).and_then(Format::of).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn json_lines(shown: &str, bytes: &[u8], c: Compression, field: &str, skip: bool, skipped: &mut Skipped) -> Result<Vec<(usize, String)>> {
        let mut out = vec![];
        super::json_lines(shown, bytes, c, field, skip, skipped, &mut |i, t| {
            out.push((i, t));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::of("a.TXT"), Some(Format::Text));
        assert_eq!(Format::of("b.jsonl"), Some(Format::JsonLines(Compression::None)));
        assert_eq!(Format::of("c.jsonl.gz"), Some(Format::JsonLines(Compression::Gzip)));
        assert_eq!(Format::of("d.JSONL.ZST"), Some(Format::JsonLines(Compression::Zstd)));
        assert_eq!(Format::of("f.parquet"), Some(Format::Parquet));
        assert_eq!(Format::of("e.json"), None);
        assert_eq!(Format::of("g.parquet.gz"), None);
    }

    #[test]
    fn json_lines_plain_gzip_zstd_and_bad_records() {
        let body = b"{\"text\": \"one\\r\\ntwo\", \"id\": 1}\n\n{\"text\": \"caf\\u00e9\"}\r\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&body[..], 3).unwrap();
        let want = vec![(1, "one\ntwo".to_string()), (3, "café".to_string())];
        for (bytes, c) in [(body.to_vec(), Compression::None), (gz, Compression::Gzip), (zst, Compression::Zstd)] {
            assert_eq!(json_lines("x.jsonl", &bytes, c, "text", false, &mut Skipped::default()).unwrap(), want, "{c:?}");
        }
        let bad: &[(&[u8], &str)] = &[
            (b"{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n", "x.jsonl:2: no field \"text\" (data.text_field)"),
            (b"{\"text\": 5}\n", "x.jsonl:1: field \"text\" is not a string but a number"),
            (b"{\"text\": \"ok\"}\n{\"text\": \"cut\n", "x.jsonl:2: not a JSON record"),
            (b"[1, 2]\n", "x.jsonl:1: not a JSON object"),
            (b"{\"text\": \"\xff\"}\n", "x.jsonl:1: not valid UTF-8 at byte 10"),
        ];
        for (bytes, want) in bad {
            let e = json_lines("x.jsonl", bytes, Compression::None, "text", false, &mut Skipped::default()).unwrap_err().to_string();
            assert!(e.starts_with(want) && e.contains("data.skip_bad_records"), "{e}");
        }
        let mut skipped = Skipped::default();
        let got = json_lines("x.jsonl", b"{\"text\": \"a\"}\n{\"t\": 1}\n{\"text\": \"b\"}\nnope\n", Compression::None, "text", true, &mut skipped).unwrap();
        assert_eq!(got, vec![(1, "a".to_string()), (3, "b".to_string())]);
        assert_eq!(skipped.count, 2);
        assert_eq!(skipped.first.as_deref(), Some("x.jsonl:2: no field \"text\" (data.text_field)"));
        let e = json_lines("x.jsonl.gz", b"not gzip", Compression::Gzip, "text", false, &mut Skipped::default()).unwrap_err().to_string();
        assert!(e.starts_with("x.jsonl.gz: not a readable gzip file"), "{e}");
        let other = json_lines("x.jsonl", b"{\"content\": \"c\"}\n", Compression::None, "content", false, &mut Skipped::default()).unwrap();
        assert_eq!(other, vec![(1, "c".to_string())]);
    }
}
