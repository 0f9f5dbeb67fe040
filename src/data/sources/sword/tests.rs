use super::{sword_blocks, sword_module};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prose-parsers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("compress");
    enc.finish().expect("compress")
}

fn record(offset: usize, size: usize, full: usize) -> Vec<u8> {
    [offset as u32, size as u32, full as u32].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `<testament>.bzs/.bzz` holding `blocks` (None = unused record).
fn write_module(dir: &std::path::Path, testament: &str, blocks: &[Option<&str>]) {
    let (mut zs, mut zz) = (Vec::new(), Vec::new());
    for block in blocks {
        match block {
            Some(xml) => {
                let z = zlib(xml.as_bytes());
                zs.extend(record(zz.len(), z.len(), xml.len()));
                zz.extend(z);
            }
            None => zs.extend(record(0, 0, 0)),
        }
    }
    std::fs::write(dir.join(format!("{testament}.bzs")), zs).expect("write");
    std::fs::write(dir.join(format!("{testament}.bzz")), zz).expect("write");
}

#[test]
fn reads_blocks_in_index_order() {
    let dir = temp_dir("sword-ok");
    write_module(&dir, "ot", &[Some("<title>Genesis</title> "), None, Some("<milestone type=\"x-usfm-toc1\"/> "), Some("<div sID=\"g1\" type=\"x-p\"/>In the beginning. <note>n</note>God said. ")]);
    std::fs::write(dir.join("nt.bzs"), b"").expect("write");
    std::fs::write(dir.join("nt.bzz"), b"").expect("write");
    let docs = sword_module(&dir).expect("module");
    let expected = vec![("ot/0000".to_string(), "Genesis".to_string()), ("ot/0003".to_string(), "In the beginning. God said.".to_string())];
    assert_eq!(docs, expected);
    let (idx, zz) = (std::fs::read(dir.join("ot.bzs")).unwrap(), std::fs::read(dir.join("ot.bzz")).unwrap());
    let raw = sword_blocks("ot.bzs", &idx, "ot.bzz", &zz).expect("blocks");
    assert_eq!(raw.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 2, 3]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chapter_blocks_with_empty_new_testament() {
    let dir = temp_dir("sword-czs");
    let z = zlib(b"<p>Psalm one</p>");
    std::fs::write(dir.join("ot.czs"), record(0, z.len(), 16)).expect("write");
    std::fs::write(dir.join("ot.czz"), &z).expect("write");
    std::fs::write(dir.join("nt.czs"), b"").expect("write");
    std::fs::write(dir.join("nt.czz"), b"").expect("write");
    let docs = sword_module(&dir).expect("module");
    assert_eq!(docs, vec![("ot/0000".to_string(), "Psalm one".to_string())]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_index_is_an_error() {
    let dir = temp_dir("sword-trunc");
    write_module(&dir, "ot", &[Some("a ")]);
    let zs = dir.join("ot.bzs");
    let mut idx = std::fs::read(&zs).expect("read");
    idx.extend([0u8; 25]);
    std::fs::write(&zs, idx).expect("write");
    let err = sword_module(&dir).expect_err("must fail").to_string();
    let expected = format!("{}: length 37 is not a multiple of 12 (the block index is made of 12-byte records)", zs.display());
    assert_eq!(err, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn block_past_the_end_is_an_error() {
    let dir = temp_dir("sword-past");
    let z = zlib(b"verse ");
    let mut zs = record(0, z.len(), 6);
    zs.extend(record(z.len(), 50, 100));
    std::fs::write(dir.join("nt.bzs"), zs).expect("write");
    std::fs::write(dir.join("nt.bzz"), &z).expect("write");
    let err = sword_module(&dir).expect_err("must fail").to_string();
    let expected = format!("{}: block 1 points past the end of the file (offset {} + size 50 > {})", dir.join("nt.bzz").display(), z.len(), z.len());
    assert_eq!(err, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_block_and_missing_module_are_errors() {
    let dir = temp_dir("sword-garbage");
    std::fs::write(dir.join("ot.bzs"), record(0, 8, 8)).expect("write");
    std::fs::write(dir.join("ot.bzz"), b"notzlib!").expect("write");
    let err = sword_module(&dir).expect_err("must fail").to_string();
    let prefix = format!("{}: block 0 is not a zlib stream: ", dir.join("ot.bzz").display());
    assert!(err.starts_with(&prefix), "{err}");
    let empty = temp_dir("sword-empty");
    let err = sword_module(&empty).expect_err("must fail").to_string();
    assert!(err.contains("no SWORD block index found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}
