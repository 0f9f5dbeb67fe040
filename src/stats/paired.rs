//! Paired comparisons: per-seed differences of two branches that share initial weights and
//! batches, the paired t-test, Holm's correction, and the per-step difference of training losses.

use super::{mean, mean_ci95, std, t_p_value, tail, trend::trend, TREND_FRAC};

/// A paired comparison over seeds: the per-seed differences a − b, their mean ± 95% CI,
/// the paired t statistic and its two-sided p-value (n − 1 dof).
#[derive(Debug, Clone)]
pub struct Paired {
    pub diffs: Vec<f64>,
    pub mean: f64,
    pub half_width: f64,
    pub t: f64,
    pub p: f64,
}

impl Paired {
    pub fn n(&self) -> usize {
        self.diffs.len()
    }
}

/// The paired t-test of per-seed differences; None for fewer than 2 finite differences.
/// Identical non-zero differences (no spread) give t = ±∞ and p = 0.
pub fn paired_t(diffs: &[f64]) -> Option<Paired> {
    let d: Vec<f64> = diffs.iter().copied().filter(|x| x.is_finite()).collect();
    if d.len() < 2 {
        return None;
    }
    let (m, h) = mean_ci95(&d);
    let se = std(&d) / (d.len() as f64).sqrt();
    let t = if se > 0.0 {
        m / se
    } else if m == 0.0 {
        0.0
    } else {
        m.signum() * f64::INFINITY
    };
    let p = t_p_value(t, (d.len() - 1) as f64);
    Some(Paired { diffs: d, mean: m, half_width: h, t, p })
}

/// Holm's step-down adjustment of p-values (family-wise error rate): sorted ascending, the
/// i-th smallest (0-based) is multiplied by m − i, made monotone, capped at 1. NaNs stay NaN
/// and do not count towards m.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..ps.len()).filter(|&i| ps[i].is_finite()).collect();
    idx.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let m = idx.len();
    let mut out = vec![f64::NAN; ps.len()];
    let mut running = 0.0f64;
    for (rank, &i) in idx.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Two runs of the same seed compared step by step on their raw training losses.
#[derive(Debug, Clone)]
pub struct StepDiff {
    /// Common steps, in order.
    pub steps: Vec<u64>,
    /// d = loss_a − loss_b on the same batch (positive: a has the higher, i.e. worse, loss).
    pub d: Vec<f64>,
    /// The trend of d ([`trend`]).
    pub trend: Vec<f64>,
    /// Mean of d over the last `tail_frac` of the common steps: the late-training gap.
    pub tail_mean: f64,
    /// Std of d − trend(d) over the same tail: the paired noise.
    pub noise: f64,
    /// Sign changes of the trend after the first `skip_frac` of the steps.
    pub flips: usize,
    /// Share of those steps where the trend is below 0 (a ahead of b).
    pub ahead: f64,
    /// Std of a's and b's raw losses over the tail, and their correlation there.
    pub raw_std: (f64, f64),
    pub corr: f64,
}

/// Aligns `(step, loss)` series `a` and `b` (sorted by step) on their common steps and
/// describes d = a − b; see [`StepDiff`].
pub fn step_diff(a: &[(u64, f64)], b: &[(u64, f64)], tail_frac: f64, skip_frac: f64) -> StepDiff {
    let (mut i, mut j) = (0, 0);
    let (mut steps, mut la, mut lb) = (vec![], vec![], vec![]);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                steps.push(a[i].0);
                la.push(a[i].1);
                lb.push(b[j].1);
                i += 1;
                j += 1;
            }
        }
    }
    let d: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x - y).collect();
    let tr = trend(&d, TREND_FRAC);
    let resid: Vec<f64> = d.iter().zip(&tr).map(|(x, t)| x - t).collect();
    let skip = (d.len() as f64 * skip_frac.clamp(0.0, 1.0)) as usize;
    let kept: Vec<f64> = tr.iter().skip(skip).copied().filter(|x| x.is_finite()).collect();
    let ahead = kept.iter().filter(|x| **x < 0.0).count() as f64 / kept.len().max(1) as f64;
    let (ta, tb) = (tail(&la, tail_frac), tail(&lb, tail_frac));
    StepDiff {
        tail_mean: mean(tail(&d, tail_frac)),
        noise: std(tail(&resid, tail_frac)),
        flips: super::flips(&kept),
        ahead,
        raw_std: (std(ta), std(tb)),
        corr: correlation(ta, tb),
        steps,
        d,
        trend: tr,
    }
}

/// Pearson correlation of the pairs where both values are finite (NaN if undefined).
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) = a.iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| (*x, *y)).unzip();
    let (mx, my) = (mean(&x), mean(&y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in x.iter().zip(&y) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::welch;

    #[test]
    fn correlation_by_hand() {
        // Σ(x−3)(y−3) = 8, Σ(x−3)² = Σ(y−3)² = 10
        assert!((correlation(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn paired_detects_a_constant_offset_that_welch_does_not() {
        // three seeds whose levels differ by far more than the branch effect of 0.01
        let base = [4.50, 4.62, 4.55];
        let jitter = [0.0004, -0.0003, 0.0002];
        let other: Vec<f64> = base.iter().zip(jitter).map(|(b, j)| b + 0.01 + j).collect();
        let diffs: Vec<f64> = other.iter().zip(base).map(|(o, b)| o - b).collect();
        let p = paired_t(&diffs).unwrap();
        assert!(p.p < 0.05 && (p.mean - 0.0101).abs() < 1e-4 && p.mean - p.half_width > 0.0, "{p:?}");
        let w = welch(&other, &base).unwrap();
        assert!(w.p > 0.5, "Welch must not see it: {w:?}");
    }

    #[test]
    fn paired_t_by_hand() {
        // d = 1, 2, 3: mean 2, sd 1, se 1/√3, t = 2√3 = 3.464, dof 2: p = 0.0742
        let p = paired_t(&[1.0, 2.0, 3.0]).unwrap();
        assert!((p.t - 3.4641).abs() < 1e-3 && (p.p - 0.0742).abs() < 1e-3, "{p:?}");
        assert!((p.half_width - 4.3027 / 3f64.sqrt()).abs() < 1e-3);
        assert!(paired_t(&[1.0]).is_none());
        let same = paired_t(&[0.01, 0.01, 0.01]).unwrap();
        assert!(same.p == 0.0 && same.t.is_infinite());
    }

    #[test]
    fn holm_by_hand() {
        // m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
        let h = holm(&[0.03, 0.01, 0.5, 0.02]);
        let want = [0.06, 0.04, 0.5, 0.06];
        for (a, b) in h.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{h:?}");
        }
        let h = holm(&[0.9, f64::NAN, 0.4]);
        assert!((h[0] - 0.9).abs() < 1e-12 && h[1].is_nan() && (h[2] - 0.8).abs() < 1e-12);
    }

    #[test]
    fn step_diff_cancels_the_shared_batch_noise() {
        // both runs see the same batch difficulty (large), each adds a little of its own
        let mut s = 11u64;
        let mut u = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let (mut a, mut b) = (vec![], vec![]);
        for step in 1..=400u64 {
            let batch = 0.6 * u();
            a.push((step, 4.0 + batch + 0.05 + 0.02 * u()));
            b.push((step, 4.0 + batch + 0.02 * u()));
        }
        let sd = step_diff(&a, &b, 0.5, 0.1);
        assert_eq!(sd.steps.len(), 400);
        assert!((sd.tail_mean - 0.05).abs() < 0.005, "{}", sd.tail_mean);
        assert!(sd.noise < 0.02 && sd.raw_std.0 > 0.15 && sd.corr > 0.95, "{} {:?} {}", sd.noise, sd.raw_std, sd.corr);
        assert_eq!(sd.flips, 0);
        assert_eq!(sd.ahead, 0.0);
    }
}
