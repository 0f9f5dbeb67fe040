//! Writes a large JSON-lines corpus (`.jsonl.zst`) of real English for measuring `baka prepare`
//! at scale: each record is a run of consecutive paragraphs from a random document of the
//! built-in corpus (fetched into `--cache`), numbered so that no two records are equal.
//!
//!   cargo run --release --example make_corpus -- OUT_DIR [--mb 230] [--corpus prose] [--cache data]

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::io::Write;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out_dir) = args.first().filter(|a| !a.starts_with("--")) else {
        bail!("usage: make_corpus OUT_DIR [--mb 230] [--corpus default|prose] [--cache data]");
    };
    let flag = |name: &str, default: &str| args.windows(2).find(|w| w[0] == name).map_or(default.to_string(), |w| w[1].clone());
    let mb: u64 = flag("--mb", "230").parse().context("--mb: expected a number of megabytes")?;
    let (corpus, cache) = (flag("--corpus", "prose"), flag("--cache", "data"));
    let Some(all) = bakallm::data::sources::preset(&corpus) else { bail!("--corpus {corpus}: expected default or prose") };
    let docs = bakallm::data::sources::load(std::path::Path::new(&cache), corpus.clone(), all, &mut |l| eprintln!("{l}"))?.docs;
    let paragraphs: Vec<Vec<&str>> = docs.iter().map(|d| d.text.split("\n\n").filter(|p| !p.trim().is_empty()).collect()).filter(|p: &Vec<&str>| !p.is_empty()).collect();
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {out_dir}"))?;
    let path = std::path::Path::new(out_dir).join("corpus.jsonl.zst");
    let mut w = zstd::Encoder::new(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?, 3)?.auto_finish();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (mut written, mut records) = (0u64, 0u64);
    while written < mb * 1_000_000 {
        let doc = &paragraphs[rng.random_range(0..paragraphs.len())];
        let start = rng.random_range(0..doc.len());
        let n = rng.random_range(1..=20).min(doc.len() - start);
        let text = format!("Record {records}.\n\n{}", doc[start..start + n].join("\n\n"));
        let line = serde_json::to_string(&serde_json::json!({ "id": records, "text": text }))?;
        writeln!(w, "{line}")?;
        written += text.len() as u64;
        records += 1;
    }
    drop(w);
    eprintln!("{}: {records} records, {:.1} MB of text", path.display(), written as f64 / 1e6);
    Ok(())
}
