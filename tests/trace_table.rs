//! `bench/trace_table.py` (GPU time per kernel and step from `baka bench --trace` files) on made-up
//! timelines whose figures are worked out by hand below: ms and launches per step, the totals split
//! into cuBLAS's GEMMs and the rest, two traces side by side with the largest change first, the idle
//! time by neighbours; a missing file and a file that is not a trace are refused in one line.

mod common;
use common::*;
use serde_json::json;
use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new("python3").arg(root().join("bench").join("trace_table.py")).args(args).output().expect("python3 (the test runs bench/trace_table.py)")
}

/// A trace of two steps, each `memset` (1 µs), `nvjet_a` (`gemm` µs) 2 µs later, `k1` (10 µs) 2 µs
/// after that, and `extra` (5 µs) right after `k1` if given; steps 200 µs apart.
fn trace(gemm: f64, extra: bool) -> serde_json::Value {
    let mut evs = vec![json!({"name": "host", "cat": "cpu", "ph": "X", "ts": 0.0, "dur": 50.0})];
    for s in 0..2 {
        let t = s as f64 * 200.0;
        evs.push(json!({"name": "memset", "cat": "memset", "ph": "X", "ts": t, "dur": 1.0, "args": {"bytes": 4}}));
        evs.push(json!({"name": "nvjet_a", "cat": "kernel", "ph": "X", "ts": t + 3.0, "dur": gemm}));
        evs.push(json!({"name": "k1", "cat": "kernel", "ph": "X", "ts": t + 5.0 + gemm, "dur": 10.0}));
        if extra {
            evs.push(json!({"name": "extra", "cat": "kernel", "ph": "X", "ts": t + 15.0 + gemm, "dur": 5.0}));
        }
    }
    json!({"traceEvents": evs, "displayTimeUnit": "ms"})
}

/// The numbers of the line of `out` that starts with `label`.
fn row(out: &str, label: &str) -> Vec<f64> {
    let line = out.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no line {label:?} in\n{out}"));
    line[label.len()..].split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

#[test]
fn trace_table_tabulates_and_compares_timelines() {
    let dir = scratch("trace-table");
    let (now, before) = (dir.join("now.json"), dir.join("before.json"));
    std::fs::write(&now, trace(100.0, false).to_string()).unwrap();
    std::fs::write(&before, trace(120.0, true).to_string()).unwrap();

    let o = run(&[now.to_str().unwrap(), "--steps", "2", "--gaps"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    // per step: nvjet_a 100 µs once, k1 10, the memset 1; the host's event is left out
    assert_eq!(row(&out, "nvjet_a "), vec![0.1, 1.0]);
    assert_eq!(row(&out, "k1 "), vec![0.01, 1.0]);
    assert_eq!(row(&out, "memset "), vec![0.001, 1.0]);
    assert!(!out.contains("host"), "{out}");
    assert_eq!(row(&out, "all "), vec![0.111]);
    assert_eq!(row(&out, "cuBLAS GEMMs "), vec![0.1]);
    assert_eq!(row(&out, "the rest "), vec![0.011]);
    // idle: 2 µs memset → gemm and gemm → kernel in each step, 85 µs kernel → memset between them
    assert_eq!(row(&out, "memset → gemm "), vec![2.0, 1.0, 2.0]);
    assert_eq!(row(&out, "gemm → kernel "), vec![2.0, 1.0, 2.0]);
    assert_eq!(row(&out, "kernel → memset "), vec![42.5, 0.5, 85.0]);

    // against the before trace: the GEMM 120 → 100 µs first, then `extra` 5 → 0, k1 unchanged
    let o = run(&[now.to_str().unwrap(), before.to_str().unwrap(), "--steps", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let table: Vec<&str> = out.lines().skip(1).collect();
    assert!(table[0].starts_with("nvjet_a ") && table[1].starts_with("extra "), "{out}");
    assert_eq!(row(&out, "nvjet_a "), vec![0.12, 0.1, -0.02, 1.0, 1.0]);
    assert_eq!(row(&out, "extra "), vec![0.005, 0.0, -0.005, 1.0, 0.0]);
    assert_eq!(row(&out, "k1 "), vec![0.01, 0.01, 0.0, 1.0, 1.0]);
    assert_eq!(row(&out, "all "), vec![0.136, 0.111, -0.025]);
    assert_eq!(row(&out, "cuBLAS GEMMs "), vec![0.12, 0.1, -0.02]);

    // refused in one line
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"events\": []}").unwrap();
    for (args, says) in [
        (vec![dir.join("missing.json").to_str().unwrap().to_string()], "missing.json: cannot read it"),
        (vec![bad.to_str().unwrap().to_string()], "bad.json: no `traceEvents` list"),
        (vec![now.to_str().unwrap().to_string(), "--steps".into(), "0".into()], "--steps 0"),
    ] {
        let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
