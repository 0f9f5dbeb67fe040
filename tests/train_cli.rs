//! The research loop through the real binary: every scheme trains, CSVs are well formed,
//! a tiny model learns real text, and runs are deterministic.

mod common;
use common::*;

const METRICS: &str = "step,tokens,elapsed_s,split,loss,lr,grad_norm,tok_per_s";

fn check_run(dir: &std::path::Path, steps: usize, n_windows: usize) {
    let (h, rows) = read_csv(&dir.join("metrics.csv"));
    assert_eq!(h.join(","), METRICS);
    let train: Vec<_> = rows.iter().filter(|r| r[3] == "train").collect();
    assert_eq!(train.len(), steps);
    for (i, r) in train.iter().enumerate() {
        assert_eq!(r.len(), 8);
        assert_eq!(r[0].parse::<usize>().unwrap(), i + 1);
        let loss: f64 = r[4].parse().unwrap();
        let norm: f64 = r[6].parse().unwrap();
        assert!(loss.is_finite() && loss > 0.0 && norm.is_finite(), "{r:?}");
    }
    let val: Vec<_> = rows.iter().filter(|r| r[3] == "val").collect();
    assert!(val.len() >= 2 && val[0][0] == "0" && val.last().unwrap()[0] == steps.to_string(), "{val:?}");
    let (h, ev) = read_csv(&dir.join("eval.csv"));
    assert_eq!(h.join(","), "step,window,loss");
    assert_eq!(ev.len(), val.len() * n_windows);
    assert!(ev.iter().all(|r| r[2].parse::<f64>().unwrap().is_finite()));
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
    assert!(cfg["model"]["vocab"].as_integer().unwrap() >= 1024, "vocab resolved");
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["finished"], true);
}

#[test]
fn every_position_scheme_and_memory_trains_without_nan() {
    let base = scratch("schemes");
    for branch in ["001_pristine", "002_nope", "003_xpos", "004_linspace", "005_alibi", "000_rmt"] {
        let out = base.join(branch);
        let o = train(branch, &out, 6, &["--set", "memory.tokens=4", "--set", "train.n_windows=3"][if branch == "000_rmt" { 0 } else { 4 }..]);
        ok(&o);
        check_run(&out, 6, if branch == "000_rmt" { 3 } else { 2 });
    }
}

/// Unigram entropy (nats/token) of a token file, the loss of the best context-free model.
fn unigram_entropy(path: &std::path::Path) -> f64 {
    let f = bakallm::data::TokenFile::open(path).unwrap();
    let mut buf = vec![0u32; f.len()];
    f.read_into(0, &mut buf);
    let mut counts = vec![0u64; f.vocab_size()];
    buf.iter().for_each(|&t| counts[t as usize] += 1);
    let n = buf.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| -(c as f64 / n) * (c as f64 / n).ln()).sum()
}

#[test]
fn a_tiny_model_learns_real_text_below_unigram_entropy() {
    let out = scratch("learn").join("run");
    let o = train(
        "001_pristine",
        &out,
        300,
        &["--set", "train.eval_every=100", "--set", "train.eval_samples=16", "--set", "train.lr=3e-3", "--set", "train.warmup_steps=20", "--set", "train.schedule=cosine"],
    );
    ok(&o);
    let (_, rows) = read_csv(&out.join("metrics.csv"));
    let final_val: f64 = rows.iter().rev().find(|r| r[3] == "val").unwrap()[4].parse().unwrap();
    let val_tok = cache().join("default").join("bpe1024-docsplit").join("val.tok");
    let h = unigram_entropy(&val_tok);
    eprintln!("final val loss {final_val:.4} nats, unigram entropy {h:.4} nats");
    assert!(final_val < h - 0.25, "val loss {final_val} not clearly below the unigram entropy {h}");
}

#[test]
fn same_config_and_seed_give_identical_csvs() {
    let base = scratch("determinism");
    for name in ["a", "b"] {
        ok(&train("000_rmt", &base.join(name), 8, &["--set", "memory.tokens=2", "--seed", "7"]));
    }
    let strip = |p: &std::path::Path| -> Vec<String> {
        // drop the timing columns elapsed_s and tok_per_s
        read_csv(p).1.iter().map(|r| format!("{},{},{},{},{},{}", r[0], r[1], r[3], r[4], r[5], r[6])).collect()
    };
    assert_eq!(strip(&base.join("a/metrics.csv")), strip(&base.join("b/metrics.csv")));
    assert_eq!(std::fs::read(base.join("a/eval.csv")).unwrap(), std::fs::read(base.join("b/eval.csv")).unwrap());
    ok(&train("000_rmt", &base.join("c"), 8, &["--set", "memory.tokens=2", "--seed", "8"]));
    assert_ne!(strip(&base.join("a/metrics.csv")), strip(&base.join("c/metrics.csv")), "another seed must differ");
}
