//! Runs grouped into branches, and the per-branch numbers that both the charts and the
//! report show (so a chart and its table can never disagree).

use super::Run;
use crate::stats::{self, Paired, StepDiff, VolatilityOpts, Welch};
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
            Branch { name: name.to_string(), color: usize::MAX, runs }
        })
        .collect();
    let mut used = vec![];
    for b in out.iter_mut().filter(|b| b.memory_tokens() == 0) {
        let slot = b.positions().and_then(|p| SCHEME_SLOTS.iter().position(|s| *s == p));
        if let Some(slot) = slot.filter(|s| !used.contains(s)) {
            b.color = slot;
            used.push(slot);
        }
    }
    for b in out.iter_mut().filter(|b| b.color == usize::MAX) {
        let slot = (SCHEME_SLOTS.len()..).find(|s| !used.contains(s)).unwrap_or(0);
        b.color = slot;
        used.push(slot);
    }
    out
}

/// (step, loss) of a run's training rows.
pub fn train_pairs(run: &Run) -> Vec<(u64, f64)> {
    run.train.iter().map(|r| (r.step, r.loss)).collect()
}

/// (step, tokens, trend of the training loss) for a run ([`stats::trend`]).
pub fn train_trend(run: &Run) -> Vec<(u64, f64, f64)> {
    let loss: Vec<f64> = run.train.iter().map(|r| r.loss).collect();
    let t = stats::trend(&loss, stats::TREND_FRAC);
    run.train.iter().zip(t).map(|(r, e)| (r.step, r.tokens as f64, e)).collect()
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
            BandKind::MinMax => ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y))),
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
    /// Test loss of each seed that has one (written at the end of a run).
    pub final_test: Vec<f64>,
    /// Bits per byte on the test split, of each seed whose run.json has it.
    pub test_bpb: Vec<f64>,
    pub roughness: Vec<f64>,
    /// Training tokens at the end of each seed.
    pub tokens: Vec<f64>,
    /// Loss of the last window minus window 0 at each seed's last eval step (eval.csv).
    pub window_gain: Vec<f64>,
    /// Non-finite training losses (diverged steps) left out of every number.
    pub nonfinite: usize,
}

impl BranchStats {
    /// The final losses the report states: test where every seed has one, else validation.
    pub fn final_loss(&self) -> (&'static str, &[f64]) {
        if !self.final_test.is_empty() && self.final_test.len() == self.final_val.len() {
            ("test", &self.final_test)
        } else {
            ("val", &self.final_val)
        }
    }
}

pub fn branch_stats(b: &Branch, opts: &VolatilityOpts) -> BranchStats {
    let mut s = BranchStats {
        name: b.name.clone(),
        positions: b.positions().map(str::to_string),
        memory_tokens: b.memory_tokens(),
        seeds: b.runs.iter().map(|r| r.seed).collect(),
        final_val: vec![],
        final_test: vec![],
        test_bpb: vec![],
        roughness: vec![],
        tokens: vec![],
        window_gain: vec![],
        nonfinite: 0,
    };
    for r in &b.runs {
        let loss: Vec<f64> = r.train.iter().map(|t| t.loss).collect();
        s.nonfinite += loss.iter().filter(|l| !l.is_finite()).count();
        s.roughness.push(stats::roughness(&loss, opts.tail_frac));
        s.final_val.extend(final_val(r));
        s.final_test.extend(final_test(r));
        s.test_bpb.extend(r.test_bpb.filter(|v| v.is_finite()));
        s.tokens.push(r.train.last().map_or(f64::NAN, |t| t.tokens as f64));
        if let Some(last) = last_window_losses(r) {
            if last.len() > 1 {
                s.window_gain.push(last[last.len() - 1] - last[0]);
            }
        }
    }
    s
}

/// The run's last finite validation loss.
pub fn final_val(r: &Run) -> Option<f64> {
    r.val.iter().rev().find(|v| v.loss.is_finite()).map(|v| v.loss)
}

/// The run's last finite test loss.
pub fn final_test(r: &Run) -> Option<f64> {
    r.test.iter().rev().find(|v| v.loss.is_finite()).map(|v| v.loss)
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

/// The branch every other one is compared with: `001_pristine` if present, else the
/// memory-free RoPE branch with most seeds (then first by name), else the first branch.
pub fn baseline<'a, 'b>(branches: &'b [Branch<'a>]) -> Option<&'b Branch<'a>> {
    if let Some(b) = branches.iter().find(|b| b.name == "001_pristine") {
        return Some(b);
    }
    let mut rope: Vec<&Branch> = branches.iter().filter(|b| b.positions() == Some("rope") && b.memory_tokens() == 0).collect();
    rope.sort_by_key(|b| std::cmp::Reverse(b.runs.len())); // stable: name order among ties
    rope.first().copied().or(branches.first())
}

/// One branch compared with the baseline, seed by seed.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub branch: String,
    pub baseline: String,
    pub color: usize,
    /// Seeds present in both, in order.
    pub seeds: Vec<u64>,
    /// Final validation / test loss, branch − baseline, per shared seed.
    pub val: Option<Paired>,
    pub test: Option<Paired>,
    /// The per-step difference of raw training losses, per shared seed.
    pub steps: Vec<(u64, StepDiff)>,
    /// Late-training gap (mean d over the tail) across seeds.
    pub gap: Option<Paired>,
    /// Which final loss the verdict tests ("test" when both sides have it for every shared seed).
    pub metric: &'static str,
    /// The p-value of `metric` (paired t, or Welch's where fewer than two seeds are shared), and
    /// after Holm's correction over all comparisons, the unpaired ones included.
    pub p: f64,
    pub p_holm: f64,
    /// Welch on the final losses, only when the two branches share fewer than two seeds.
    pub unpaired: Option<Welch>,
}

impl Comparison {
    /// The paired result the verdict uses.
    pub fn primary(&self) -> Option<&Paired> {
        if self.metric == "test" {
            self.test.as_ref()
        } else {
            self.val.as_ref()
        }
    }

    /// Paired noise per seed (std of the detrended per-step difference).
    pub fn noise(&self) -> Vec<f64> {
        self.steps.iter().map(|(_, d)| d.noise).collect()
    }
}

/// Every branch but the baseline compared with it (in branch order), Holm-corrected together.
pub fn compare(branches: &[Branch], opts: &VolatilityOpts) -> Vec<Comparison> {
    let Some(base) = baseline(branches) else { return vec![] };
    let mut out: Vec<Comparison> = branches.iter().filter(|b| b.name != base.name).map(|b| compare_pair(b, base, opts)).collect();
    let adjusted = stats::holm(&out.iter().map(|c| c.p).collect::<Vec<_>>());
    for (c, p) in out.iter_mut().zip(adjusted) {
        c.p_holm = p;
    }
    out
}

fn compare_pair(b: &Branch, base: &Branch, opts: &VolatilityOpts) -> Comparison {
    let mut seeds = vec![];
    let (mut dv, mut dt, mut steps) = (vec![], vec![], vec![]);
    for r in &b.runs {
        let Some(q) = base.runs.iter().find(|q| q.seed == r.seed) else { continue };
        seeds.push(r.seed);
        if let (Some(x), Some(y)) = (final_val(r), final_val(q)) {
            dv.push(x - y);
        }
        if let (Some(x), Some(y)) = (final_test(r), final_test(q)) {
            dt.push(x - y);
        }
        let d = stats::step_diff(&train_pairs(r), &train_pairs(q), opts.tail_frac, opts.pair_skip_frac);
        if !d.d.is_empty() {
            steps.push((r.seed, d));
        }
    }
    let (val, test) = (stats::paired_t(&dv), stats::paired_t(&dt));
    let metric = if !dt.is_empty() && dt.len() == seeds.len() { "test" } else { "val" };
    let p = if metric == "test" { &test } else { &val }.as_ref().map_or(f64::NAN, |p| p.p);
    let gap = stats::paired_t(&steps.iter().map(|(_, d)| d.tail_mean).collect::<Vec<_>>());
    let unpaired = (seeds.len() < 2).then(|| {
        let finals = |br: &Branch| -> Vec<f64> { br.runs.iter().filter_map(|r| if metric == "test" { final_test(r) } else { final_val(r) }).collect() };
        stats::welch(&finals(b), &finals(base))
    });
    let unpaired = unpaired.flatten();
    let p = unpaired.as_ref().map_or(p, |w| w.p);
    Comparison { branch: b.name.clone(), baseline: base.name.clone(), color: b.color, seeds, val, test, steps, gap, metric, p, p_holm: f64::NAN, unpaired }
}

/// The comparison of the memory-free NoPE branch with a RoPE baseline, if both exist.
pub fn nope_rope<'c>(branches: &[Branch], cmp: &'c [Comparison]) -> Option<&'c Comparison> {
    let base = baseline(branches)?;
    if base.positions() != Some("rope") || base.memory_tokens() != 0 {
        return None;
    }
    let mut nope: Vec<&Branch> = branches.iter().filter(|b| b.positions() == Some("nope") && b.memory_tokens() == 0).collect();
    nope.sort_by_key(|b| std::cmp::Reverse(b.runs.len()));
    let name = &nope.first()?.name;
    cmp.iter().find(|c| &c.branch == name && !c.steps.is_empty())
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
            let c: Vec<_> = b.runs.iter().map(|r| train_trend(r)).collect();
            let m = across_seeds(&c, BandKind::MinMax);
            m.step.into_iter().zip(m.mean).collect()
        })
        .collect();
    let common: Vec<u64> = curves[0].keys().copied().filter(|s| curves.iter().all(|c| c.contains_key(s))).collect();
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
    let mut order: Vec<(f64, String)> = field.iter().zip(&curves).map(|(b, c)| (c[&last], b.name.clone())).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let final_order = order.into_iter().map(|o| o.1).collect();
    let field = field.iter().map(|b| b.name.clone()).collect();
    Some(RankTrack { branch: target.to_string(), field, share, changes, steps: ranks.len(), final_order })
}
