//! Report tests on synthetic runs: tables, verdicts that follow the numbers.
use super::*;
use crate::plot::testdata::{standard_set, write_run, Spec, TempDir};
use crate::plot::{draw_all, load_run, PlotOptions};

fn runs_from(dirs: &[PathBuf]) -> Vec<Run> {
    dirs.iter().map(|d| load_run(d).unwrap()).collect()
}

fn report(runs: &[Run], out: &Path, charts: &[PathBuf]) -> String {
    let p = write_report("Synthetic p4", runs, out, charts).unwrap();
    std::fs::read_to_string(p).unwrap()
}

fn line_with<'a>(md: &'a str, needle: &str) -> &'a str {
    md.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in\n{md}"))
}

#[test]
fn tables_links_and_paired_noise_follows_the_model() {
    let root = TempDir::new("report");
    let noisy_nope = runs_from(&standard_set(&root.path().join("a"), 0.2, 0.03));
    let out = root.path().join("out");
    let charts = draw_all(&noisy_nope, &out, &PlotOptions { title: "Synthetic p4".into(), steps: None }).unwrap();
    let md = report(&noisy_nope, &out, &charts);
    for b in ["001_rope", "002_nope", "003_xpos", "004_linspace", "005_alibi", "006_rmt"] {
        assert!(md.contains(&format!("| {b} | ")), "no table row for {b}");
    }
    assert!(md.contains("![val_final](val_final.png)") && md.contains("[svg](nope_vs_rope.svg)"));
    assert!(md.contains("## Each branch against 001_rope (paired by seed)") && md.contains("| **mean ± 95% CI** |"));
    assert!(md.contains(stats::DEFINITIONS[0]));
    assert!(md.contains("Lowest final val loss: **006_rmt**"), "{md}");
    // NoPE is 0.1 worse with a small wobble: beyond noise, and behind at every step
    assert!(line_with(&md, "| 002_nope | 3 | +0.09").contains("(val)"), "{md}");
    assert!(md.contains("002_nope is behind 001_rope throughout"), "{md}");
    // NoPE's own noise is 0.2 against 0.03 for every other model: it moves apart from RoPE more
    assert!(line_with(&md, "Volatility:").contains("more than the other branches'"), "{md}");
    // when RoPE itself is the noisy one, every branch moves apart from it alike
    let noisy_rope = runs_from(&standard_set(&root.path().join("b"), 0.03, 0.2));
    let md2 = report(&noisy_rope, &root.path().join("out2"), &[]);
    assert!(line_with(&md2, "Volatility:").contains("within the range of the other branches'"), "{md2}");
    // a wall-time column would make identical reruns rewrite the file
    assert!(!md.contains("wall time"));
    assert!(md.contains("No run has a test row"));
}

#[test]
fn paired_comparison_finds_an_offset_welch_cannot() {
    // NoPE 0.01 worse at every seed; the seeds' levels spread by 0.1 (shared by both branches)
    let root = TempDir::new("report-paired");
    let mut dirs = vec![];
    for seed in 1..=3 {
        for (b, pos, extra) in [("001_rope", "rope", 0.0), ("002_nope", "nope", 0.01)] {
            let mut s = Spec::new(b, seed, Some(pos));
            s.final_loss += extra;
            s.seed_spread = 0.1;
            s.val_noise = 0.0005;
            dirs.push(write_run(root.path(), &s));
        }
    }
    let runs = runs_from(&dirs);
    let md = report(&runs, root.path(), &[]);
    assert!(line_with(&md, "Against 001_rope").contains("beyond noise: **002_nope** is worse (Δ +0.010"), "{md}");
    let finals = |b: &str| runs.iter().filter(|r| r.branch == b).map(|r| summary::final_val(r).unwrap()).collect::<Vec<_>>();
    assert!(stats::welch(&finals("002_nope"), &finals("001_rope")).unwrap().p >= 0.05);
}

#[test]
fn crossing_verdict_follows_the_gap() {
    let root = TempDir::new("report-bounce");
    // NoPE as good as RoPE on average, with a slow wobble: the trend of d must change sign
    let mut dirs = vec![];
    for seed in 1..=3 {
        let mut n = Spec::new("002_nope", seed, Some("nope"));
        n.wobble = 0.05;
        dirs.push(write_run(root.path(), &n));
        dirs.push(write_run(root.path(), &Spec::new("001_rope", seed, Some("rope"))));
    }
    let runs = runs_from(&dirs);
    let md = report(&runs, root.path(), &[]);
    assert!(md.contains("002_nope − 001_rope changes sign") && md.contains("does reach 001_rope's level"), "{md}");
    assert!(!md.contains("throughout"), "{md}");
    // no wobble, NoPE better in seeds 1-2 and worse in seed 3 by a constant
    let root2 = TempDir::new("report-seed-side");
    let mut dirs = vec![];
    for seed in 1..=3 {
        let mut n = Spec::new("002_nope", seed, Some("nope"));
        n.final_loss += if seed == 3 { 0.05 } else { -0.05 };
        dirs.push(write_run(root2.path(), &n));
        dirs.push(write_run(root2.path(), &Spec::new("001_rope", seed, Some("rope"))));
    }
    let md2 = report(&runs_from(&dirs), root2.path(), &[]);
    assert!(md2.contains("never changes sign within a seed") && md2.contains("ahead in 2 of 3 seeds"), "{md2}");
    // only one branch, no NoPE/RoPE pair
    let one = vec![runs[0].clone()];
    let md = report(&one, &root.path().join("one"), &[]);
    assert!(md.contains("Only **002_nope** has a final loss") && md.contains("question is not addressed"), "{md}");
}

#[test]
fn equal_values_are_called_equal_and_plurals_agree() {
    let root = TempDir::new("report-equal");
    let mut dirs = vec![];
    for seed in 1..=2 {
        for b in ["001_rope", "002_rope"] {
            dirs.push(write_run(root.path(), &Spec::new(b, seed, Some("rope"))));
        }
    }
    let mut runs = runs_from(&dirs);
    // identical final losses in both branches
    for r in runs.iter_mut() {
        r.val.last_mut().unwrap().loss = 3.5 + r.seed as f64 * 0.01;
    }
    let md = report(&runs, root.path(), &[]);
    assert!(md.contains("equal to four decimals with"), "{md}");
    assert!(md.contains("Holm-corrected over 1 comparison)"), "{md}");
    // one seed per branch (a sweep): nothing is paired, and the verdict says so
    let seed1: Vec<Run> = runs.iter().filter(|r| r.seed == 1).cloned().collect();
    let md = report(&seed1, &root.path().join("seed1"), &[]);
    assert!(md.contains("no branch shares two seeds with it, so none is paired.") && !md.contains("over 0 comparisons"), "{md}");
    // two shared seeds, but the branch's final losses are not finite: not tested, and said why
    for r in runs.iter_mut().filter(|r| r.branch == "002_rope") {
        r.val.iter_mut().for_each(|v| v.loss = f64::NAN);
        r.test.clear();
    }
    let md = report(&runs, &root.path().join("nan"), &[]);
    assert!(md.contains("nothing paired): not tested: 002_rope (no finite final loss on 2 shared seeds)"), "{md}");
}

#[test]
fn diverged_run_is_reported_not_fatal() {
    let root = TempDir::new("report-nan");
    let mut runs = runs_from(&standard_set(root.path(), 0.03, 0.03));
    let r = runs.iter_mut().find(|r| r.branch == "003_xpos").unwrap();
    let n = r.train.len();
    r.train[n - 300..].iter_mut().for_each(|t| t.loss = f64::NAN);
    r.train[n - 400].loss = f64::INFINITY;
    r.val.last_mut().unwrap().loss = f64::NAN;
    let out = root.path().join("out");
    let o = PlotOptions { title: "NaN".into(), steps: Some((1500, 2000)) };
    let charts = draw_all(&runs, &out, &o).unwrap();
    assert_eq!(charts.len(), 14);
    let md = report(&runs, &out, &charts);
    assert!(md.contains("003_xpos: 301 non-finite training losses"), "{md}");
    let row = md.lines().find(|l| l.starts_with("| 003_xpos |")).unwrap();
    assert!(!row.contains("NaN"), "{row}");
}

#[test]
fn scale_section_states_tokens_per_parameter_and_epochs() {
    let root = TempDir::new("report-scale");
    let dirs = standard_set(&root.path().join("a"), 0.03, 0.03);
    let md = report(&runs_from(&dirs), &root.path().join("out"), &[]);
    assert!(!md.contains("## Scale"), "runs without sizes in run.json get no Scale section");
    for d in &dirs {
        let memory = d.to_string_lossy().contains("rmt");
        let params = if memory { 20_600_000 } else { 20_000_000 };
        let json = format!(r#"{{"finished": true, "params": {params}, "non_embedding_params": {}, "tokens": 49152000, "train_split_tokens": 14233342}}"#, params - 6_000_000);
        std::fs::write(d.join("run.json"), json).unwrap();
    }
    let md = report(&runs_from(&dirs), &root.path().join("out2"), &[]);
    let plain = line_with(&md, "- 001_rope, 002_nope");
    assert!(
        plain.contains("20.0M parameters, 14.0M outside the embedding and LM head; 49.2M training tokens per run = 3.51 per non-embedding parameter and 3.45 epochs of the 14.2M-token training split"),
        "{md}"
    );
    assert!(!plain.contains("006_rmt"), "a branch of another size gets its own line: {plain}");
    assert!(line_with(&md, "- 006_rmt: 20.6M parameters").contains("3.37 per non-embedding"), "{md}");
}
