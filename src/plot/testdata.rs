//! Synthetic run directories for tests: decaying, noisy loss curves in the trainer's
//! file format, deterministic per (branch, seed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A temp directory removed on drop (no extra crate needed).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("bakallm-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One synthetic run. `positions: None` writes no config.toml (dir-name fallback).
#[derive(Clone)]
pub struct Spec {
    pub branch: String,
    pub seed: u64,
    pub positions: Option<String>,
    pub memory_tokens: usize,
    pub steps: u64,
    pub eval_every: u64,
    pub final_loss: f64,
    /// Std of the per-step Gaussian noise of this model on the training loss.
    pub noise: f64,
    /// Std of the per-step batch difficulty, shared by every branch of the same seed (the
    /// trainer's batches are a function of seed and step only).
    pub batch_noise: f64,
    /// Std of a per-seed level shared by every branch of the seed (same initial weights).
    pub seed_spread: f64,
    /// Std of the noise on each validation loss.
    pub val_noise: f64,
    /// Amplitude of a slow sinusoidal wobble (period 450 steps).
    pub wobble: f64,
    /// Change of validation loss per window index (negative: memory helps).
    pub window_slope: f64,
}

impl Spec {
    pub fn new(branch: &str, seed: u64, positions: Option<&str>) -> Self {
        Self {
            branch: branch.into(),
            seed,
            positions: positions.map(Into::into),
            memory_tokens: 0,
            steps: 2000,
            eval_every: 200,
            final_loss: 3.5,
            noise: 0.03,
            batch_noise: 0.15,
            seed_spread: 0.01,
            val_noise: 0.004,
            wobble: 0.0,
            window_slope: 0.0,
        }
    }
}

/// SplitMix64 + Box–Muller: enough randomness for test curves.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Writes `<root>/<branch>-s<seed>/{config.toml,metrics.csv,eval.csv}`; returns the dir.
pub fn write_run(root: &Path, s: &Spec) -> PathBuf {
    let dir = root.join(format!("{}-s{}", s.branch, s.seed));
    std::fs::create_dir_all(&dir).unwrap();
    let h = s.branch.bytes().fold(s.seed.wrapping_mul(1_000_003), |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut rng = Rng(h);
    let mut shared = Rng(s.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xBA7C);
    let offset = s.seed_spread * shared.normal() + 0.002 * rng.normal(); // seed-to-seed spread
    let phase = rng.next() * 6.0;
    let clean = |t: f64| s.final_loss + offset + (1.0 + t / 200.0).powf(-0.5) + 6.0 * (-t / 40.0).exp() + s.wobble * (std::f64::consts::TAU * t / 450.0 + phase).sin();
    let tok = 16_384u64;
    let mut m = String::from("step,tokens,elapsed_s,split,loss,lr,grad_norm,tok_per_s\n");
    let mut e = String::from("step,window,loss\n");
    for step in 0..=s.steps {
        let t = step as f64;
        let elapsed = t * 0.21;
        if step > 0 {
            let lr = 6e-4 * (t / 100.0).min(1.0) * (0.5 + 0.5 * (std::f64::consts::PI * t / s.steps as f64).cos());
            let loss = clean(t) + s.batch_noise * shared.normal() + s.noise * rng.normal();
            let gn = 0.6 + 0.1 * rng.normal().abs();
            writeln!(m, "{step},{},{elapsed},train,{loss},{lr},{gn},{}", step * tok, tok as f64 / 0.21).unwrap();
        }
        if step % s.eval_every == 0 || step == s.steps {
            let val = clean(t) + 0.03 + s.val_noise * rng.normal();
            writeln!(m, "{step},{},{},val,{val},,,", step * tok, elapsed + 0.1).unwrap();
            for w in 0..4 {
                let wl = val + s.window_slope * (w as f64 - 1.5) + 0.003 * rng.normal();
                writeln!(e, "{step},{w},{wl}").unwrap();
            }
        }
    }
    std::fs::write(dir.join("metrics.csv"), m).unwrap();
    std::fs::write(dir.join("eval.csv"), e).unwrap();
    if let Some(p) = &s.positions {
        let cfg = format!("branch = \"{}\"\n\n[train]\nseed = {}\nsteps = {}\n\n[model]\npositions = \"{p}\"\nd_model = 256\n\n[memory]\ntokens = {}\n", s.branch, s.seed, s.steps, s.memory_tokens);
        std::fs::write(dir.join("config.toml"), cfg).unwrap();
    }
    dir
}

/// The six branches × seeds 1..=3. NoPE is 0.1 worse than RoPE with a slow wobble;
/// `nope_noise`/`rope_noise` set their own per-step noise (others use 0.03). Seed 3 of
/// ALiBi is shorter and has no config.toml.
pub fn standard_set(root: &Path, nope_noise: f64, rope_noise: f64) -> Vec<PathBuf> {
    let branches: [(&str, &str, f64, f64, usize); 6] = [
        ("001_rope", "rope", 3.40, rope_noise, 0),
        ("002_nope", "nope", 3.50, nope_noise, 0),
        ("003_xpos", "xpos", 3.45, 0.03, 0),
        ("004_linspace", "linspace", 3.55, 0.03, 0),
        ("005_alibi", "alibi", 3.42, 0.03, 0),
        ("006_rmt", "rope", 3.36, 0.03, 16),
    ];
    let mut dirs = vec![];
    for (branch, pos, fin, noise, mem) in branches {
        for seed in 1..=3 {
            let mut s = Spec::new(branch, seed, Some(pos));
            s.final_loss = fin;
            s.noise = noise;
            s.memory_tokens = mem;
            if pos == "nope" {
                s.wobble = 0.03;
            }
            if mem > 0 {
                s.window_slope = -0.04;
            }
            if branch == "005_alibi" && seed == 3 {
                s.steps = 1500;
                s.positions = None;
            }
            dirs.push(write_run(root, &s));
        }
    }
    dirs
}
