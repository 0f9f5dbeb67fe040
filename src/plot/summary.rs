//! Runs grouped into branches, and the per-branch numbers that both the charts and the
//! report show (so a chart and its table can never disagree).

use super::Run;
use crate::stats::{self, PairDiff, VolatilityOpts};
use std::collections::BTreeMap;

/// All seeds of one branch. `color` is its palette slot (see [`group`]).
#[derive(Debug, Clone)]
pub struct Branch<'a> {
    pub name: String,
    pub color: usize,
    pub runs: Vec<&'a Run>,
}

impl Branch<'_> {
    /// Legend label: the branch name and how many seeds back it.
    pub fn label(&self) -> String {
        format!("{} (n={})", self.name, self.runs.len())
    }
    pub fn positions(&self) -> Option<&str> {
        self.runs[0].positions.as_deref()
    }
    pub fn memory_tokens(&self) -> usize {
        self.runs[0].memory_tokens
    }
}

/// Palette slots reserved per positional scheme, so e.g. NoPE has the same colour in every
/// experiment's charts, whatever other branches are present.
const SCHEME_SLOTS: [&str; 5] = ["rope", "nope", "xpos", "linspace", "alibi"];

/// Groups runs by branch name (sorted), seeds sorted within a branch. Colours: a
/// memory-free branch of a known scheme takes that scheme's slot (first such branch by
/// name); every other branch takes the lowest free slot after the reserved ones (the
/// palette repeats after 10 colours).
pub fn group(runs: &[Run]) -> Vec<Branch<'_>> {
    let mut map: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        map.entry(&r.branch).or_default().push(r);
    }
    let mut out: Vec<Branch> = map
        .into_iter()
        .map(|(name, mut runs)| {
            runs.sort_by_key(|r| r.seed);
            Branch {
                name: name.to_string(),
                color: usize::MAX,
                runs,
            }
        })
        .collect();
    let mut used = vec![];
    for b in out.iter_mut().filter(|b| b.memory_tokens() == 0) {
        let slot = b
            .positions()
            .and_then(|p| SCHEME_SLOTS.iter().position(|s| *s == p));
        if let Some(slot) = slot.filter(|s| !used.contains(s)) {
            b.color = slot;
            used.push(slot);
        }
    }
    for b in out.iter_mut().filter(|b| b.color == usize::MAX) {
        let slot = (SCHEME_SLOTS.len()..)
            .find(|s| !used.contains(s))
            .unwrap_or(0);
        b.color = slot;
        used.push(slot);
    }
    out
}

/// (step, loss) of a run's training rows.
pub fn train_pairs(run: &Run) -> Vec<(u64, f64)> {
    run.train.iter().map(|r| (r.step, r.loss)).collect()
}

/// (step, tokens, EMA of training loss) for a run.
pub fn train_ema(run: &Run, alpha: f64) -> Vec<(u64, f64, f64)> {
    let loss: Vec<f64> = run.train.iter().map(|r| r.loss).collect();
    let e = stats::smooth(&loss, alpha);
    run.train
        .iter()
        .zip(e)
        .map(|(r, e)| (r.step, r.tokens as f64, e))
        .collect()
}

/// What the shaded band around a mean curve shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BandKind {
    MinMax,
    Ci95,
}

/// A curve averaged over seeds at each step: `x` (mean over seeds, e.g. tokens), the mean
/// of y, the band and how many seeds contributed. Where one seed is left the band is
/// the mean itself (a 1-seed CI is undefined).
#[derive(Debug, Clone, Default)]
pub struct MeanCurve {
    pub step: Vec<u64>,
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    pub n: Vec<usize>,
}

/// Averages (step, x, y) curves of several seeds on their steps (runs of different lengths
/// simply contribute fewer seeds at the end). Non-finite y values are left out.
pub fn across_seeds(curves: &[Vec<(u64, f64, f64)>], kind: BandKind) -> MeanCurve {
    let mut at: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for c in curves {
        for &(s, x, y) in c.iter().filter(|p| p.2.is_finite()) {
            let e = at.entry(s).or_default();
            e.0.push(x);
            e.1.push(y);
        }
    }
    let mut out = MeanCurve::default();
    for (s, (xs, ys)) in at {
        let m = stats::mean(&ys);
        let (lo, hi) = match kind {
            _ if ys.len() < 2 => (m, m),
            BandKind::MinMax => ys
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
                    (a.min(y), b.max(y))
                }),
            BandKind::Ci95 => {
                let (_, h) = stats::mean_ci95(&ys);
                (m - h, m + h)
            }
        };
        out.step.push(s);
        out.x.push(stats::mean(&xs));
        out.mean.push(m);
        out.lo.push(lo);
        out.hi.push(hi);
        out.n.push(ys.len());
    }
    out
}

/// Per-seed numbers of one branch; aggregate with [`stats::mean_ci95`].
#[derive(Debug, Clone)]
pub struct BranchStats {
    pub name: String,
    pub positions: Option<String>,
    pub memory_tokens: usize,
    pub seeds: Vec<u64>,
    /// Last finite validation loss of each seed that has one.
    pub final_val: Vec<f64>,
    pub roughness: Vec<f64>,
    pub detrended: Vec<f64>,
    /// Training tokens and wall-clock seconds at the end of each seed.
    pub tokens: Vec<f64>,
    pub wall_s: Vec<f64>,
    /// Loss of the last window minus window 0 at each seed's last eval step (eval.csv).
    pub window_gain: Vec<f64>,
    /// Non-finite training losses (diverged steps) left out of every number.
    pub nonfinite: usize,
}

pub fn branch_stats(b: &Branch, opts: &VolatilityOpts) -> BranchStats {
    let mut s = BranchStats {
        name: b.name.clone(),
        positions: b.positions().map(str::to_string),
        memory_tokens: b.memory_tokens(),
        seeds: b.runs.iter().map(|r| r.seed).collect(),
        final_val: vec![],
        roughness: vec![],
        detrended: vec![],
        tokens: vec![],
        wall_s: vec![],
        window_gain: vec![],
        nonfinite: 0,
    };
    for r in &b.runs {
        let loss: Vec<f64> = r.train.iter().map(|t| t.loss).collect();
        s.nonfinite += loss.iter().filter(|l| !l.is_finite()).count();
        s.roughness.push(stats::roughness(&loss, opts.tail_frac));
        s.detrended
            .push(stats::detrended_std(&loss, opts.ema_alpha, opts.tail_frac));
        if let Some(v) = r.val.iter().rev().find(|v| v.loss.is_finite()) {
            s.final_val.push(v.loss);
        }
        s.tokens
            .push(r.train.last().map_or(f64::NAN, |t| t.tokens as f64));
        let times = r
            .train
            .iter()
            .map(|t| t.elapsed_s)
            .chain(r.val.iter().map(|v| v.elapsed_s));
        s.wall_s
            .push(times.filter(|t| t.is_finite()).fold(f64::NAN, f64::max));
        if let Some(last) = last_window_losses(r) {
            if last.len() > 1 {
                s.window_gain.push(last[last.len() - 1] - last[0]);
            }
        }
    }
    s
}

/// Validation loss per window index at the run's last eval step (index = window).
pub fn last_window_losses(r: &Run) -> Option<Vec<f64>> {
    let step = r.windows.last()?.step;
    let rows: Vec<_> = r.windows.iter().filter(|w| w.step == step).collect();
    let n = rows.iter().map(|w| w.window).max()? + 1;
    let mut out = vec![f64::NAN; n];
    for w in rows {
        out[w.window] = w.loss;
    }
    Some(out)
}

/// NoPE and RoPE branches (no memory) paired seed by seed.
#[derive(Debug, Clone)]
pub struct NopeRope {
    pub nope: String,
    pub rope: String,
    pub nope_color: usize,
    /// (seed, difference) for each seed present in both branches.
    pub pairs: Vec<(u64, PairDiff)>,
    /// Says which branches were left out when several qualify.
    pub note: Option<String>,
}

/// The NoPE−RoPE pairing, if branches with `positions` "nope" and "rope" and no memory
/// exist. With several candidates the one with most seeds (then first by name) is used.
pub fn nope_rope(branches: &[Branch], opts: &VolatilityOpts) -> Option<NopeRope> {
    let pick = |p: &str| {
        let mut c: Vec<&Branch> = branches
            .iter()
            .filter(|b| b.positions() == Some(p) && b.memory_tokens() == 0)
            .collect();
        c.sort_by_key(|b| std::cmp::Reverse(b.runs.len())); // stable: name order among ties
        let others: Vec<String> = c.iter().skip(1).map(|b| b.name.clone()).collect();
        c.first().map(|b| (*b, others))
    };
    let ((nope, on), (rope, or)) = (pick("nope")?, pick("rope")?);
    let pairs: Vec<(u64, PairDiff)> = nope
        .runs
        .iter()
        .filter_map(|n| {
            let r = rope.runs.iter().find(|r| r.seed == n.seed)?;
            Some((
                n.seed,
                stats::pair_diff(&train_pairs(n), &train_pairs(r), opts),
            ))
        })
        .filter(|(_, p)| !p.d.is_empty())
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let left: Vec<String> = on.into_iter().chain(or).collect();
    let note =
        (!left.is_empty()).then(|| format!("also nope/rope but not compared: {}", left.join(", ")));
    Some(NopeRope {
        nope: nope.name.clone(),
        rope: rope.name.clone(),
        nope_color: nope.color,
        pairs,
        note,
    })
}

/// Where one branch ranks among all memory-free branches by seed-mean smoothed training
/// loss (rank 1 = lowest loss), over the steps all of them share after the first
/// `opts.pair_skip_frac`. `share[k]` is the fraction of those steps at rank k+1.
#[derive(Debug, Clone)]
pub struct RankTrack {
    pub branch: String,
    pub field: Vec<String>,
    pub share: Vec<f64>,
    /// How often the rank changed from one step to the next.
    pub changes: usize,
    pub steps: usize,
    /// Branch names from lowest to highest smoothed loss at the last compared step.
    pub final_order: Vec<String>,
}

pub fn rank_track(branches: &[Branch], target: &str, opts: &VolatilityOpts) -> Option<RankTrack> {
    let field: Vec<&Branch> = branches.iter().filter(|b| b.memory_tokens() == 0).collect();
    let ti = field.iter().position(|b| b.name == target)?;
    if field.len() < 3 {
        return None; // with two branches the pair difference already says it all
    }
    let curves: Vec<BTreeMap<u64, f64>> = field
        .iter()
        .map(|b| {
            let c: Vec<_> = b
                .runs
                .iter()
                .map(|r| train_ema(r, opts.ema_alpha))
                .collect();
            let m = across_seeds(&c, BandKind::MinMax);
            m.step.into_iter().zip(m.mean).collect()
        })
        .collect();
    let common: Vec<u64> = curves[0]
        .keys()
        .copied()
        .filter(|s| curves.iter().all(|c| c.contains_key(s)))
        .collect();
    let skip = (common.len() as f64 * opts.pair_skip_frac) as usize;
    let ranks: Vec<usize> = common[skip..]
        .iter()
        .map(|s| {
            let mine = curves[ti][s];
            1 + curves.iter().filter(|c| c[s] < mine).count()
        })
        .collect();
    if ranks.is_empty() {
        return None;
    }
    let mut share = vec![0.0; field.len()];
    for &r in &ranks {
        share[r - 1] += 1.0 / ranks.len() as f64;
    }
    let changes = ranks.windows(2).filter(|w| w[0] != w[1]).count();
    let last = common[common.len() - 1];
    let mut order: Vec<(f64, String)> = field
        .iter()
        .zip(&curves)
        .map(|(b, c)| (c[&last], b.name.clone()))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let final_order = order.into_iter().map(|o| o.1).collect();
    let field = field.iter().map(|b| b.name.clone()).collect();
    Some(RankTrack {
        branch: target.to_string(),
        field,
        share,
        changes,
        steps: ranks.len(),
        final_order,
    })
}
