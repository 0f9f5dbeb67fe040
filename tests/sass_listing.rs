//! `bench/sass.py` (a kernel's SASS from NVRTC and cuobjdump, no GPU): the listing and summary of a
//! small kernel, `--src` taking a changed file's place (an added barrier shows in the count), and
//! an unknown kernel or target, or a --src folder without kernel files, refused in one line. Needs
//! NVRTC and cuobjdump (`.ci/run` installs both; the script names the pip packages when one is
//! missing).

mod common;
use common::*;
use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new("python3").arg(root().join("bench").join("sass.py")).args(args).output().expect("python3 (the test runs bench/sass.py)")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "sass.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The number after `label` in the summary.
fn count(summary: &str, label: &str) -> usize {
    let at = summary.find(label).unwrap_or_else(|| panic!("no {label:?} in\n{summary}")) + label.len();
    summary[at..].split(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty()).unwrap().parse().unwrap()
}

#[test]
fn sass_lists_and_summarises_a_kernel() {
    let listing = ok(&["norm_zero"]);
    assert!(listing.lines().count() > 5 && listing.contains("EXIT"), "{listing}");
    let summary = ok(&["norm_zero", "--summary"]);
    assert!(summary.starts_with("norm_zero (sm_90a): "), "{summary}");
    let (instructions, barriers) = (count(&summary, "sm_90a): "), count(&summary, "barriers (BAR) "));
    assert_eq!(count(&summary, "spill stores (STL) "), 0, "{summary}");
    assert_eq!(instructions, listing.lines().count(), "{summary}");
    // the same kernel with a barrier added, through --src
    let dir = scratch("sass-src");
    let norm = std::fs::read_to_string(root().join("crates/bakallm-kernels/src/cuda/norm.cu")).unwrap();
    let head = "extern \"C\" __global__ void norm_zero(float* dw, float* db, int D) {\n    GRID_DEPENDENCY();\n";
    assert!(norm.contains(head), "norm.cu: norm_zero's first lines moved");
    std::fs::write(dir.join("norm.cu"), norm.replace(head, &format!("{head}    __syncthreads();\n"))).unwrap();
    let changed = ok(&["norm_zero", "--summary", "--src", dir.to_str().unwrap()]);
    assert_eq!(count(&changed, "barriers (BAR) "), barriers + 1, "{summary}\n{changed}");

    let empty = scratch("sass-empty");
    let empty = empty.to_str().unwrap();
    for (args, why) in
        [(&["no_such_kernel"][..], "no kernel 'no_such_kernel'"), (&["norm_zero", "--arch", "sm_70"][..], "--arch sm_70"), (&["norm_zero", "--src", empty][..], "holds none of the kernel files")]
    {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why) && err.lines().count() == 1, "{args:?}: {err}");
    }
}
