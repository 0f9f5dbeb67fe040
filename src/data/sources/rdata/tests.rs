use super::r_character_vectors;
use super::xdr::{unserialize, Value};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};

const UTF8: u32 = 1 << 15;
const LATIN1: u32 = 1 << 14;
const ASCII: u32 = 1 << 18;

fn int(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn header() -> Vec<u8> {
    let mut b = b"X\n".to_vec();
    for v in [3, 0x0004_0201, 0x0003_0500, 5] {
        b.extend(int(v));
    }
    b.extend(b"UTF-8");
    b
}

fn charsxp(gp: u32, s: Option<&[u8]>) -> Vec<u8> {
    let mut b = int((9 | gp) as i32);
    match s {
        Some(s) => {
            b.extend(int(s.len() as i32));
            b.extend(s);
        }
        None => b.extend(int(-1)),
    }
    b
}

fn strsxp(items: &[Vec<u8>]) -> Vec<u8> {
    let mut b = int(16);
    b.extend(int(items.len() as i32));
    items.iter().for_each(|i| b.extend(i));
    b
}

/// A VECSXP with a `names` attribute; `names_sym` is the serialized `names` symbol.
fn named_list(items: &[(&str, Vec<u8>)], names_sym: &[u8]) -> Vec<u8> {
    let mut b = int(19 | 1 << 9);
    b.extend(int(items.len() as i32));
    items.iter().for_each(|(_, v)| b.extend(v));
    b.extend(int(2 | 1 << 10)); // pairlist cell with a tag
    b.extend(names_sym);
    let names: Vec<Vec<u8>> = items.iter().map(|(n, _)| charsxp(ASCII, Some(n.as_bytes()))).collect();
    b.extend(strsxp(&names));
    b.extend(int(254));
    b
}

fn symbol_names() -> Vec<u8> {
    let mut b = int(1);
    b.extend(charsxp(ASCII, Some(b"names")));
    b
}

fn zlib_object(body: &[u8]) -> Vec<u8> {
    let mut obj = header();
    obj.extend(body);
    let mut enc = ZlibEncoder::new(int(obj.len() as i32), Compression::default());
    enc.write_all(&obj).expect("compress");
    enc.finish().expect("compress")
}

/// Writes Rdata.rdb/.rdx holding `objects` (name, serialized body without header).
fn write_db(dir: &Path, objects: &[(&str, Vec<u8>)]) -> (PathBuf, PathBuf) {
    let (mut rdb, mut vars) = (Vec::new(), Vec::new());
    for (name, body) in objects {
        let obj = zlib_object(body);
        let mut pos = int(13);
        pos.extend(int(2));
        pos.extend(int(rdb.len() as i32));
        pos.extend(int(obj.len() as i32));
        vars.push((*name, pos));
        rdb.extend(obj);
    }
    let variables = named_list(&vars, &symbol_names());
    let references = named_list(&[], &int(0x1ff)); // REFSXP #1 = the `names` symbol
    let compressed = [int(10), int(1), int(1)].concat();
    let root = named_list(&[("variables", variables), ("references", references), ("compressed", compressed)], &int(0x1ff));
    let mut index = header();
    index.extend(root);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&index).expect("compress");
    let (rdb_path, rdx_path) = (dir.join("Rdata.rdb"), dir.join("Rdata.rdx"));
    std::fs::write(&rdb_path, rdb).expect("write");
    std::fs::write(&rdx_path, gz.finish().expect("compress")).expect("write");
    (rdb_path, rdx_path)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prose-parsers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

#[test]
fn character_vectors_with_na_and_latin1() {
    let zeta = strsxp(&[
        charsxp(0, Some(b"")),
        charsxp(ASCII, Some(b"ZETA")),
        charsxp(0, None),
        charsxp(LATIN1, Some(b"Caf\xe9 na\xefve")),
        charsxp(UTF8, Some("Å “quoted”".as_bytes())),
        charsxp(0, Some(b"")),
    ]);
    let alpha = strsxp(&[charsxp(ASCII, Some(b"  Alpha")), charsxp(0, Some(b"line two"))]);
    let dir = temp_dir("rdata-ok");
    let (rdb, rdx) = write_db(&dir, &[("zeta", zeta), ("alpha", alpha)]);
    let got = r_character_vectors(&rdb, &rdx).expect("read");
    let expected = vec![("alpha".to_string(), "Alpha\nline two".to_string()), ("zeta".to_string(), "ZETA\n\nCafé naïve\nÅ “quoted”".to_string())];
    assert_eq!(got, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn attributes_on_a_character_vector_are_skipped() {
    let mut body = strsxp(&[charsxp(0, Some(b"x"))]);
    body[2] |= 2; // has-attributes bit (1 << 9) of the big-endian flags
    body.extend(int(2 | 1 << 10));
    body.extend(symbol_names());
    body.extend(strsxp(&[charsxp(0, Some(b"n"))]));
    body.extend(int(254));
    let mut obj = header();
    obj.extend(body);
    assert_eq!(unserialize(&obj).expect("parse"), Value::Str(vec![Some("x".to_string())]));
}

#[test]
fn non_character_object_is_an_error() {
    let ints = [int(13), int(2), int(1), int(2)].concat();
    let dir = temp_dir("rdata-int");
    let (rdb, rdx) = write_db(&dir, &[("numbers", ints)]);
    let err = r_character_vectors(&rdb, &rdx).expect_err("must fail").to_string();
    let expected = format!("{}: object 'numbers': is an R object of type INTSXP (13), expected a character vector (STRSXP)", rdb.display());
    assert_eq!(err, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_database_and_bad_strings_are_errors() {
    let dir = temp_dir("rdata-trunc");
    let (rdb, rdx) = write_db(&dir, &[("text", strsxp(&[charsxp(0, Some(b"abc"))]))]);
    let full = std::fs::read(&rdb).expect("read");
    std::fs::write(&rdb, &full[..full.len() - 3]).expect("write");
    let err = r_character_vectors(&rdb, &rdx).expect_err("must fail").to_string();
    let expected = format!("{}: object 'text': points past the end of the file (offset 0 + length {} > {})", rdb.display(), full.len(), full.len() - 3);
    assert_eq!(err, expected);
    let _ = std::fs::remove_dir_all(&dir);

    let mut obj = header();
    obj.extend(strsxp(&[charsxp(UTF8, Some(b"bad \xff"))]));
    let err = unserialize(&obj).expect_err("must fail").to_string();
    assert!(err.starts_with("string at byte 31 is not valid UTF-8"), "{err}");
    let err = unserialize(&obj[..obj.len() - 2]).expect_err("must fail").to_string();
    assert_eq!(err, "truncated at byte 39 (needs 5 bytes, 3 left)");
    let err = unserialize(b"A\n").expect_err("must fail").to_string();
    assert_eq!(err, "not an R XDR serialization (expected \"X\\n\")");
}
