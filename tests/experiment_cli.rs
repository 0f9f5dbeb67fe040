//! Experiments end to end through the binary: runs, skipping finished runs, --only, charts,
//! report, eval (bits per byte, extrapolation), generate.

mod common;
use common::*;
use std::path::Path;

fn write_experiment(dir: &Path) -> std::path::PathBuf {
    let data = data_sets();
    let exp = dir.join("tiny.toml");
    std::fs::write(
        &exp,
        format!(
            r#"description = "test"
branches = ["001_pristine", "002_nope"]
seeds = [1, 2]
zoom = "4..8"
extrapolation = [16, 32, 64]
[overrides.model]
d_model = 32
n_layers = 1
n_heads = 2
d_ff = 64
window = 16
[overrides.train]
steps = 8
batch = 2
n_windows = 2
eval_every = 4
eval_samples = 2
checkpoint_every = 4
[overrides.data]
{}
{}
"#,
            data[0].replace("data.", ""),
            data[1].replace("data.", "")
        ),
    )
    .unwrap();
    exp
}

#[test]
fn experiment_runs_skips_plots_reports_evals_and_generates() {
    prepared();
    let base = scratch("experiment");
    let exp = write_experiment(&base);
    let e = exp.to_str().unwrap();

    // a crash right after the first checkpoint of the first run
    let o = baka_env(&["experiment", e, "--only", "002_nope"], &[("BAKA_FAULT", "after-checkpoint@1")]);
    assert!(!o.status.success(), "the injected crash did not happen");
    fails_with(&baka(&["experiment", e, "--only", "002_nope"]), &["002_nope-s1", "unfinished run", "--resume"]);
    let o = baka(&["experiment", e, "--only", "002_nope", "--resume"]);
    ok(&o);
    assert!(stderr(&o).contains("[1/2] 002_nope s1") && stderr(&o).contains("resuming") && stderr(&o).contains("[2/2] 002_nope s2"), "{}", stderr(&o));
    let o = baka(&["experiment", e]);
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("002_nope s1: finished earlier") && err.contains("001_pristine s1: training"), "{err}");
    for b in ["001_pristine", "002_nope"] {
        for s in [1, 2] {
            let run = base.join("tiny/runs").join(format!("{b}-s{s}"));
            // the held-out test split is scored once at the end, in nats and bits per byte
            let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
            let (test, bpb) = (summary["test_loss"].as_f64().unwrap(), summary["test_bits_per_byte"].as_f64().unwrap());
            assert!(test.is_finite() && bpb > 0.3 && bpb < test, "test {test} bpb {bpb}");
            let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
            assert_eq!(metrics.lines().filter(|l| l.split(',').nth(3) == Some("test")).count(), 1);
            // train short, test long: one window of 16 (trained), 32 and 64 tokens
            let ex: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("extrapolation.json")).unwrap()).unwrap();
            let lens: Vec<u64> = ex["points"].as_array().unwrap().iter().map(|p| p["length"].as_u64().unwrap()).collect();
            assert_eq!(lens, vec![16, 32, 64]);
        }
    }
    // the runs above were trained two at a time, one thread each: one at a time gives the same rows
    let one = base.join("one.toml");
    std::fs::write(&one, std::fs::read_to_string(&exp).unwrap().replace("seeds = [1, 2]", "seeds = [1]").replace("extrapolation = [16, 32, 64]", "")).unwrap();
    ok(&baka(&["experiment", one.to_str().unwrap(), "--only", "002_nope", "--jobs", "1"]));
    let rows = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                [f[0], f[1], f[3], f[4], f[5], f[6]].join(",") // without elapsed_s and tok_per_s
            })
            .collect()
    };
    assert_eq!(rows(&base.join("one/runs/002_nope-s1")), rows(&base.join("tiny/runs/002_nope-s1")));
    let _ = std::fs::remove_dir_all(root().join("plots").join("one"));

    // drawing fails after every run finished (e.g. no fonts on a GPU box): the error says the runs are safe
    let o = baka_env(&["experiment", e], &[("BAKA_FAULT", "ioerror:chart")]);
    fails_with(&o, &["all runs finished", "baka report", "injected write error at chart"]);
    // charts + report, under plots/<name> relative to the working directory (the repo root)
    let plots = root().join("plots").join("tiny");
    for f in ["loss_vs_tokens", "val_loss", "val_final", "volatility", "nope_vs_rope", "loss_per_window", "zoom_4_8", "extrapolation"] {
        for ext in ["png", "svg"] {
            let p = plots.join(format!("{f}.{ext}"));
            assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() > 1000, "{} missing", p.display());
        }
    }
    let report = std::fs::read_to_string(plots.join("report.md")).unwrap();
    assert!(report.contains("| 001_pristine |") && report.contains("| 002_nope |") && report.contains("## Verdict"), "{report}");
    assert!(report.contains("## Each branch against 001_pristine (paired by seed)") && report.contains("| L = 64 |") && report.contains("final test loss"), "{report}");
    std::fs::remove_dir_all(&plots).unwrap();

    // shipped results: with runs/ gone, report reads experiments/<name>/results/ (CSVs + config)
    let (runs_dir, results) = (base.join("tiny/runs"), base.join("tiny/results"));
    for d in std::fs::read_dir(&runs_dir).unwrap().flatten() {
        let to = results.join(d.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for f in ["config.toml", "metrics.csv", "eval.csv", "run.json", "extrapolation.json"] {
            std::fs::copy(d.path().join(f), to.join(f)).unwrap();
        }
    }
    std::fs::rename(&runs_dir, base.join("tiny/runs-moved")).unwrap();
    ok(&baka(&["report", e]));
    let report2 = std::fs::read_to_string(plots.join("report.md")).unwrap();
    assert!(report2.contains("| 002_nope |") && report2.contains("| 001_pristine |"), "{report2}");
    std::fs::remove_dir_all(&plots).unwrap();
    std::fs::rename(base.join("tiny/runs-moved"), &runs_dir).unwrap();

    // plot from run dirs alone, with a zoom
    let out = base.join("plots-runs");
    let r1 = base.join("tiny/runs/002_nope-s1");
    ok(&baka(&["plot", r1.to_str().unwrap(), "--out", out.to_str().unwrap(), "--steps", "2..6"]));
    assert!(out.join("zoom_2_6.png").is_file() && out.join("loss_vs_tokens.svg").is_file());

    // --by splits one branch's runs by a setting: a copy of a run with another lr is its own series
    let lr_run = base.join("lr-run");
    std::fs::create_dir_all(&lr_run).unwrap();
    for f in ["metrics.csv", "eval.csv", "config.toml"] {
        let text = std::fs::read_to_string(r1.join(f)).unwrap();
        let text = if f == "config.toml" { text.lines().map(|l| if l.starts_with("lr = ") { "lr = 0.5" } else { l }).collect::<Vec<_>>().join("\n") } else { text };
        std::fs::write(lr_run.join(f), text).unwrap();
    }
    let (r2, out_by) = (base.join("tiny/runs/002_nope-s2"), base.join("plots-by"));
    let (p1, p2, p3, po) = (r1.to_str().unwrap(), r2.to_str().unwrap(), lr_run.to_str().unwrap(), out_by.to_str().unwrap());
    ok(&baka(&["plot", p1, p2, p3, "--by", "train.lr", "--out", po]));
    let svg = std::fs::read_to_string(out_by.join("val_final.svg")).unwrap();
    assert!(svg.contains("002_nope lr=0.5 (n=1)") && svg.contains("(n=2)") && svg.matches("002_nope lr=").count() >= 2, "series not split by lr");
    fails_with(&baka(&["plot", p1, p2, p3, "--by", "train.lrr", "--out", po]), &["config.toml", "no setting 'train.lrr'", "--by"]);
    // a run from before a setting existed (its config.toml lacks the key) is labelled "unset"
    let old_run = base.join("old-run");
    std::fs::create_dir_all(&old_run).unwrap();
    for f in ["metrics.csv", "eval.csv", "config.toml"] {
        let text = std::fs::read_to_string(lr_run.join(f)).unwrap();
        let text = if f == "config.toml" { text.lines().filter(|l| !l.starts_with("lr = ")).collect::<Vec<_>>().join("\n") } else { text };
        std::fs::write(old_run.join(f), text).unwrap();
    }
    let out_old = base.join("plots-old");
    ok(&baka(&["plot", p1, old_run.to_str().unwrap(), "--by", "train.lr", "--out", out_old.to_str().unwrap()]));
    let svg = std::fs::read_to_string(out_old.join("val_final.svg")).unwrap();
    assert!(svg.contains("002_nope lr=unset (n=1)") && svg.matches("002_nope lr=").count() >= 2, "the run without the key must be its own 'unset' series");

    // eval with more windows than trained, on the test split
    let o = baka(&["eval", r1.to_str().unwrap(), "--windows", "4", "--samples", "3"]);
    ok(&o);
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(r1.join("eval-test-w4.json")).unwrap()).unwrap();
    assert_eq!(j["per_window"].as_array().unwrap().len(), 4);
    let (loss, bpb) = (j["loss"].as_f64().unwrap(), j["bits_per_byte"].as_f64().unwrap());
    assert!(loss.is_finite() && bpb > 0.3 && bpb < loss, "loss {loss} bpb {bpb}");
    assert!((j["ppl"].as_f64().unwrap() - loss.exp()).abs() < 1e-6 * loss.exp());
    // again: it says what it replaced
    let o = baka(&["eval", r1.to_str().unwrap(), "--windows", "4", "--samples", "3", "--split", "test"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("replaced") && String::from_utf8_lossy(&o.stdout).contains("eval-test-w4.json"));

    // with no flags it scores the test split as the run's own final test loss did
    ok(&baka(&["eval", r1.to_str().unwrap()]));
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(r1.join("eval-test-w2.json")).unwrap()).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(r1.join("run.json")).unwrap()).unwrap();
    let (ours, run) = (j["loss"].as_f64().unwrap(), summary["test_loss"].as_f64().unwrap());
    assert!((ours - run).abs() < 1e-6 * run, "eval's test loss {ours} vs the run's {run}");

    // one attention window of 4x the trained length, loss by position
    let o = baka(&["eval", r1.to_str().unwrap(), "--window", "64"]);
    ok(&o);
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(r1.join("eval-test-L64.json")).unwrap()).unwrap();
    assert_eq!((j["length"].as_u64(), j["trained_window"].as_u64(), j["buckets"].as_array().unwrap().len()), (Some(64), Some(16), 8));
    assert!(j["loss"].as_f64().unwrap().is_finite() && j["bits_per_byte"].as_f64().unwrap() > 0.0);

    // any text: a file, a folder of .txt; bad input in one line
    let texts = base.join("texts");
    std::fs::create_dir_all(&texts).unwrap();
    std::fs::write(texts.join("a.txt"), "It was the best of times, it was the worst of times, it was the age of wisdom.\n").unwrap();
    std::fs::write(texts.join("b.txt"), "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.\n").unwrap();
    let o = baka(&["eval", r1.to_str().unwrap(), "--text", texts.join("a.txt").to_str().unwrap()]);
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("bits/byte") && r1.join("eval-text-a-L16.json").is_file(), "{out}");
    ok(&baka(&["eval", r1.to_str().unwrap(), "--text", texts.to_str().unwrap(), "--window", "32"]));
    assert!(r1.join("eval-text-texts-L32.json").is_file());
    let bad = base.join("bad.txt");
    std::fs::write(&bad, b"caf\xe9 au lait").unwrap();
    fails_with(&baka(&["eval", r1.to_str().unwrap(), "--text", bad.to_str().unwrap()]), &["bad.txt", "UTF-8"]);
    let empty = base.join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    fails_with(&baka(&["eval", r1.to_str().unwrap(), "--text", empty.to_str().unwrap()]), &["empty.txt", "no text to score"]);
    fails_with(&baka(&["eval", r1.to_str().unwrap(), "--text", "/nonexistent/x.txt"]), &["/nonexistent/x.txt", "no such file"]);
    fails_with(&baka(&["eval", r1.to_str().unwrap(), "--window", "0"]), &["--window 0"]);

    // generate: seeded sampling is reproducible, and the prompt is echoed first
    let g = |seed: &str| baka(&["generate", r1.to_str().unwrap(), "--prompt", "The king", "--max-tokens", "12", "--seed", seed]);
    let (a, b, c) = (g("1"), g("1"), g("2"));
    ok(&a);
    let text = String::from_utf8_lossy(&a.stdout).to_string();
    assert!(text.starts_with("The king") && text.len() > "The king".len(), "{text}");
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout, "another seed should sample differently");
}

#[test]
fn a_sweep_trains_each_value_and_draws_one_series_per_value() {
    prepared();
    let base = scratch("sweep");
    let exp = write_experiment(&base);
    let sweep = base.join("sweep.toml");
    let text = std::fs::read_to_string(&exp).unwrap().replace("seeds = [1, 2]", "seeds = [1]").replace("extrapolation = [16, 32, 64]", "[sweep]\nkey = \"train.lr\"\nvalues = [0.001, 0.01]");
    std::fs::write(&sweep, &text).unwrap();
    let s = sweep.to_str().unwrap();
    let o = baka(&["experiment", s, "--only", "002_nope", "--jobs", "1"]);
    ok(&o);
    assert!(stderr(&o).contains("[1/2] 002_nope-lr0.001 s1") && stderr(&o).contains("[2/2] 002_nope-lr0.01 s1"), "{}", stderr(&o));
    let lr = |v: &str| -> f64 {
        let cfg: toml::Value = std::fs::read_to_string(base.join("sweep/runs").join(format!("002_nope-lr{v}-s1/config.toml"))).unwrap().parse().unwrap();
        cfg["train"]["lr"].as_float().unwrap()
    };
    assert_eq!((lr("0.001"), lr("0.01")), (0.001, 0.01));
    // another learning rate is another run: the losses differ
    let last = |v: &str| std::fs::read_to_string(base.join("sweep/runs").join(format!("002_nope-lr{v}-s1/metrics.csv"))).unwrap().lines().last().unwrap().split(',').nth(4).unwrap().to_string();
    assert_ne!(last("0.001"), last("0.01"));
    // the report names each value's series
    let report = std::fs::read_to_string(root().join("plots/sweep/report.md")).unwrap();
    assert!(report.contains("002_nope lr=0.001") && report.contains("002_nope lr=0.01"), "{report}");
    let _ = std::fs::remove_dir_all(root().join("plots/sweep"));
    // a bad sweep is refused before training
    std::fs::write(&sweep, text.replace("values = [0.001, 0.01]", "values = []")).unwrap();
    fails_with(&baka(&["experiment", s]), &["sweep.values is empty", "train.lr"]);
    std::fs::write(&sweep, text.replace("key = \"train.lr\"", "key = \"train.lrr\"")).unwrap();
    fails_with(&baka(&["experiment", s]), &["lrr"]);
}
