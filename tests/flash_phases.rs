//! `bench/flash_phases.py` (the flash backward's cycles by phase, from the `PROF` lines of a build
//! with `bench/flash_bwd_phases.patch`) on made-up lines whose figures are worked out by hand below;
//! a file without such lines and a malformed line are refused in one line; the patch still applies
//! to the backward as it is.

mod common;
use common::*;
use std::process::Command;

fn run(file: &std::path::Path) -> std::process::Output {
    Command::new("python3").arg(root().join("bench").join("flash_phases.py")).arg(file).output().expect("python3 (the test runs bench/flash_phases.py)")
}

#[test]
fn flash_phases_shares_cycles_by_phase() {
    let dir = scratch("flash-phases");
    let file = dir.join("phases.txt");
    // warp 0 of two blocks: 3 + 1 tiles, 1,000 + 600 cycles; `a` per tile, `pro`/`epi` per block
    let lines = "# a header line\n\
                 PROF w0 kb 0 bh 0 sm 1 tiles 3 total 1000 pro 100 a 600 epi 300\n\
                 unrelated output\n\
                 PROF w0 kb 1 bh 0 sm 2 tiles 1 total 600 pro 60 a 200 epi 340\n";
    std::fs::write(&file, lines).unwrap();
    let out = run(&file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // 1,600 cycles over 2 blocks and 4 tiles: 800 per block, 400 per tile
    assert!(text.contains("warp 0: 2 blocks, 4 query tiles, 800 cycles per block, 400 per tile"), "{text}");
    // pro 160 of 1,600 = 10.0%, 80 per block; a 800 = 50.0%, 200 per tile; epi 640 = 40.0%, 320 per block
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    for want in ["pro 10.0% 80 per block", "a 50.0% 200 per tile", "epi 40.0% 320 per block"] {
        assert!(text.lines().any(|l| words(l) == words(want)), "no {want:?} in\n{text}");
    }
    // key blocks 0 and 1: 3 and 1 tiles, 1,000 and 600 cycles
    assert!(text.lines().any(|l| words(l) == words("0 1 3.0 1000")), "{text}");
    assert!(text.lines().any(|l| words(l) == words("1 1 1.0 600")), "{text}");

    for (body, why) in [("no marks here\n", "no PROF lines"), ("PROF w0 kb 0 tiles 2 total x1\n", "not a whole number"), ("PROF w0 kb 0 tiles 0 total 5\n", "tiles and total above 0")] {
        std::fs::write(&file, body).unwrap();
        let out = run(&file);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{body:?}: {err}");
        assert!(err.contains(why) && err.lines().count() == 1, "{body:?}: {err}");
    }
}

/// `bench/flash_bwd_phases.patch` and `bench/flash_fwd_phases.patch` apply to the kernels as they
/// are (else regenerate them: each one's header describes its marks).
#[test]
fn flash_phases_patches_apply_to_the_kernels() {
    for patch in ["bench/flash_bwd_phases.patch", "bench/flash_fwd_phases.patch"] {
        let out = Command::new("git").arg("-C").arg(root()).args(["apply", "--check", patch]).output().expect("git");
        assert!(out.status.success(), "{patch} no longer applies: {}", String::from_utf8_lossy(&out.stderr));
    }
}
