//! Experiments: `experiments/<name>.toml` names branches × seeds and shared overrides; each run
//! goes to `experiments/<name>/runs/<branch>-s<seed>/`, then the charts and report are drawn.

mod jobs;

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
        let mut e = Experiment::deserialize(toml::Value::Table(table)).map_err(|err| anyhow::anyhow!("{}: {}", path.display(), err.message().trim().replace('\n', " ")))?;
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
    /// Runs trained at once, each in its own single-threaded process (0 = one per core on the
    /// CPU, one on CUDA). Results are identical to one at a time.
    pub jobs: usize,
    /// Train only this `BRANCH:SEED` and score its extrapolation lengths (what each job runs).
    pub one: Option<String>,
}

/// Trains every unfinished run of the experiment (`opts.jobs` at a time), scores the
/// extrapolation lengths, then draws its charts and report.
pub fn run(e: &Experiment, opts: &RunOptions) -> Result<()> {
    for b in &opts.only {
        if !e.branches.contains(b) {
            bail!("--only {b}: not a branch of {} (its branches: {})", e.path.display(), e.branches.join(", "));
        }
    }
    let plan: Vec<(String, u64)> = e.branches.iter().filter(|b| opts.only.is_empty() || opts.only.contains(b)).flat_map(|b| e.seeds.iter().map(move |&s| (b.clone(), s))).collect();
    if let Some(one) = &opts.one {
        let (b, s) = one.rsplit_once(':').and_then(|(b, s)| Some((b.to_string(), s.parse::<u64>().ok()?))).ok_or_else(|| anyhow::anyhow!("--one {one}: expected BRANCH:SEED"))?;
        let i = plan.iter().position(|p| *p == (b.clone(), s)).ok_or_else(|| anyhow::anyhow!("--one {one}: not a run of {}", e.path.display()))?;
        return train_one(e, &plan[i].0, s, e.config(&b, s, &opts.sets)?, opts.resume, format!("[{}/{}] {b} s{s}", i + 1, plan.len()));
    }
    // Resolve every config first, so a bad branch or override fails before hours of training.
    let configs = plan.iter().map(|(b, s)| e.config(b, *s, &opts.sets)).collect::<Result<Vec<_>>>()?;
    let n = plan.len();
    let mut todo = vec![];
    for (i, ((b, s), cfg)) in plan.iter().zip(&configs).enumerate() {
        let dir = e.run_dir(b, *s);
        if let Some(done) = crate::train::finished(&dir).filter(|d| d.steps == cfg.train.steps) {
            eprintln!("[{}/{n}] {b} s{s}: finished earlier ({} steps, val loss {:.4}), skipping", i + 1, done.steps, done.final_val_loss);
            continue;
        }
        if dir.join("metrics.csv").exists() && !opts.resume {
            bail!("{}: unfinished run; pass --resume to continue it (or delete the directory to start over)", dir.display());
        }
        todo.push(i);
    }
    let on_gpu = configs.iter().any(|c| c.train.device.is_cuda());
    let jobs = match opts.jobs {
        0 if on_gpu => 1,
        0 => std::thread::available_parallelism().map_or(1, |c| c.get()),
        j => j,
    };
    if jobs > 1 && todo.len() > 1 {
        // each child would prepare the same data at once: do it here, once per data config
        let mut ready: Vec<&crate::data::DataConfig> = vec![];
        for &i in &todo {
            if !ready.contains(&&configs[i].data) {
                crate::data::prepare(&configs[i].data, &mut |s| eprintln!("{s}"))?;
                ready.push(&configs[i].data);
            }
        }
        jobs::run_parallel(e, &plan, &todo, opts, jobs.min(todo.len()))?;
    } else {
        let started = std::time::Instant::now();
        for (k, &i) in todo.iter().enumerate() {
            let (b, s) = &plan[i];
            let label = format!("[{}/{n}] {b} s{s}", i + 1);
            train_one(e, b, *s, configs[i].clone(), opts.resume, label.clone())?;
            let left = todo.len() - k - 1;
            let per = started.elapsed().as_secs_f64() / (k + 1) as f64;
            eprintln!("{label}: done; {} of {} runs to train finished, about {} left", k + 1, todo.len(), crate::progress::duration(per * left as f64));
        }
    }
    // runs finished earlier may still lack an extrapolation length
    for (b, s) in &plan {
        crate::eval::command::extrapolate(&e.run_dir(b, *s), &e.extrapolation, &mut |line| eprintln!("  {line}"))?;
    }
    // The runs are safe on disk by now; say so if only the drawing fails (e.g. no fonts on a bare GPU box).
    let files = draw(e, None).with_context(|| {
        format!("all runs finished (in {}), but drawing the charts failed; draw them later with `baka report {}` where fonts are installed", e.dir().join("runs").display(), e.path.display())
    })?;
    eprintln!("charts and report: {}", files.display());
    Ok(())
}

/// Trains (or resumes) one run and scores its extrapolation lengths.
fn train_one(e: &Experiment, branch: &str, seed: u64, cfg: Config, resume: bool, label: String) -> Result<()> {
    let dir = e.run_dir(branch, seed);
    if crate::train::finished(&dir).filter(|d| d.steps == cfg.train.steps).is_none() {
        let partial = dir.join("metrics.csv").exists();
        if partial && !resume {
            bail!("{}: unfinished run; pass --resume to continue it (or delete the directory to start over)", dir.display());
        }
        eprintln!("{label}: training into {}", dir.display());
        crate::train::train(cfg, &crate::train::TrainOptions { out: dir.clone(), resume: partial, label: label.clone() })?;
    }
    if !e.extrapolation.is_empty() {
        eprintln!("{label}: test loss at lengths {:?}", e.extrapolation);
        crate::eval::command::extrapolate(&dir, &e.extrapolation, &mut |line| eprintln!("  {line}"))?;
    }
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
