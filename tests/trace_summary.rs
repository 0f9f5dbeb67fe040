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
exec(compile(ast.Module(body=[*ast.parse("from __future__ import annotations\nimport math").body, fn], type_ignores=[]), "trace_summary", "exec"), ns)
print(json.dumps(ns["trace_summary"](json.load(open(sys.argv[2]))["traceEvents"], int(sys.argv[3]))))
"#;

#[test]
fn baka_and_the_torch_script_summarise_a_timeline_alike() {
    let act = |kind, name: &str, start_ns: u64, end_ns: u64| Activity { kind, name: name.into(), start_ns, end_ns, stream: 1, bytes: 0 };
    use ActivityKind::*;
    let long = "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_TNT_a_name_longer_than_the_eighty_characters_kept_".repeat(2);
    // three steps of a made-up timeline (ns): gaps of 1 µs, exactly 5 µs and exactly 20 µs (the
    // buckets' edges), 50 and 400 µs, an overlap, a copy, a kernel of 1.5 µs per step (a tie for
    // the rounding to µs) and a name cut at 80 characters
    let mut acts = Vec::new();
    for s in 0..3u64 {
        let t = s * 2_000_000;
        acts.extend([
            act(Memcpy, "memcpy HtoD", t, t + 10_000),
            act(Kernel, "gemm", t + 15_000, t + 600_000),
            act(Kernel, "flash_fwd_hd64", t + 620_000, t + 900_000),
            act(Kernel, "norm", t + 850_000, t + 950_000),
            act(Kernel, &long, t + 1_000_000, t + 1_500_000),
            act(Kernel, "tie", t + 1_501_000, t + 1_502_500),
            act(Kernel, "adamw_f32", t + 1_900_000, t + 1_950_000 + s * 1000),
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
    assert!(names(&rust)[1].0.ends_with('…') && names(&rust)[1].0.chars().count() == 81);
    assert_eq!(names(&rust).iter().find(|n| n.0 == "tie").map(|n| n.1), Some(0.002)); // 1.5 µs, half away from zero
                                                                                      // per step: 10 + 585 + 280 + 50 + 500 + 1.5 + 50 (+ 0, 1, 2 µs) = 1,477.5 µs
    assert_eq!(rust["busy_ms"].as_f64(), Some(1.478));
    assert_eq!(rust["idle_by_gap"]["5_to_20us"]["gaps"].as_f64(), Some(1.0)); // the 5 µs gap
                                                                              // the 20 µs and 50 µs gaps in each step, and 50 µs between steps (two of them): 8 / 3
    assert_eq!(rust["idle_by_gap"]["20_to_100us"]["gaps"].as_f64(), Some(2.67));
}
