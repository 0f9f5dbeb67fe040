//! `bench/ncu_sass.py` (Nsight Compute's per-instruction source page, summarised per kernel) on a
//! made-up page whose shares are worked out by hand below: stall reasons, instruction mix, the
//! segments between block barriers, the hottest instructions (one without samples has no main
//! stall); a page that ncu printed twice
//! counts once; a missing file and a kernel filter that matches nothing are refused in one line.

mod common;
use common::*;
use std::process::Command;

const HEADER: &str = r#""Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)","Instructions Executed","stall_long_sb","stall_wait","stall_barrier","stall_long_sb (Not Issued)""#;

/// One kernel's page: (source, samples, executed, long_sb, wait, barrier) per instruction.
fn page(name: &str, rows: &[(&str, u32, u32, u32, u32, u32)]) -> String {
    let mut s = format!("\"Kernel Name\",\"{name}\",\n{HEADER}\n");
    for (i, (src, samples, executed, long_sb, wait, barrier)) in rows.iter().enumerate() {
        s += &format!("\"0x{:x}\",\"{src}\",\"{samples}\",\"0\",\"{executed}\",\"{long_sb}\",\"{wait}\",\"{barrier}\",\"{}\"\n", i * 16, long_sb / 2);
    }
    s
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new("python3").arg(root().join("bench").join("ncu_sass.py")).args(args).output().expect("python3 (the test runs bench/ncu_sass.py)")
}

#[test]
fn ncu_sass_summarises_a_source_page() {
    let one = page(
        "k_one",
        &[
            ("      LDG.E R2, [R4.64]", 10, 100, 8, 2, 0),
            ("      BAR.SYNC.DEFER_BLOCKING 0x0", 30, 100, 0, 0, 30),
            ("      HMMA.16816.F32.BF16 R8, R12, R16, R8", 40, 400, 0, 40, 0),
            ("@!P0  BRA 0x40", 20, 100, 20, 0, 0),
        ],
    );
    let two = page("k_two", &[("      FFMA R1, R2, R3, R4", 5, 50, 0, 5, 0), ("      MOV R1, R2", 0, 50, 0, 0, 0)]);
    let dir = scratch("ncu-sass");
    let file = dir.join("page.csv");
    std::fs::write(&file, format!("{one}{one}{two}")).unwrap();
    let o = run(&[file.to_str().unwrap(), "--json", "--top", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "the page printed twice counts once: {lines:?}");
    let k = &lines[0];
    assert_eq!(k["kernel"], "k_one");
    assert_eq!((k["instructions"].as_u64(), k["executed"].as_f64(), k["samples"].as_f64()), (Some(4), Some(700.0), Some(100.0)));
    // stalls: wait 42, barrier 30, long_sb 28 of 100 samples
    assert_eq!(k["stalls"], serde_json::json!([["wait", 0.42], ["barrier", 0.3], ["long_sb", 0.28]]));
    // executed by opcode: HMMA 400 of 700, the rest 100 each (ties in first-seen order)
    assert_eq!(k["mix"], serde_json::json!([["HMMA", 0.571], ["LDG", 0.143], ["BAR", 0.143], ["BRA", 0.143]]));
    // segments end after each barrier: [LDG, BAR] 40 samples, [HMMA, BRA] 60
    let seg = k["segments"].as_array().unwrap();
    assert_eq!(seg.len(), 2);
    assert_eq!((seg[0]["instructions"].clone(), seg[0]["samples"].as_f64(), seg[0]["executed"].as_f64(), seg[0]["tensor"].as_f64()), (serde_json::json!([0, 2]), Some(0.4), Some(200.0), Some(0.0)));
    assert_eq!((seg[1]["samples"].as_f64(), seg[1]["executed"].as_f64(), seg[1]["tensor"].as_f64()), (Some(0.6), Some(500.0), Some(400.0)));
    assert_eq!(seg[1]["stalls"], serde_json::json!([["wait", 0.4], ["long_sb", 0.2], ["barrier", 0.0]]));
    let hot = k["hottest"].as_array().unwrap();
    assert_eq!(hot.len(), 2);
    assert_eq!((hot[0]["index"].as_u64(), hot[0]["samples"].as_f64(), hot[0]["stall"].as_str()), (Some(2), Some(0.4), Some("wait")));
    assert_eq!((hot[1]["index"].as_u64(), hot[1]["stall"].as_str()), (Some(1), Some("barrier")));
    assert_eq!(lines[1]["kernel"], "k_two");
    // an instruction without samples has no main stall
    assert_eq!((lines[1]["hottest"][0]["stall"].as_str(), lines[1]["hottest"][1]["stall"].as_str()), (Some("wait"), Some("–")));

    // the text form, one kernel picked by name
    let o = run(&[file.to_str().unwrap(), "--kernel", "two"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("== k_two") && !text.contains("k_one"), "{text}");

    // refused in one line
    for (args, says) in [
        (vec![dir.join("missing.csv").to_str().unwrap().to_string()], "missing.csv: No such file"),
        (vec![file.to_str().unwrap().to_string(), "--kernel".into(), "nomatch".into()], "no kernel's source page matches 'nomatch'"),
    ] {
        let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
