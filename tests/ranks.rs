//! Data-parallel training on the CPU (`baka train --gpus N`: N processes, each with its share of
//! the batch, gradients averaged over TCP): the same run as one process up to float rounding,
//! one set of files, a killed rank stopping the others with its name, and resume on another N.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const STEPS: usize = 12;

fn run(out: &Path, gpus: usize, resume: bool, env: &[(&str, &str)]) -> std::process::Output {
    prepared();
    let mut a: Vec<String> = vec!["train".into(), "--branch".into(), "000_rmt".into(), "--steps".into(), STEPS.to_string(), "--out".into(), out.display().to_string()];
    for s in tiny_sets().into_iter().chain(["memory.tokens=2".into(), "train.checkpoint_every=4".into(), format!("train.gpus={gpus}")]) {
        a.push("--set".into());
        a.push(s);
    }
    if resume {
        a.push("--resume".into());
    }
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    baka_env(&a, env)
}

/// (step, split, loss, grad_norm) of metrics.csv.
fn rows(dir: &Path) -> Vec<(String, String, f64, Option<f64>)> {
    let (_, r) = read_csv(&dir.join("metrics.csv"));
    r.iter().map(|r| (r[0].clone(), r[3].clone(), r[4].parse().unwrap(), r[6].parse().ok())).collect()
}

/// The same rows, losses and norms equal to 1e-5 relative (the ranks' sum of half-batch gradients
/// rounds differently from the whole batch's).
fn assert_same_run(a: &Path, b: &Path) {
    let (ra, rb) = (rows(a), rows(b));
    assert_eq!(ra.len(), rb.len(), "{} vs {}", a.display(), b.display());
    assert_eq!(ra.iter().filter(|r| r.1 == "train").count(), STEPS);
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!((&x.0, &x.1), (&y.0, &y.1));
        assert!((x.2 - y.2).abs() <= 1e-5 * x.2.abs(), "step {} {}: loss {} vs {}", x.0, x.1, x.2, y.2);
        if let (Some(p), Some(q)) = (x.3, y.3) {
            assert!((p - q).abs() <= 1e-4 * p.abs(), "step {}: grad norm {p} vs {q}", x.0);
        }
    }
}

#[test]
fn two_ranks_train_the_one_process_run_and_a_killed_rank_stops_both() {
    let base = scratch("ranks");
    let one = base.join("one");
    ok(&run(&one, 1, false, &[]));
    let two = base.join("two");
    let o = run(&two, 2, false, &[]);
    ok(&o);
    assert_same_run(&one, &two);
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&one), names(&two), "the ranks write the files one process writes, once");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1, "one summary line: {}", String::from_utf8_lossy(&o.stdout));

    // rank 1 aborts at its 6th step (after the checkpoint at step 4): both stop, rank 1 named
    let killed = base.join("killed");
    let start = Instant::now();
    let o = run(&killed, 2, false, &[("BAKA_FAULT", "after-metrics-row@6"), ("BAKA_FAULT_RANK", "1")]);
    assert!(!o.status.success(), "the abort did not happen: {}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(120), "the ranks hung for {:?}", start.elapsed());
    let err = stderr(&o);
    assert!(err.contains("rank 1 of 2 was killed by a signal; the other ranks were stopped"), "the error names rank 1: {err}");
    assert!(killed.join("checkpoint").join("state.json").is_file(), "the checkpoint of step 4 is kept");
    // rank 1 hangs at its 6th step: rank 0 names it after BAKA_DIST_TIMEOUT seconds, both stop
    let hung = base.join("hung");
    let start = Instant::now();
    let o = run(&hung, 2, false, &[("BAKA_FAULT", "hang:after-metrics-row@6"), ("BAKA_FAULT_RANK", "1"), ("BAKA_DIST_TIMEOUT", "3")]);
    assert!(!o.status.success());
    assert!(start.elapsed() < Duration::from_secs(60), "the ranks hung for {:?}", start.elapsed());
    let err = stderr(&o);
    assert!(err.contains("rank 0: rank 1 did not answer within BAKA_DIST_TIMEOUT (3 s)"), "{err}");
    assert!(err.contains("rank 1 of 2 stopped answering; the other ranks were stopped"), "{err}");
    // rank 0 hangs (it sums the gradients): rank 1 names it, the launcher too
    let o = run(&base.join("hung0"), 2, false, &[("BAKA_FAULT", "hang:after-metrics-row@6"), ("BAKA_FAULT_RANK", "0"), ("BAKA_DIST_TIMEOUT", "3")]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("rank 1: rank 0 did not answer within BAKA_DIST_TIMEOUT (3 s)"), "{err}");
    assert!(err.contains("rank 0 of 2 stopped answering"), "{err}");
    // resumed with one process (the same global batch): the uninterrupted run
    ok(&run(&killed, 1, true, &[]));
    assert_same_run(&one, &killed);
}

#[test]
fn ranks_refuse_a_batch_they_cannot_share_and_a_world_that_is_not_theirs() {
    let base = scratch("ranks-bad");
    let o = run(&base.join("three"), 3, false, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("train.gpus = 3: expected a divisor of train.batch = 4"), "{}", stderr(&o));
    let o = run(&base.join("world"), 2, false, &[("WORLD_SIZE", "4"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("WORLD_SIZE=4 but train.gpus = 2"), "{}", stderr(&o));
    let o = run(&base.join("port"), 2, false, &[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "http")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("MASTER_PORT=\"http\""), "{}", stderr(&o));
    assert!(!base.join("three").exists() && !base.join("world").exists() && !base.join("port").exists(), "nothing written");
}

#[test]
fn an_experiment_over_two_ranks_trains_each_run_once_and_draws_once() {
    prepared();
    let base = scratch("ranks-exp");
    let data = data_sets();
    let exp = base.join("ranks_exp.toml");
    let text = format!(
        "description = \"ranks\"\nbranches = [\"001_pristine\", \"002_nope\"]\nseeds = [1]\nextrapolation = [16, 32]\n[overrides.model]\nd_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nwindow = 16\n[overrides.train]\nsteps = 6\nbatch = 4\nn_windows = 2\neval_every = 3\neval_samples = 2\n[overrides.data]\n{}\n{}\n",
        data[0].replace("data.", ""),
        data[1].replace("data.", "")
    );
    std::fs::write(&exp, text).unwrap();
    let o = baka(&["experiment", exp.to_str().unwrap(), "--gpus", "2"]);
    ok(&o);
    let err = stderr(&o);
    assert_eq!(err.matches("charts and report").count(), 1, "{err}");
    assert_eq!(err.matches("002_nope s1: done").count(), 1, "{err}");
    for b in ["001_pristine", "002_nope"] {
        let run = base.join("ranks_exp/runs").join(format!("{b}-s1"));
        for f in ["run.json", "extrapolation.json", "metrics.csv", "config.toml"] {
            assert!(run.join(f).is_file(), "{} missing", run.join(f).display());
        }
        assert!(std::fs::read_to_string(run.join("config.toml")).unwrap().contains("gpus = 2"));
    }
    let plots = root().join("plots").join("ranks_exp");
    assert!(plots.join("report.md").is_file());
    std::fs::remove_dir_all(&plots).unwrap();
}
