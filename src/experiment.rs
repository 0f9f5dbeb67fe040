//! Experiments: `experiments/<name>.toml` names branches × seeds and shared overrides; each run
//! goes to `experiments/<name>/runs/<branch>-s<seed>/`, then the charts and report are drawn.

use crate::config::{find_branch, read_toml, Config, Source};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Defaults to the file stem.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub branches: Vec<String>,
    pub seeds: Vec<u64>,
    /// A config layer applied to every run (`[overrides.model]`, `[overrides.train]`, …).
    #[serde(default)]
    pub overrides: toml::Table,
    /// Optional step range for the zoom chart, e.g. "200..300".
    #[serde(default)]
    pub zoom: Option<String>,
    /// Evaluation lengths for "train short, test long": every finished run is scored on the test
    /// split with one attention window of each length (`extrapolation.json`, chart and table).
    #[serde(default)]
    pub extrapolation: Vec<usize>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Self> {
        let table = read_toml(path)?;
        let mut e = Experiment::deserialize(toml::Value::Table(table))
            .map_err(|err| anyhow::anyhow!("{}: {}", path.display(), err.message().trim().replace('\n', " ")))?;
        e.path = path.to_path_buf();
        if e.name.is_empty() {
            e.name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("experiment").to_string();
        }
        if e.branches.is_empty() || e.seeds.is_empty() {
            bail!("{}: `branches` and `seeds` must each list at least one entry", path.display());
        }
        for b in &e.branches {
            find_branch(b).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        }
        if let Some(l) = e.extrapolation.iter().find(|l| **l == 0 || **l > 65536) {
            bail!("{}: extrapolation = {l}: expected lengths from 1 to 65536 tokens", path.display());
        }
        // the overrides must be a valid config layer on their own
        Config::from_layers(&[(self_source(path), e.overrides.clone())])?;
        Ok(e)
    }

    /// Directory holding this experiment's outputs (`experiments/<name>/`).
    pub fn dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(&self.name)
    }

    pub fn run_dir(&self, branch: &str, seed: u64) -> PathBuf {
        self.dir().join("runs").join(format!("{branch}-s{seed}"))
    }

    /// The resolved config of one run (branch file ← overrides ← seed ← `--set`).
    pub fn config(&self, branch: &str, seed: u64, sets: &[String]) -> Result<Config> {
        let mut seed_layer = toml::Table::new();
        crate::config::set_dotted(&mut seed_layer, "train.seed", toml::Value::Integer(seed as i64));
        let layers = [(self_source(&self.path), self.overrides.clone()), (Source::Set(format!("train.seed={seed}")), seed_layer)];
        Config::load(branch, &layers, sets)
    }
}

fn self_source(path: &Path) -> Source {
    Source::File(path.to_path_buf())
}

/// What to do with the runs of an experiment.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these branches (empty = all).
    pub only: Vec<String>,
    pub resume: bool,
    pub sets: Vec<String>,
}

/// Trains every unfinished run of the experiment, then draws its charts and report.
pub fn run(e: &Experiment, opts: &RunOptions) -> Result<()> {
    for b in &opts.only {
        if !e.branches.contains(b) {
            bail!("--only {b}: not a branch of {} (its branches: {})", e.path.display(), e.branches.join(", "));
        }
    }
    let plan: Vec<(&String, u64)> =
        e.branches.iter().filter(|b| opts.only.is_empty() || opts.only.contains(b)).flat_map(|b| e.seeds.iter().map(move |&s| (b, s))).collect();
    // Resolve every config first, so a bad branch or override fails before hours of training.
    let configs = plan.iter().map(|(b, s)| e.config(b, *s, &opts.sets)).collect::<Result<Vec<_>>>()?;
    let n = plan.len();
    let started = std::time::Instant::now();
    let mut trained = 0usize;
    for (i, ((b, s), cfg)) in plan.iter().zip(configs).enumerate() {
        let dir = e.run_dir(b, *s);
        let label = format!("[{}/{n}] {b} s{s}", i + 1);
        if let Some(done) = crate::train::finished(&dir).filter(|d| d.steps == cfg.train.steps) {
            eprintln!("{label}: finished earlier ({} steps, val loss {:.4}), skipping", done.steps, done.final_val_loss);
            continue;
        }
        let partial = dir.join("metrics.csv").exists();
        if partial && !opts.resume {
            bail!("{}: unfinished run; pass --resume to continue it (or delete the directory to start over)", dir.display());
        }
        eprintln!("{label}: training into {}", dir.display());
        crate::train::train(cfg, &crate::train::TrainOptions { out: dir, resume: partial, label: label.clone() })?;
        trained += 1;
        let per = started.elapsed().as_secs_f64() / trained as f64;
        let left = n - i - 1;
        eprintln!("{label}: done; {} of {n} runs finished, about {} left for the other {left}", i + 1, crate::progress::duration(per * left as f64));
    }
    if !e.extrapolation.is_empty() {
        for (i, (b, s)) in plan.iter().enumerate() {
            let dir = e.run_dir(b, *s);
            eprintln!("[{}/{n}] {b} s{s}: test loss at lengths {:?}", i + 1, e.extrapolation);
            crate::eval::command::extrapolate(&dir, &e.extrapolation, &mut |line| eprintln!("  {line}"))?;
        }
    }
    // The runs are safe on disk by now; say so if only the drawing fails (e.g. no fonts on a bare GPU box).
    let files = draw(e, None).with_context(|| {
        format!("all runs finished (in {}), but drawing the charts failed; draw them later with `baka report {}` where fonts are installed",
            e.dir().join("runs").display(), e.path.display())
    })?;
    eprintln!("charts and report: {}", files.display());
    Ok(())
}

/// Run directories of an experiment: `runs/` if it has any, else the shipped `results/`.
pub fn run_dirs(e: &Experiment) -> Result<Vec<PathBuf>> {
    for sub in ["runs", "results"] {
        let d = e.dir().join(sub);
        let mut v: Vec<PathBuf> = std::fs::read_dir(&d).map(|it| it.filter_map(|x| x.ok().map(|x| x.path())).filter(|p| p.join("metrics.csv").is_file()).collect()).unwrap_or_default();
        if !v.is_empty() {
            v.sort();
            return Ok(v);
        }
    }
    bail!("{}: no runs yet (nothing in runs/ or results/); run `baka experiment {}` first", e.dir().display(), e.path.display())
}

/// Draws all charts and writes `plots/<name>/report.md`; returns the report path.
pub fn draw(e: &Experiment, steps: Option<(u64, u64)>) -> Result<PathBuf> {
    let out = Path::new("plots").join(&e.name);
    let steps = match (steps, &e.zoom) {
        (Some(s), _) => Some(s),
        (None, Some(z)) => Some(crate::plot::parse_step_range(z).map_err(|err| anyhow::anyhow!("{}: zoom: {err}", e.path.display()))?),
        (None, None) => None,
    };
    let (runs, charts) = crate::plot::draw_dirs(&run_dirs(e)?, &[], &out, &e.name, steps)?;
    crate::report::write_report(&e.name, &runs, &out, &charts)
}
