//! Reading a run directory (config.toml, metrics.csv, eval.csv) into a [`Run`].
//! Every error is one line naming the file (and line) so a broken run is easy to find.

use super::{Run, TrainRow, ValRow, WindowRow};
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use std::str::FromStr;

const METRICS_COLS: [&str; 8] = ["step", "tokens", "elapsed_s", "split", "loss", "lr", "grad_norm", "tok_per_s"];
const EVAL_COLS: [&str; 3] = ["step", "window", "loss"];

/// Loads one run directory. eval.csv is optional (a run killed before its first eval
/// has none); metrics.csv must exist and hold at least one train row.
pub fn load_run(dir: &Path) -> Result<Run> {
    load_run_by(dir, &[])
}

/// [`load_run`], with the run's series named `<branch> <leaf>=<value>` for each dotted config
/// key in `by` (e.g. `train.dtype` → `001_pristine dtype=f32`), so runs of one branch that differ
/// in a setting are drawn as separate series.
pub fn load_run_by(dir: &Path, by: &[String]) -> Result<Run> {
    let metrics = dir.join("metrics.csv");
    if !metrics.is_file() {
        bail!("{}: no metrics.csv (not a run directory?)", dir.display());
    }
    let (branch, seed, positions, memory_tokens, window) = read_config(dir, by)?;
    let (train, val, test) = read_metrics(&metrics)?;
    if train.is_empty() {
        bail!("{}: no train rows (run not started?)", metrics.display());
    }
    let eval = dir.join("eval.csv");
    let windows = if eval.is_file() { read_eval(&eval)? } else { vec![] };
    let (test_bpb, scale) = read_summary(dir)?;
    Ok(Run { dir: dir.to_path_buf(), branch, seed, positions, memory_tokens, window, train, val, windows, test, test_bpb, scale, extrapolation: read_extrapolation(dir)? })
}

/// `test_bits_per_byte` and the run's [`super::Scale`] from run.json, where the file has them
/// (older runs and unfinished ones do not).
fn read_summary(dir: &Path) -> Result<(Option<f64>, Option<super::Scale>)> {
    let path = dir.join("run.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok((None, None)) };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
    let scale = match (n("params"), n("non_embedding_params"), n("tokens"), n("train_split_tokens")) {
        (Some(params), Some(non_embedding), Some(tokens), Some(split)) => Some(super::Scale { params, non_embedding, tokens, split }),
        _ => None,
    };
    Ok((v.get("test_bits_per_byte").and_then(|x| x.as_f64()), scale))
}

/// The points of `extrapolation.json` (written by `baka experiment` for `extrapolation = [...]`).
fn read_extrapolation(dir: &Path) -> Result<Vec<super::ExtraPoint>> {
    #[derive(serde::Deserialize)]
    struct File {
        points: Vec<super::ExtraPoint>,
    }
    let path = dir.join("extrapolation.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(vec![]) };
    let mut f: File = serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    f.points.sort_by_key(|p| p.length);
    Ok(f.points)
}

type Config = (String, u64, Option<String>, usize, Option<usize>);

/// The value of a dotted key (`train.dtype`) in a parsed config.toml, if it is a setting.
fn setting<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |t, k| t.get(k)).filter(|x| !x.is_table())
}

/// Fails unless at least one of `dirs` has the setting `key` in its config.toml (a typo in
/// `--by`); runs older than a setting are labelled "unset" for it.
pub fn check_setting(dirs: &[std::path::PathBuf], key: &str) -> Result<()> {
    let has = |d: &std::path::PathBuf| {
        let text = std::fs::read_to_string(d.join("config.toml")).unwrap_or_default();
        text.parse::<toml::Value>().ok().is_some_and(|v| setting(&v, key).is_some())
    };
    if dirs.iter().any(has) {
        return Ok(());
    }
    let first = dirs.first().map(|d| d.join("config.toml").display().to_string()).unwrap_or_default();
    bail!("{first}: no setting '{key}' (--by {key}; e.g. train.dtype or train.lr)")
}

/// Branch/seed/positions/memory from config.toml; branch and seed fall back to the
/// directory name `<branch>-s<seed>` when the file (or the key) is missing.
fn read_config(dir: &Path, by: &[String]) -> Result<Config> {
    let name = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    let (dir_branch, dir_seed) = match name.rsplit_once("-s") {
        Some((b, s)) if !b.is_empty() && s.parse::<u64>().is_ok() => (b.to_string(), s.parse().unwrap()),
        _ => (name.clone(), 0),
    };
    let path = dir.join("config.toml");
    if !path.is_file() {
        if let Some(key) = by.first() {
            bail!("{}: no config.toml, so the run cannot be grouped --by {key}", dir.display());
        }
        return Ok((dir_branch, dir_seed, None, 0, None));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let v: toml::Value = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
        anyhow!("{}{at}: {}", path.display(), e.message().replace('\n', " "))
    })?;
    let get = |table: Option<&str>, key: &str| match table {
        Some(t) => v.get(t).and_then(|t| t.get(key)),
        None => v.get(key),
    };
    let mut branch = get(None, "branch").and_then(|b| b.as_str()).map(str::to_string).unwrap_or(dir_branch);
    for key in by {
        // a run from before the setting existed shows "unset" (draw_dirs checks that some run has it)
        let shown = setting(&v, key).map_or_else(|| "unset".to_string(), |val| val.as_str().map_or_else(|| val.to_string(), str::to_string));
        branch = format!("{branch} {}={shown}", key.rsplit('.').next().unwrap_or(key));
    }
    let seed = match get(Some("train"), "seed") {
        Some(s) => s.as_integer().and_then(|s| u64::try_from(s).ok()).ok_or_else(|| anyhow!("{}: [train] seed must be a non-negative integer, got {s}", path.display()))?,
        None => dir_seed,
    };
    let positions = get(Some("model"), "positions").and_then(|p| p.as_str()).map(str::to_lowercase);
    let memory = get(Some("memory"), "tokens").and_then(|t| t.as_integer()).unwrap_or(0).max(0);
    let window = get(Some("model"), "window").and_then(|w| w.as_integer()).and_then(|w| usize::try_from(w).ok());
    Ok((branch, seed, positions, memory as usize, window))
}

/// A CSV file whose columns are found by header name.
struct Table {
    path: String,
    cols: Vec<usize>,
    records: Vec<(u64, csv::StringRecord)>,
}

fn read_table(path: &Path, expected: &[&str]) -> Result<Table> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{p}: {e}"))?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        bail!("{p}: empty file (expected header {})", expected.join(","));
    }
    let mut rd = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(&bytes[..]);
    let header = rd.headers().map_err(|e| anyhow!("{p} line 1: {e}"))?.clone();
    let cols = expected.iter().map(|c| header.iter().position(|h| h == *c).ok_or_else(|| anyhow!("{p}: missing column '{c}' (expected {})", expected.join(",")))).collect::<Result<Vec<_>>>()?;
    let mut records = vec![];
    for rec in rd.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|q| format!(" line {}", q.line())).unwrap_or_default();
            anyhow!("{p}{line}: {e}")
        })?;
        let line = rec.position().map_or(0, |q| q.line());
        if rec.len() == 1 && rec[0].is_empty() {
            continue; // blank line
        }
        if rec.len() < header.len() {
            bail!("{p} line {line}: {} of {} fields (truncated?)", rec.len(), header.len());
        }
        if rec.len() > header.len() {
            bail!("{p} line {line}: {} fields, header has {}", rec.len(), header.len());
        }
        records.push((line, rec));
    }
    Ok(Table { path: p, cols, records })
}

impl Table {
    /// Field `i` (index into the expected columns) of a record, parsed; empty → `empty`.
    fn num<T: FromStr>(&self, line: u64, rec: &csv::StringRecord, i: usize, name: &str, empty: Option<T>) -> Result<T> {
        let s = &rec[self.cols[i]];
        if s.is_empty() {
            return empty.ok_or_else(|| anyhow!("{} line {line}: empty '{name}'", self.path));
        }
        s.parse::<T>().map_err(|_| anyhow!("{} line {line}: '{name}' = '{s}' is not a number", self.path))
    }

    /// Integer fields written as e.g. `1.6e7` are accepted when they are whole numbers.
    fn int(&self, line: u64, rec: &csv::StringRecord, i: usize, name: &str) -> Result<u64> {
        self.num::<u64>(line, rec, i, name, None).or_else(|e| match self.num::<f64>(line, rec, i, name, None) {
            Ok(f) if f >= 0.0 && f.fract() == 0.0 && f.is_finite() => Ok(f as u64),
            _ => Err(e),
        })
    }
}

/// Train, val and test rows, each sorted by step; if a step repeats (a resumed run appending
/// to its log) the last row written wins.
fn read_metrics(path: &Path) -> Result<(Vec<TrainRow>, Vec<ValRow>, Vec<ValRow>)> {
    let t = read_table(path, &METRICS_COLS)?;
    let (mut train, mut val, mut test) = (vec![], vec![], vec![]);
    for (line, r) in &t.records {
        let l = *line;
        let step = t.int(l, r, 0, "step")?;
        let tokens = t.int(l, r, 1, "tokens")?;
        let elapsed_s = t.num(l, r, 2, "elapsed_s", Some(f64::NAN))?;
        let loss = t.num(l, r, 4, "loss", None)?;
        match &r[t.cols[3]] {
            "train" => train.push(TrainRow {
                step,
                tokens,
                elapsed_s,
                loss,
                lr: t.num(l, r, 5, "lr", Some(f64::NAN))?,
                grad_norm: t.num(l, r, 6, "grad_norm", Some(f64::NAN))?,
                tok_per_s: t.num(l, r, 7, "tok_per_s", Some(f64::NAN))?,
            }),
            split @ ("val" | "test") => {
                let row = ValRow { step, tokens, elapsed_s, loss };
                if split == "val" {
                    val.push(row)
                } else {
                    test.push(row)
                }
            }
            other => bail!("{} line {l}: split '{other}' is not 'train', 'val' or 'test'", t.path),
        }
    }
    dedup_by_step(&mut train, |r| r.step);
    dedup_by_step(&mut val, |r| r.step);
    dedup_by_step(&mut test, |r| r.step);
    Ok((train, val, test))
}

fn read_eval(path: &Path) -> Result<Vec<WindowRow>> {
    let t = read_table(path, &EVAL_COLS)?;
    let mut rows = t
        .records
        .iter()
        .map(|(l, r)| Ok(WindowRow { step: t.int(*l, r, 0, "step")?, window: t.int(*l, r, 1, "window")? as usize, loss: t.num(*l, r, 2, "loss", None)? }))
        .collect::<Result<Vec<_>>>()?;
    rows.sort_by_key(|r| (r.step, r.window));
    Ok(rows)
}

/// Stable sort by step, keeping the last of equal steps.
fn dedup_by_step<T>(rows: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    rows.reverse();
    rows.sort_by_key(|r| key(r)); // stable: among equal steps the last written is first now
    rows.dedup_by(|b, a| key(a) == key(b)); // keeps `a`, the first of a run of equals
}
