//! Experiments: `experiments/<name>.toml` names branches × seeds and shared overrides; each run
//! goes to `experiments/<name>/runs/<branch>-s<seed>/`, then the charts and report are drawn.

use crate::config::{find_branch, read_toml, Config, Source};
use anyhow::{bail, Result};
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
