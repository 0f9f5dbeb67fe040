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
    /// One setting tried at several values: every branch × value × seed is a run.
    #[serde(default)]
    pub sweep: Option<Sweep>,
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[sweep] key = "train.lr"`, `values = [3e-4, 1e-3]`: runs `<branch>-<leaf><value>-s<seed>`,
/// drawn as series `<branch> <leaf>=<value>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// A dotted config key, e.g. "train.lr".
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// One run of an experiment: a branch, the sweep's value (index) if any, a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub branch: String,
    pub value: Option<usize>,
    pub seed: u64,
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
        // the overrides must be a valid config layer on their own, and so must each sweep value
        Config::from_layers(&[(self_source(path), e.overrides.clone())])?;
        if let Some(sw) = &e.sweep {
            if sw.values.is_empty() {
                bail!("{}: sweep.values is empty (expected the values of {} to try)", path.display(), sw.key);
            }
            for i in 0..sw.values.len() {
                Config::from_layers(&[e.sweep_layer(i)])?;
            }
        }
        Ok(e)
    }

    /// Every run: branches × sweep values × seeds, in that order.
    pub fn plan(&self) -> Vec<Planned> {
        let values: Vec<Option<usize>> = match &self.sweep {
            Some(sw) => (0..sw.values.len()).map(Some).collect(),
            None => vec![None],
        };
        let mut plan = vec![];
        for b in &self.branches {
            for &value in &values {
                plan.extend(self.seeds.iter().map(|&seed| Planned { branch: b.clone(), value, seed }));
            }
        }
        plan
    }

    /// `001_pristine`, or `001_pristine-lr0.001` for a sweep value: the run's name without its seed.
    pub fn run_name(&self, p: &Planned) -> String {
        match (&self.sweep, p.value) {
            (Some(sw), Some(i)) => format!("{}-{}{}", p.branch, sw.key.rsplit('.').next().unwrap_or(&sw.key), sw.values[i]),
            _ => p.branch.clone(),
        }
    }

    fn sweep_layer(&self, i: usize) -> (Source, toml::Table) {
        let sw = self.sweep.as_ref().expect("a sweep");
        let mut t = toml::Table::new();
        crate::config::set_dotted(&mut t, &sw.key, sw.values[i].clone());
        (Source::Set(format!("{}={} (sweep)", sw.key, sw.values[i])), t)
    }

    /// Directory holding this experiment's outputs (`experiments/<name>/`).
    pub fn dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(&self.name)
    }

    pub fn run_dir(&self, p: &Planned) -> PathBuf {
        self.dir().join("runs").join(format!("{}-s{}", self.run_name(p), p.seed))
    }

    /// The resolved config of one run (branch file ← overrides ← sweep value ← seed ← `--set`).
    pub fn config(&self, p: &Planned, sets: &[String]) -> Result<Config> {
        let mut seed_layer = toml::Table::new();
        crate::config::set_dotted(&mut seed_layer, "train.seed", toml::Value::Integer(p.seed as i64));
        let mut layers = vec![(self_source(&self.path), self.overrides.clone())];
        if let Some(i) = p.value {
            layers.push(self.sweep_layer(i));
        }
        layers.push((Source::Set(format!("train.seed={}", p.seed)), seed_layer));
        Config::load(&p.branch, &layers, sets)
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
    /// Train only this `NAME:SEED` (`001_pristine:1`, with a sweep `001_pristine-lr0.001:1`) and score its extrapolation lengths (what each job runs).
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
    let plan: Vec<Planned> = e.plan().into_iter().filter(|p| opts.only.is_empty() || opts.only.contains(&p.branch)).collect();
    let n = plan.len();
    let label = |i: usize| format!("[{}/{n}] {} s{}", i + 1, e.run_name(&plan[i]), plan[i].seed);
    if let Some(one) = &opts.one {
        let (name, s) = one.rsplit_once(':').and_then(|(b, s)| Some((b.to_string(), s.parse::<u64>().ok()?))).ok_or_else(|| anyhow::anyhow!("--one {one}: expected NAME:SEED"))?;
        let i = plan.iter().position(|p| e.run_name(p) == name && p.seed == s).ok_or_else(|| anyhow::anyhow!("--one {one}: not a run of {}", e.path.display()))?;
        return train_one(e, &plan[i], e.config(&plan[i], &opts.sets)?, opts.resume, label(i));
    }
    // Resolve every config first, so a bad branch or override fails before hours of training.
    let configs = plan.iter().map(|p| e.config(p, &opts.sets)).collect::<Result<Vec<_>>>()?;
    // `--gpus N`: N ranks each run the experiment (one run at a time, every run over all of them);
    // rank 0 writes, says and draws
    let gpus = configs.first().map_or(1, |c| c.train.gpus);
    if let Some(c) = configs.iter().find(|c| c.train.gpus != gpus) {
        bail!("train.gpus differs between runs ({gpus} and {} in {}): expected one number for the experiment", c.train.gpus, c.branch);
    }
    if crate::dist::start_ranks(&configs.iter().map(|c| &c.train).collect::<Vec<_>>(), " (resume with --resume)")? {
        return Ok(());
    }
    let writer = crate::dist::is_writer();
    let say = |s: String| {
        if writer {
            eprintln!("{s}");
        }
    };
    let mut todo = vec![];
    for (i, (p, cfg)) in plan.iter().zip(&configs).enumerate() {
        let dir = e.run_dir(p);
        if let Some(done) = crate::train::finished(&dir).filter(|d| d.steps == cfg.train.steps) {
            say(format!("{}: finished earlier ({} steps, val loss {:.4}), skipping", label(i), done.steps, done.final_val_loss));
            continue;
        }
        if dir.join("metrics.csv").exists() && !opts.resume {
            bail!("{}: unfinished run; pass --resume to continue it (or delete the directory to start over)", dir.display());
        }
        todo.push(i);
    }
    let on_gpu = configs.iter().any(|c| c.train.device.is_cuda());
    let jobs = match opts.jobs {
        _ if gpus > 1 => 1,
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
            let label = label(i);
            train_one(e, &plan[i], configs[i].clone(), opts.resume, label.clone())?;
            let left = todo.len() - k - 1;
            let per = started.elapsed().as_secs_f64() / (k + 1) as f64;
            say(format!("{label}: done; {} of {} runs to train finished, about {} left", k + 1, todo.len(), crate::progress::duration(per * left as f64)));
        }
    }
    if !writer {
        return Ok(());
    }
    // runs finished earlier may still lack an extrapolation length
    for p in &plan {
        crate::eval::command::extrapolate(&e.run_dir(p), &e.extrapolation, &mut |line| eprintln!("  {line}"))?;
    }
    // The runs are safe on disk by now; say so if only the drawing fails (e.g. no fonts on a bare GPU box).
    let files = draw(e, None).with_context(|| {
        format!("all runs finished (in {}), but drawing the charts failed; draw them later with `baka report {}` where fonts are installed", e.dir().join("runs").display(), e.path.display())
    })?;
    eprintln!("charts and report: {}", files.display());
    Ok(())
}

/// Trains (or resumes) one run and scores its extrapolation lengths.
fn train_one(e: &Experiment, p: &Planned, cfg: Config, resume: bool, label: String) -> Result<()> {
    let dir = e.run_dir(p);
    if crate::train::finished(&dir).filter(|d| d.steps == cfg.train.steps).is_none() {
        let partial = dir.join("metrics.csv").exists();
        if partial && !resume {
            bail!("{}: unfinished run; pass --resume to continue it (or delete the directory to start over)", dir.display());
        }
        if crate::dist::is_writer() {
            eprintln!("{label}: training into {}", dir.display());
        }
        crate::train::train(cfg, &crate::train::TrainOptions { out: dir.clone(), resume: partial, label: label.clone() })?;
    }
    if !e.extrapolation.is_empty() && crate::dist::is_writer() {
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
    let by: Vec<String> = e.sweep.iter().map(|sw| sw.key.clone()).collect();
    let (runs, charts) = crate::plot::draw_dirs(&run_dirs(e)?, &by, &out, &e.name, steps)?;
    crate::report::write_report(&e.name, &runs, &out, &charts)
}
