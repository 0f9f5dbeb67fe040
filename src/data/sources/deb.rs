//! Reading files out of a Debian package: a `.deb` is an `ar` archive whose `data.tar.xz`
//! (or `.zst`, `.gz`, plain `.tar`) holds the installed tree.

use super::super::OneLine;
use anyhow::{bail, Result};
use std::io::Read;
use std::path::Path;

/// `(path without the leading "./", bytes)` of every regular file under `prefix`, sorted.
pub fn files_under(deb: &Path, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let shown = deb.display();
    let f = std::fs::File::open(deb).one_line(|| format!("cannot open {shown}"))?;
    let mut archive = ar::Archive::new(f);
    while let Some(entry) = archive.next_entry() {
        let entry = entry.one_line(|| format!("{shown}: not a Debian package (ar archive)"))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(compression) = name.strip_prefix("data.tar") else {
            continue;
        };
        let tar: Box<dyn Read> = match compression {
            ".xz" => Box::new(liblzma::read::XzDecoder::new(entry)),
            ".zst" => Box::new(zstd::Decoder::new(entry).one_line(|| format!("{shown}: {name}"))?),
            ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "" => Box::new(entry),
            other => bail!("{shown}: data.tar{other} is a compression this reader does not know (expected .xz, .zst or .gz)"),
        };
        let mut out = Vec::new();
        let bad = || format!("{shown}: corrupt {name}");
        for file in tar::Archive::new(tar).entries().one_line(bad)? {
            let mut file = file.one_line(bad)?;
            if !file.header().entry_type().is_file() {
                continue;
            }
            let path = file.path().one_line(bad)?.to_string_lossy().trim_start_matches("./").to_string();
            if path.starts_with(prefix) {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).one_line(bad)?;
                out.push((path, bytes));
            }
        }
        out.sort();
        return Ok(out);
    }
    bail!("{shown}: no data.tar member (not a Debian binary package?)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_data_tarball_of_a_package() {
        let d = super::super::super::tests::TestDir::new("deb");
        let mut tar = tar::Builder::new(liblzma::write::XzEncoder::new(Vec::new(), 1));
        for (path, body) in [("./usr/share/x/b.txt", "bee"), ("./usr/share/x/a.txt", "ay"), ("./usr/share/doc/c", "doc")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, body.as_bytes()).unwrap();
        }
        let data = tar.into_inner().unwrap().finish().unwrap();
        let deb = d.join("p.deb");
        let mut ar = ar::Builder::new(std::fs::File::create(&deb).unwrap());
        for (name, body) in [("debian-binary", b"2.0\n".to_vec()), ("control.tar.xz", Vec::new()), ("data.tar.xz", data)] {
            ar.append(&ar::Header::new(name.as_bytes().to_vec(), body.len() as u64), body.as_slice()).unwrap();
        }
        drop(ar);
        let got = files_under(&deb, "usr/share/x/").unwrap();
        assert_eq!(got, vec![("usr/share/x/a.txt".into(), b"ay".to_vec()), ("usr/share/x/b.txt".into(), b"bee".to_vec())]);
        std::fs::write(&deb, b"!<arch>\n").unwrap();
        assert_eq!(files_under(&deb, "usr/").unwrap_err().to_string(), format!("{}: no data.tar member (not a Debian binary package?)", deb.display()));
    }
}
