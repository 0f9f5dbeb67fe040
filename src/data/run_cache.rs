//! Finding a run's data again: the cache a relative `data.cache_dir` means for a run directory,
//! and the tokenizer the run was trained with (`<run>/tokenizer.json`), which a later command
//! must find unchanged.

use super::{prepare, DataConfig, Prepared};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The folder a relative `cache_dir` resolves to for a run: under `$BAKA_HOME` when set, else
/// under the nearest folder above the run that has it (the project the run was trained in), else
/// under the current directory. Absolute paths are kept.
pub fn cache_for(cfg: &DataConfig, run: &Path) -> PathBuf {
    let dir = Path::new(&cfg.cache_dir);
    if dir.is_absolute() {
        return dir.to_path_buf();
    }
    if let Some(home) = std::env::var_os("BAKA_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(dir);
    }
    let run = run.canonicalize().unwrap_or_else(|_| run.to_path_buf());
    run.ancestors().skip(1).map(|a| a.join(dir)).find(|c| c.is_dir()).unwrap_or_else(|| dir.to_path_buf())
}

/// The data of a run directory: [`prepare`] on the cache [`cache_for`] finds, refusing a
/// tokenizer that differs from the one the run was trained with.
pub fn for_run(cfg: &DataConfig, run: &Path, log: &mut dyn FnMut(&str)) -> Result<Prepared> {
    let cfg = DataConfig { cache_dir: cache_for(cfg, run).display().to_string(), ..cfg.clone() };
    let p = prepare(&cfg, log)?;
    check_tokenizer(run, &p.tokenizer_path)?;
    Ok(p)
}

/// Fails unless `<run>/tokenizer.json` (when the run has one) is byte-identical to `tokenizer`.
pub fn check_tokenizer(run: &Path, tokenizer: &Path) -> Result<()> {
    let own = run.join("tokenizer.json");
    if own.is_file() && crate::fsutil::sha256_file(&own)? != crate::fsutil::sha256_file(tokenizer)? {
        bail!(
            "{}: the data cache's tokenizer differs from the one this run was trained with ({}); restore it, or point data.cache_dir (or BAKA_HOME) at the run's data",
            tokenizer.display(),
            own.display()
        );
    }
    Ok(())
}

/// Keeps a copy of the run's tokenizer in the run directory (once; a resumed run checks it).
pub fn keep_tokenizer(run: &Path, tokenizer: &Path) -> Result<()> {
    let own = run.join("tokenizer.json");
    if own.is_file() {
        return check_tokenizer(run, tokenizer);
    }
    let bytes = std::fs::read(tokenizer).map_err(|e| anyhow::anyhow!("{}: cannot read ({e})", tokenizer.display()))?;
    crate::fsutil::write_atomic(&own, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_cache_is_found_above_the_run() {
        let root = std::env::temp_dir().join(format!("bakallm-cachefind-{}", std::process::id()));
        let run = root.join("experiments/x/runs/001-s1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let cfg = DataConfig::default();
        if std::env::var_os("BAKA_HOME").is_none() {
            assert_eq!(cache_for(&cfg, &run), root.canonicalize().unwrap().join("data"));
        }
        let abs = DataConfig { cache_dir: "/abs/cache".into(), ..cfg };
        assert_eq!(cache_for(&abs, &run), PathBuf::from("/abs/cache"));
        // a tokenizer that changed after training is refused in one line
        let tok = root.join("tok.json");
        std::fs::write(&tok, "{\"a\": 1}").unwrap();
        keep_tokenizer(&run, &tok).unwrap();
        check_tokenizer(&run, &tok).unwrap();
        std::fs::write(&tok, "{\"a\": 2}").unwrap();
        let e = check_tokenizer(&run, &tok).unwrap_err().to_string();
        assert!(e.contains("differs from the one this run was trained with") && !e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
