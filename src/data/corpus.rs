//! Documents, and reading a user folder of `.txt`, JSON-lines and `.parquet` files into them
//! (the built-in corpora are in `sources`). Output: decoded documents in a fixed order.

use super::records::{self, Format, ReadOptions};
use super::OneLine;
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One text document, already decoded and with CRLF normalised to LF.
#[derive(Debug, Clone)]
pub struct Document {
    /// Stable name: path relative to the corpus root, `/`-separated (part of the split hash).
    pub name: String,
    pub text: String,
    /// Size of the file as stored, before decoding.
    pub raw_bytes: u64,
    /// Decoded as Latin-1 because it was not valid UTF-8.
    pub latin1: bool,
}

#[derive(Debug, Clone)]
pub struct Corpus {
    /// Cache key: `default`, or `<folder name>-<12 hex of SHA-256 over paths + contents>`.
    pub id: String,
    /// Human description of where the text came from (goes into meta.json).
    pub source: String,
    /// In a fixed order: sorted by name within each source.
    pub docs: Vec<Document>,
    /// What each source of a built-in corpus gave (empty for a folder).
    pub sources: Vec<super::sources::SourceStats>,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a file: UTF-8, or Latin-1 when allowed. The error names the first bad byte.
pub fn decode(shown_name: &str, bytes: Vec<u8>, latin1_allowed: bool) -> Result<(String, bool)> {
    let (text, latin1) = match String::from_utf8(bytes) {
        Ok(s) => (s, false),
        Err(e) if latin1_allowed => (e.as_bytes().iter().map(|&b| b as char).collect(), true),
        Err(e) => bail!("{shown_name} is not valid UTF-8 at byte {}; re-encode it or set data.latin1_fallback = true", e.utf8_error().valid_up_to()),
    };
    let text = if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text };
    Ok((text, latin1))
}

/// A user corpus folder: its files, sorted by relative path, read anew on every pass, so a corpus
/// of any size is never held in memory.
#[derive(Debug, Clone)]
pub struct Folder {
    /// Cache key: `<folder name>-<12 hex of SHA-256 over paths + contents>`.
    pub id: String,
    pub source: String,
    root: PathBuf,
    files: Vec<(String, PathBuf)>,
    opts: ReadOptions,
}

/// What one pass over a folder found.
#[derive(Debug, Default)]
pub struct Pass {
    pub documents: usize,
    /// Documents dropped because an earlier one has the same text.
    pub duplicates: usize,
    pub skipped: records::Skipped,
    /// Per file: name, bytes as stored, decoded as Latin-1.
    pub files: Vec<(String, u64, bool)>,
}

/// Lists the corpus files under `root` (recursive, sorted by relative path) and hashes their
/// names and contents into the corpus id, without parsing them. Other files are listed in one log
/// line as skipped. Hidden entries (names starting with `.`) are skipped; symlinks to files are
/// followed, symlinks to folders are not (no cycles).
pub fn scan_folder(root: &Path, opts: &ReadOptions, log: &mut dyn FnMut(&str)) -> Result<Folder> {
    if !root.exists() {
        bail!("corpus folder {} does not exist (data.corpus)", root.display());
    }
    if !root.is_dir() {
        bail!("corpus path {} is not a folder (data.corpus)", root.display());
    }
    let mut files = Vec::new();
    walk(root, "", &mut files)?;
    files.sort();
    let (files, other): (Vec<_>, Vec<_>) = files.into_iter().partition(|(_, p)| records::is_corpus_file(p));
    if !other.is_empty() {
        let names: Vec<&str> = other.iter().take(5).map(|(n, _)| n.as_str()).collect();
        let more = if other.len() > 5 { format!(" and {} more", other.len() - 5) } else { String::new() };
        log(&format!("skipped {} files that are not {}: {}{more}", other.len(), records::KNOWN, names.join(", ")));
    }
    if files.is_empty() {
        bail!("corpus folder {} contains no {} files (data.corpus)", root.display(), records::KNOWN);
    }
    let mut hasher = Sha256::new();
    for (name, path) in &files {
        let mut f = std::fs::File::open(path).one_line(|| format!("cannot read {}", path.display()))?;
        let len = f.metadata().one_line(|| format!("cannot read {}", path.display()))?.len();
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        hasher.update(len.to_le_bytes());
        let copied = std::io::copy(&mut f, &mut hasher).one_line(|| format!("cannot read {}", path.display()))?;
        if copied != len {
            bail!("{}: changed while being read ({len} bytes, then {copied})", path.display());
        }
    }
    if files.iter().any(|(n, _)| !matches!(Format::of(n), Some(Format::Text))) {
        // the same files read with another field or skip rule are another corpus
        hasher.update(format!("text_field={}; skip_bad_records={}", opts.text_field, opts.skip_bad_records).as_bytes());
    }
    let hash = hex(&hasher.finalize());
    let folder: String = std::fs::canonicalize(root)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(40)
        .collect();
    let id = if folder.is_empty() { hash[..12].to_string() } else { format!("{folder}-{}", &hash[..12]) };
    Ok(Folder { id, source: format!("folder {}", root.display()), root: root.to_path_buf(), files, opts: opts.clone() })
}

impl Folder {
    /// Reads every file and hands each document to `each`, in a fixed order: a `.txt` file is one
    /// document, a JSON-lines file one per record (named `file:line`), a parquet file one per row
    /// (`file:row`); a text that repeats an earlier one is dropped.
    pub fn for_each(&self, each: &mut dyn FnMut(&Document) -> Result<()>) -> Result<Pass> {
        let mut pass = Pass::default();
        let mut seen = std::collections::HashSet::new();
        let opts = &self.opts;
        for (name, path) in &self.files {
            let shown = path.display().to_string();
            let file = std::fs::File::open(path).one_line(|| format!("cannot read {shown}"))?;
            let raw = file.metadata().one_line(|| format!("cannot read {shown}"))?.len();
            let mut latin1 = false;
            let mut doc = |d: Document| -> Result<()> {
                if seen.insert(Sha256::digest(d.text.as_bytes())) {
                    pass.documents += 1;
                    each(&d)
                } else {
                    pass.duplicates += 1;
                    Ok(())
                }
            };
            match Format::of(name) {
                Some(Format::JsonLines(c)) => records::json_lines(&shown, file, c, &opts.text_field, opts.skip_bad_records, &mut pass.skipped, &mut |line, text| {
                    doc(Document { name: format!("{name}:{line}"), raw_bytes: text.len() as u64, text, latin1: false })
                })?,
                Some(Format::Parquet) => super::parquet::parquet_rows(&shown, file, &opts.text_field, opts.skip_bad_records, &mut pass.skipped, &mut |row, text| {
                    doc(Document { name: format!("{name}:{row}"), raw_bytes: text.len() as u64, text, latin1: false })
                })?,
                _ => {
                    let mut bytes = Vec::with_capacity(raw as usize);
                    std::io::Read::read_to_end(&mut { file }, &mut bytes).one_line(|| format!("cannot read {shown}"))?;
                    let (text, l) = decode(&shown, bytes, opts.latin1_fallback)?;
                    latin1 = l;
                    doc(Document { name: name.clone(), text, raw_bytes: raw, latin1 })?;
                }
            }
            pass.files.push((name.clone(), raw, latin1));
        }
        if pass.documents == 0 {
            bail!("corpus folder {} holds no documents: every record was skipped (data.corpus)", self.root.display());
        }
        Ok(pass)
    }

    /// The lines `prepare` prints once about a pass: repeats dropped, bad records skipped,
    /// Latin-1 files.
    pub fn report(pass: &Pass, log: &mut dyn FnMut(&str)) {
        if pass.duplicates > 0 {
            log(&format!("dropped {} documents whose text repeats an earlier one", pass.duplicates));
        }
        if let Some(first) = &pass.skipped.first {
            log(&format!("skipped {} bad records (data.skip_bad_records); the first: {first}", pass.skipped.count));
        }
        let latin1: Vec<&str> = pass.files.iter().filter(|f| f.2).map(|f| f.0.as_str()).collect();
        if !latin1.is_empty() {
            log(&format!("decoded as Latin-1 (not valid UTF-8): {}", latin1.join(", ")));
        }
    }
}

/// Reads a whole folder into memory (`scan_folder` + one pass): for small corpora and tests.
pub fn read_folder(root: &Path, opts: &ReadOptions, log: &mut dyn FnMut(&str)) -> Result<Corpus> {
    let folder = scan_folder(root, opts, log)?;
    let mut docs = Vec::new();
    let pass = folder.for_each(&mut |d| {
        docs.push(d.clone());
        Ok(())
    })?;
    Folder::report(&pass, log);
    Ok(Corpus { id: folder.id, source: folder.source, docs, sources: Vec::new() })
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).one_line(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.one_line(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel_name = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let ft = entry.file_type().one_line(|| format!("cannot stat {}", path.display()))?;
        if ft.is_dir() {
            walk(&path, &rel_name, out)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            out.push((rel_name, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDir;
    use super::*;

    #[test]
    fn user_folder_is_recursive_sorted_and_validated() {
        let mut log = |_: &str| {};
        let d = TestDir::new("folder");
        let missing = d.join("nope");
        let e = read_folder(&missing, &ReadOptions::default(), &mut log).unwrap_err().to_string();
        assert_eq!(e, format!("corpus folder {} does not exist (data.corpus)", missing.display()));
        std::fs::write(d.join("readme.md"), "not text").unwrap();
        let e = read_folder(&d, &ReadOptions::default(), &mut log).unwrap_err().to_string();
        assert!(e.contains("contains no .txt, .jsonl, .jsonl.gz, .jsonl.zst or .parquet files"), "{e}");

        std::fs::create_dir_all(d.join("b/c")).unwrap();
        std::fs::write(d.join("b/z.txt"), "zed\r\nline\r\n").unwrap();
        std::fs::write(d.join("b/c/y.TXT"), "why").unwrap();
        std::fs::write(d.join("a.txt"), "ay").unwrap();
        std::fs::write(d.join(".hidden.txt"), "skip").unwrap();
        let c = read_folder(&d, &ReadOptions::default(), &mut log).unwrap();
        let names: Vec<&str> = c.docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b/c/y.TXT", "b/z.txt"]);
        assert_eq!(c.docs[2].text, "zed\nline\n");
        assert_eq!(c.docs[2].raw_bytes, 11);
        let id1 = c.id.clone();
        assert!(id1.ends_with(&id1[id1.len() - 12..]) && id1.len() > 12, "{id1}");
        assert_eq!(read_folder(&d, &ReadOptions::default(), &mut log).unwrap().id, id1, "id must be stable");
        std::fs::write(d.join("a.txt"), "ay!").unwrap();
        assert_ne!(read_folder(&d, &ReadOptions::default(), &mut log).unwrap().id, id1, "content change must change the id");

        std::fs::write(d.join("b/latin.txt"), b"caf\xe9 ok").unwrap();
        let e = read_folder(&d, &ReadOptions::default(), &mut log).unwrap_err().to_string();
        let bad = d.join("b/latin.txt");
        assert_eq!(e, format!("{} is not valid UTF-8 at byte 3; re-encode it or set data.latin1_fallback = true", bad.display()));
        let mut lines = Vec::new();
        let c = read_folder(&d, &ReadOptions { latin1_fallback: true, ..Default::default() }, &mut |l: &str| lines.push(l.to_string())).unwrap();
        let latin = c.docs.iter().find(|d| d.name == "b/latin.txt").unwrap();
        assert_eq!((latin.text.as_str(), latin.latin1), ("café ok", true));
        assert_eq!(lines, ["skipped 1 files that are not .txt, .jsonl, .jsonl.gz, .jsonl.zst or .parquet: readme.md", "decoded as Latin-1 (not valid UTF-8): b/latin.txt"]);
    }

    #[test]
    fn parquet_rows_join_the_other_files() {
        let d = TestDir::new("mixed-parquet");
        std::fs::write(d.join("a.txt"), "a text file").unwrap();
        std::fs::write(d.join("b.jsonl"), "{\"text\": \"a record\"}\n").unwrap();
        std::fs::write(d.join("c.parquet"), super::super::parquet::tests::write(&[Some("row one"), None, Some("row three")])).unwrap();
        let e = read_folder(&d, &ReadOptions::default(), &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("c.parquet: row 2: column \"text\" is null"), "{e}");
        let mut lines = Vec::new();
        let c = read_folder(&d, &ReadOptions { skip_bad_records: true, ..Default::default() }, &mut |l: &str| lines.push(l.to_string())).unwrap();
        let docs: Vec<(&str, &str)> = c.docs.iter().map(|d| (d.name.as_str(), d.text.as_str())).collect();
        assert_eq!(docs, [("a.txt", "a text file"), ("b.jsonl:1", "a record"), ("c.parquet:1", "row one"), ("c.parquet:3", "row three")]);
        assert!(lines[0].contains("skipped 1 bad records") && lines[0].ends_with("c.parquet: row 2: column \"text\" is null"), "{lines:?}");
    }

    #[test]
    fn json_lines_and_text_files_mix_in_one_folder() {
        let d = TestDir::new("mixed");
        std::fs::write(d.join("b.txt"), "a text file").unwrap();
        std::fs::write(d.join("a.jsonl"), "{\"text\": \"first\"}\n{\"text\": \"second\", \"body\": \"x\"}\n").unwrap();
        std::fs::write(d.join("c.csv"), "x,y").unwrap();
        let mut lines = Vec::new();
        let c = read_folder(&d, &ReadOptions::default(), &mut |l: &str| lines.push(l.to_string())).unwrap();
        let docs: Vec<(&str, &str)> = c.docs.iter().map(|d| (d.name.as_str(), d.text.as_str())).collect();
        assert_eq!(docs, [("a.jsonl:1", "first"), ("a.jsonl:2", "second"), ("b.txt", "a text file")]);
        assert_eq!(lines, ["skipped 1 files that are not .txt, .jsonl, .jsonl.gz, .jsonl.zst or .parquet: c.csv"]);
        // a repeated text is dropped, said once
        std::fs::write(d.join("d.txt"), "second").unwrap();
        let mut lines = Vec::new();
        let dedup = read_folder(&d, &ReadOptions::default(), &mut |l: &str| lines.push(l.to_string())).unwrap();
        assert_eq!(dedup.docs.len(), 3);
        assert_eq!(lines[1], "dropped 1 documents whose text repeats an earlier one");
        std::fs::remove_file(d.join("d.txt")).unwrap();
        // another field is another corpus (and here a bad record, named with its line)
        let body = ReadOptions { text_field: "body".into(), ..Default::default() };
        let e = read_folder(&d, &body, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("a.jsonl:1: no field \"body\" (data.text_field)"), "{e}");
        let mut lines = Vec::new();
        let skipping = read_folder(&d, &ReadOptions { skip_bad_records: true, ..body }, &mut |l: &str| lines.push(l.to_string())).unwrap();
        assert_eq!(skipping.docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a.jsonl:2", "b.txt"]);
        assert_ne!(skipping.id, c.id);
        assert!(lines[1].starts_with("skipped 1 bad records (data.skip_bad_records); the first: ") && lines[1].ends_with("a.jsonl:1: no field \"body\" (data.text_field)"), "{lines:?}");
    }
}
