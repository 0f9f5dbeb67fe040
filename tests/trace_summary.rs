//! The two timeline summaries agree: `baka bench --trace`'s (src/timeline.rs) and
//! `bench/torch_reference.py --trace`'s (`trace_summary`, Python, read from the script without
//! importing torch), both over the Trace Event JSON that `baka bench --trace` writes for one
//! made-up timeline, so that the same-run comparison with PyTorch reads the same figures.

mod common;
use bakallm::kernels::trace::{Activity, ActivityKind};
use common::*;
use std::process::Command;

const EXTRACT: &str = r#"
import ast, json, sys
src = open(sys.argv[1]).read()
fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "trace_summary")
ns = {}
exec(compile(ast.Module(body=[ast.parse("from __future__ import annotations").body[0], fn], type_ignores=[]), "trace_summary", "exec"), ns)
print(json.dumps(ns["trace_summary"](json.load(open(sys.argv[2]))["traceEvents"], int(sys.argv[3]))))
"#;

#[test]
fn baka_and_the_torch_script_summarise_a_timeline_alike() {
    let act = |kind, name: &str, start_us: u64, end_us: u64| Activity { kind, name: name.into(), start_ns: start_us * 1000, end_ns: end_us * 1000, stream: 1, bytes: 0 };
    use ActivityKind::*;
    // three steps of a made-up timeline: gaps of 1, 7, 50 and 400 µs, an overlap, a copy
    let mut acts = Vec::new();
    for s in 0..3u64 {
        let t = s * 2000;
        acts.extend([
            act(Memcpy, "memcpy HtoD", t, t + 10),
            act(Kernel, "gemm", t + 11, t + 600),
            act(Kernel, "flash_fwd_hd64", t + 607, t + 900),
            act(Kernel, "norm", t + 850, t + 950),
            act(Kernel, "gemm", t + 1000, t + 1500),
            act(Kernel, "adamw_f32", t + 1900, t + 1950 + s),
        ]);
    }
    let dir = scratch("trace-summary");
    let file = dir.join("trace.json");
    std::fs::write(&file, serde_json::to_vec(&bakallm::timeline::chrome_trace(&acts)).unwrap()).unwrap();
    let rust = bakallm::timeline::summary(&acts, 3, 0);
    let o = Command::new("python3")
        .args(["-c", EXTRACT])
        .arg(root().join("bench").join("torch_reference.py"))
        .arg(&file)
        .arg("3")
        .output()
        .expect("python3 (the test reads bench/torch_reference.py's trace_summary)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let py: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["span_ms", "busy_ms", "idle_ms", "kernels"] {
        assert_eq!(rust[key].as_f64(), py[key].as_f64(), "{key}: baka {} vs python {}", rust[key], py[key]);
    }
    for gap in ["under_5us", "5_to_20us", "20_to_100us", "100us_and_over"] {
        for f in ["gaps", "ms"] {
            let (r, p) = (rust["idle_by_gap"][gap][f].as_f64().unwrap(), py["idle_by_gap"][gap][f].as_f64().unwrap());
            assert!((r - p).abs() < 1e-9, "idle {gap} {f}: {r} vs {p}");
        }
    }
    let names = |v: &serde_json::Value| v["top"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap().to_string(), t["ms"].as_f64().unwrap())).collect::<Vec<_>>();
    assert_eq!(names(&rust), names(&py));
    assert_eq!(names(&rust)[0].0, "gemm");
    assert_eq!(rust["busy_ms"].as_f64(), Some(1.493)); // per step: 10 + 589 + 293 + 50 + 500 + 50 (+ 0, 1, 2) µs
}
