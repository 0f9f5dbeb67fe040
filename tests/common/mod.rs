//! Helpers shared by the integration tests: run the real `baka` binary on tiny configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Shared data cache for all tests (prepared once per test binary, before any test uses it).
pub fn cache() -> PathBuf {
    root().join("target").join("test-data")
}

/// A unique scratch directory under target/test-scratch.
pub fn scratch(name: &str) -> PathBuf {
    let d = root().join("target").join("test-scratch").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn baka(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baka")).args(args).current_dir(root()).output().expect("run baka")
}

pub fn baka_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baka"));
    c.args(args).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run baka")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn ok(o: &Output) {
    assert!(o.status.success(), "baka failed: {}\n{}", stderr(o), String::from_utf8_lossy(&o.stdout));
}

/// The data settings every test uses: the real default corpus with a small vocab.
pub fn data_sets() -> Vec<String> {
    vec![format!("data.cache_dir=\"{}\"", cache().display()), "data.vocab_size=1024".into()]
}

/// Prepares the shared data once (the real npm corpus, BPE 1024).
pub fn prepared() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let mut args = vec!["prepare".to_string()];
        for s in data_sets() {
            args.push("--set".into());
            args.push(s);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&baka(&a));
    });
}

/// `--set` arguments for a tiny CPU model.
pub fn tiny_sets() -> Vec<String> {
    let mut v: Vec<String> =
        ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.d_ff=128", "model.window=32", "train.n_windows=2", "train.batch=4", "train.eval_every=5", "train.eval_samples=4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    v.extend(data_sets());
    v
}

/// `baka train` on a tiny config; returns the output.
pub fn train(branch: &str, out: &Path, steps: usize, extra: &[&str]) -> Output {
    prepared();
    let mut args: Vec<String> = vec!["train".into(), "--branch".into(), branch.into(), "--steps".into(), steps.to_string(), "--out".into(), out.display().to_string()];
    for s in tiny_sets() {
        args.push("--set".into());
        args.push(s);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    baka(&a)
}

/// Parses a CSV into (header, rows).
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    (header, lines.map(|l| l.split(',').map(String::from).collect()).collect())
}

/// Asserts a one-line error mentioning every `needle`, and a failing exit code.
pub fn fails_with(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "expected failure, got success: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected exactly one error line, got: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "error line {:?} does not mention {n:?}", lines[0]);
    }
}
