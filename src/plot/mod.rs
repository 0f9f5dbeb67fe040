//! Turning training logs into charts. A [`Run`] is one run directory as written by the
//! trainer; [`draw_all`] renders every chart as PNG and SVG from the same drawing code.
//!
//! Layout: `load` reads run directories, `summary` groups runs into branches and
//! computes the per-branch numbers shared with the report, `style` holds the palette
//! and the chart frame, `geom` clips and thins curves, `charts`/`dots` draw curves and
//! per-branch dot plots.

mod charts;
mod dots;
mod extrapolation;
mod geom;
mod load;
mod style;
pub mod summary;
#[cfg(test)]
pub(crate) mod testdata;

pub use extrapolation::{table as extrapolation_table, ByLength};
pub use load::load_run;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// One training run (one branch × one seed).
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub branch: String,
    pub seed: u64,
    /// `[model] positions` (lower-cased); None when config.toml is missing.
    pub positions: Option<String>,
    /// `[memory] tokens`; > 0 is an RMT memory branch.
    pub memory_tokens: usize,
    /// `[model] window`: the trained window length.
    pub window: Option<usize>,
    /// Sorted by step.
    pub train: Vec<TrainRow>,
    /// Sorted by step; step 0 (before training) may be present.
    pub val: Vec<ValRow>,
    /// Sorted by (step, window).
    pub windows: Vec<WindowRow>,
    /// `test` rows of metrics.csv (the held-out split, evaluated when the run finished).
    pub test: Vec<ValRow>,
    /// Bits per byte on the test split, from run.json (runs from before the test split lack it).
    pub test_bpb: Option<f64>,
    /// Parameters and tokens, from run.json (runs from before 2026-12-04 lack it).
    pub scale: Option<Scale>,
    /// Loss at other evaluation lengths (`extrapolation.json`), sorted by length.
    pub extrapolation: Vec<ExtraPoint>,
}

/// A run's size against its data: all parameters, those outside the embedding and LM head, the
/// tokens it trained on and the tokens of its training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub params: u64,
    pub non_embedding: u64,
    pub tokens: u64,
    pub split: u64,
}

/// One evaluation length of `extrapolation.json`.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct ExtraPoint {
    pub length: usize,
    pub loss: f64,
    pub bits_per_byte: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct TrainRow {
    pub step: u64,
    pub tokens: u64,
    pub elapsed_s: f64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tok_per_s: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct ValRow {
    pub step: u64,
    pub tokens: u64,
    pub elapsed_s: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct WindowRow {
    pub step: u64,
    pub window: usize,
    pub loss: f64,
}

/// What to draw. Every bold training curve is the [`crate::stats::trend`] the report uses.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// Experiment name, shown in every chart title.
    pub title: String,
    /// Draw the `zoom_<a>_<b>` chart for training steps a..=b.
    pub steps: Option<(u64, u64)>,
}

/// Parses `--steps A..B` (both inclusive step numbers, A < B).
pub fn parse_step_range(s: &str) -> Result<(u64, u64)> {
    let bad = || format!("--steps '{s}': expected A..B with whole step numbers, e.g. 8000..9000");
    let (a, b) = s.trim().split_once("..").with_context(bad)?;
    let a: u64 = a.trim().parse().ok().with_context(bad)?;
    let b: u64 = b.trim().trim_start_matches('=').parse().ok().with_context(bad)?;
    if a >= b {
        bail!("--steps {a}..{b}: start must be below end");
    }
    Ok((a, b))
}

/// Loads run directories (series split by the config keys in `by`, see [`load::load_run_by`]) and
/// draws all their charts; returns the runs and the files.
pub fn draw_dirs(dirs: &[PathBuf], by: &[String], out_dir: &Path, title: &str, steps: Option<(u64, u64)>) -> Result<(Vec<Run>, Vec<PathBuf>)> {
    for key in by {
        load::check_setting(dirs, key)?;
    }
    let runs = dirs.iter().map(|d| load::load_run_by(d, by)).collect::<Result<Vec<_>>>()?;
    let opts = PlotOptions { title: title.to_string(), steps };
    let files = draw_all(&runs, out_dir, &opts)?;
    Ok((runs, files))
}

/// Draws every chart for these runs into out_dir (created if missing), returns the files
/// written (PNG+SVG). Charts that need data the runs lack (NoPE and RoPE without memory,
/// validation rows, eval.csv windows) are skipped rather than drawn empty.
pub fn draw_all(runs: &[Run], out_dir: &Path, opts: &PlotOptions) -> Result<Vec<PathBuf>> {
    if runs.is_empty() {
        bail!("no runs to plot");
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("{}: cannot create", out_dir.display()))?;
    let branches = summary::group(runs);
    let mut files = vec![];
    files.extend(charts::loss_vs_tokens(&branches, out_dir, opts)?);
    files.extend(charts::val_loss(&branches, out_dir, opts)?);
    files.extend(dots::val_final(&branches, out_dir, opts)?);
    files.extend(dots::volatility(&branches, out_dir, opts)?);
    files.extend(charts::nope_vs_rope(&branches, out_dir, opts)?);
    if let Some(range) = opts.steps {
        files.extend(charts::zoom(&branches, range, out_dir, opts)?);
    }
    files.extend(dots::loss_per_window(&branches, out_dir, opts)?);
    files.extend(extrapolation::chart(&branches, out_dir, opts)?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;

    #[test]
    fn step_range_parsing() {
        assert_eq!(parse_step_range("8000..9000").unwrap(), (8000, 9000));
        assert_eq!(parse_step_range(" 10 ..=20").unwrap(), (10, 20));
        assert_eq!(parse_step_range("10..5").unwrap_err().to_string(), "--steps 10..5: start must be below end");
        let e = parse_step_range("8k-9k").unwrap_err().to_string();
        assert!(e.contains("'8k-9k'") && e.contains("A..B"), "{e}");
        assert!(parse_step_range("1..x").is_err());
    }

    #[test]
    fn loads_synthetic_runs() {
        let root = TempDir::new("load");
        let dirs = standard_set(root.path(), 0.08, 0.08);
        let runs: Vec<Run> = dirs.iter().map(|d| load_run(d).unwrap()).collect();
        assert_eq!(runs.len(), 18);
        let nope = runs.iter().find(|r| r.branch == "002_nope" && r.seed == 2).unwrap();
        assert_eq!(nope.positions.as_deref(), Some("nope"));
        assert_eq!(nope.train.len(), 2000);
        assert_eq!(nope.train[9].step, 10);
        assert!(nope.val[0].step == 0 && nope.val.len() == 11);
        assert_eq!(nope.windows.iter().filter(|w| w.step == 2000).count(), 4);
        assert!(nope.val.iter().all(|v| v.loss.is_finite()));
        let rmt = runs.iter().find(|r| r.branch == "006_rmt").unwrap();
        assert_eq!(rmt.memory_tokens, 16);
        // colours follow the scheme, not the set of branches present
        let colours = |runs: &[Run]| -> Vec<(String, usize)> { summary::group(runs).iter().map(|b| (b.name.clone(), b.color)).collect() };
        let all = colours(&runs);
        assert!(all.contains(&("002_nope".into(), 1)) && all.contains(&("006_rmt".into(), 5)), "{all:?}");
        let no_rope: Vec<Run> = runs.iter().filter(|r| r.branch != "001_rope").cloned().collect();
        assert!(colours(&no_rope).contains(&("002_nope".into(), 1)));
        // no config.toml: branch and seed come from the directory name
        let alibi = runs.iter().find(|r| r.branch == "005_alibi" && r.seed == 3).unwrap();
        assert_eq!(alibi.positions, None);
        assert_eq!(alibi.train.len(), 1500);
    }

    fn err_of(dir: &Path) -> String {
        let e = load_run(dir).unwrap_err().to_string();
        assert!(!e.contains('\n'), "error must be one line: {e}");
        e
    }

    #[test]
    fn load_errors_name_the_file() {
        let root = TempDir::new("loaderr");
        let dir = write_run(root.path(), &Spec::new("002_nope", 1, Some("nope")));
        let m = dir.join("metrics.csv");
        let text = std::fs::read_to_string(&m).unwrap();

        // truncated last line
        let cut = text.trim_end().rfind(',').unwrap();
        let cut = text[..cut].rfind(',').unwrap();
        std::fs::write(&m, &text[..cut]).unwrap();
        let lines = text[..cut].lines().count();
        let e = err_of(&dir);
        assert_eq!(e, format!("{} line {lines}: 6 of 8 fields (truncated?)", m.display()));

        // unparsable number
        std::fs::write(&m, text.replacen("train,", "train,abc", 1)).unwrap();
        let l = text.lines().position(|x| x.contains("train,")).unwrap() + 1;
        let e = err_of(&dir);
        assert!(e.starts_with(&format!("{} line {l}: 'loss' = 'abc", m.display())), "{e}");

        // missing column, columns in another order otherwise fine
        let renamed = text.replacen("loss", "los", 1);
        std::fs::write(&m, renamed).unwrap();
        let e = err_of(&dir);
        assert_eq!(e, format!("{}: missing column 'loss' (expected step,tokens,elapsed_s,split,loss,lr,grad_norm,tok_per_s)", m.display()));

        // header only: no train rows
        std::fs::write(&m, text.lines().next().unwrap()).unwrap();
        assert!(err_of(&dir).contains("metrics.csv: no train rows"));

        // empty file
        std::fs::write(&m, "").unwrap();
        assert_eq!(err_of(&dir), format!("{}: empty file (expected header step,tokens,elapsed_s,split,loss,lr,grad_norm,tok_per_s)", m.display()));

        // a directory without metrics.csv
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(err_of(&empty), format!("{}: no metrics.csv (not a run directory?)", empty.display()));

        // broken eval.csv names its own file
        std::fs::write(&m, &text).unwrap();
        std::fs::write(dir.join("eval.csv"), "step,window\n1,2\n").unwrap();
        assert!(err_of(&dir).contains("eval.csv: missing column 'loss'"));
    }

    #[test]
    fn reordered_columns_and_nonfinite_load() {
        let root = TempDir::new("reorder");
        let dir = root.path().join("009_x-s4");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.csv"),
            "split,loss,step,tokens,elapsed_s,lr,grad_norm,tok_per_s\n\
             train,3.5,1,100,0.5,0.001,1.2,200\ntrain,NaN,2,200,1.0,0.001,,\nval,3.4,2,200,1.1,,,\n",
        )
        .unwrap();
        let run = load_run(&dir).unwrap();
        assert_eq!((run.branch.as_str(), run.seed), ("009_x", 4));
        assert_eq!(run.train[0].tokens, 100);
        assert!(run.train[1].loss.is_nan() && run.train[1].grad_norm.is_nan());
        assert_eq!(run.val.len(), 1);
        assert!(run.windows.is_empty());
    }

    fn opts(steps: Option<(u64, u64)>) -> PlotOptions {
        PlotOptions { title: "Synthetic p4".into(), steps }
    }

    fn names(files: &[PathBuf]) -> Vec<String> {
        let mut v: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn draw_all_writes_every_chart() {
        let root = TempDir::new("charts");
        let runs: Vec<Run> = standard_set(root.path(), 0.08, 0.08).iter().map(|d| load_run(d).unwrap()).collect();
        // PLOT_SAMPLE_DIR=... keeps the charts for looking at them.
        let out = std::env::var("PLOT_SAMPLE_DIR").map(PathBuf::from).unwrap_or(root.path().join("charts"));
        let files = draw_all(&runs, &out, &opts(Some((800, 1200)))).unwrap();
        let stems = ["loss_per_window", "loss_vs_tokens", "nope_vs_rope", "val_final", "val_loss", "volatility", "zoom_800_1200"];
        let mut want: Vec<String> = stems.iter().flat_map(|s| [format!("{s}.png"), format!("{s}.svg")]).collect();
        want.sort();
        assert_eq!(names(&files), want);
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            if f.extension().unwrap() == "png" {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
                assert!(bytes.len() > 10_000, "{} is only {} bytes", f.display(), bytes.len());
            } else {
                let text = String::from_utf8(bytes).unwrap();
                assert!(text.contains("Synthetic p4"), "{} lacks the title", f.display());
            }
        }
        let svg = std::fs::read_to_string(out.join("nope_vs_rope.svg")).unwrap();
        assert!(svg.contains("002_nope − 001_rope"));
        if std::env::var("PLOT_SAMPLE_DIR").is_ok() {
            crate::report::write_report("Synthetic p4", &runs, &out, &files).unwrap();
        }
    }

    #[test]
    fn optional_charts_follow_the_data() {
        let root = TempDir::new("charts-opt");
        let mut runs: Vec<Run> = standard_set(root.path(), 0.08, 0.08).iter().map(|d| load_run(d).unwrap()).collect();
        let out = root.path().join("a");
        let files = names(&draw_all(&runs, &out, &opts(None)).unwrap());
        assert!(files.contains(&"nope_vs_rope.png".to_string()));
        assert!(!files.iter().any(|f| f.starts_with("zoom")));
        // no RoPE without memory: no NoPE-vs-RoPE chart; single seed, no val rows, no windows
        runs.retain(|r| r.positions.as_deref() != Some("rope") || r.memory_tokens > 0);
        runs.retain(|r| r.branch != "003_xpos" || r.seed == 1);
        runs.iter_mut().filter(|r| r.branch == "004_linspace").for_each(|r| {
            r.val.clear();
            r.windows.clear();
        });
        let out = std::env::var("PLOT_SAMPLE_DIR").map(|d| PathBuf::from(d).join("edge")).unwrap_or(root.path().join("b"));
        let files = names(&draw_all(&runs, &out, &opts(Some((1900, 2500)))).unwrap());
        assert!(!files.iter().any(|f| f.starts_with("nope_vs_rope")));
        assert!(files.contains(&"zoom_1900_2500.svg".to_string()) && files.contains(&"val_final.png".to_string()));
        let svg = std::fs::read_to_string(out.join("val_loss.svg")).unwrap();
        assert!(svg.contains("no val rows: 004_linspace") && svg.contains("003_xpos (n=1)"));
    }
}
