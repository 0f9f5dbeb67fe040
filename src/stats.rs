//! Pure statistics for comparing training runs: smoothing, confidence intervals,
//! volatility measures and a two-sample comparison. No I/O, no plotting, so the
//! numbers in the charts and in the report come from exactly one place.
//!
//! Non-finite values (a diverged run writes `NaN`/`inf`) are skipped by every
//! function here; callers count them separately to say so in the report.

// Definitions shared verbatim by the doc comments below and the report (`DEFINITIONS`).
macro_rules! def_roughness {
    () => {
        "**Roughness**: sample std of the step-to-step differences loss[t] − loss[t−1] of the raw training loss over the last K steps (K = `tail_frac` of the run, default the last 50%, so the steep initial descent is ignored). It measures step-level jitter, independent of the downward trend."
    };
}
macro_rules! def_detrended {
    () => {
        "**Detrended std**: sample std of loss − EMA(loss) over the same last K steps, the EMA zero-phase (bias-corrected, weight α, run forward and then backward so the trend does not lag the falling loss) and taken over the whole run. It measures how far the raw loss wanders around its smoothed trend, including slow wobbles that roughness misses."
    };
}
macro_rules! def_pair {
    () => {
        "**NoPE−RoPE difference**: NoPE and RoPE runs of the same seed are aligned on their common steps, each smoothed with the same EMA, the first 10% of the aligned steps skipped, and d = EMA(NoPE) − EMA(RoPE) (positive: NoPE has the higher, i.e. worse, loss). Reported per seed: std(d) (how much the gap moves), max|d|, mean(d) (the typical gap) and flips = the number of sign changes of d, ignoring exact zeros (0 flips: one stays on one side of the other)."
    };
}
macro_rules! def_ci {
    () => {
        "**Aggregation**: every per-run or per-pair number is reported as mean ± half-width of its 95% confidence interval over seeds (Student t with n−1 degrees of freedom; n=1 has no interval)."
    };
}
macro_rules! def_welch {
    () => {
        "**Beyond the CIs**: a difference between two branches counts as real when the 95% confidence interval of the difference of their means, from Welch's unequal-variance t procedure (Welch–Satterthwaite degrees of freedom, rounded down), excludes 0. This is a two-sided Welch t-test at the 5% level; it is less conservative than requiring the two separate 95% CIs not to overlap."
    };
}

/// The volatility and comparison definitions, as printed in the report.
pub const DEFINITIONS: [&str; 5] = [
    def_roughness!(),
    def_detrended!(),
    def_pair!(),
    def_ci!(),
    def_welch!(),
];

/// Smoothing used by the volatility measures and the NoPE−RoPE difference.
/// Fixed (not the chart's display smoothing) so the report and charts agree.
/// α = 0.02 is an effective window of about 2/α − 1 ≈ 100 steps.
pub const METRIC_EMA_ALPHA: f64 = 0.02;

/// Knobs of the volatility measures; `Default` is what the report uses.
#[derive(Debug, Clone, Copy)]
pub struct VolatilityOpts {
    /// Fraction of the run, counted from the end, over which per-run volatility is measured
    /// (0.5 = last half: the steep initial descent would dominate otherwise).
    pub tail_frac: f64,
    /// EMA weight of the newest sample (see [`ema`]).
    pub ema_alpha: f64,
    /// Fraction of the aligned steps skipped at the start of a NoPE/RoPE pair.
    pub pair_skip_frac: f64,
}

impl Default for VolatilityOpts {
    fn default() -> Self {
        Self {
            tail_frac: 0.5,
            ema_alpha: METRIC_EMA_ALPHA,
            pair_skip_frac: 0.1,
        }
    }
}

/// Exponential moving average m_t = (1−α)·m_{t−1} + α·x_t with m_0 = 0, divided by
/// 1 − (1−α)^t (Adam-style debiasing) so the first values are not dragged towards 0:
/// a constant series stays that constant. Non-finite inputs are skipped (the previous
/// smoothed value is repeated; NaN until the first finite input).
pub fn ema(xs: &[f64], alpha: f64) -> Vec<f64> {
    let beta = 1.0 - alpha;
    let (mut m, mut decay, mut out) = (0.0, 1.0, Vec::with_capacity(xs.len()));
    let mut last = f64::NAN;
    for &x in xs {
        if x.is_finite() {
            m = beta * m + alpha * x;
            decay *= beta;
            last = m / (1.0 - decay);
        }
        out.push(last);
    }
    out
}

/// Zero-phase smoothing: the bias-corrected [`ema`] run forward, then backward over its output.
/// A one-sided EMA lags a falling loss curve by about (1 − α)/α steps, which on short runs puts
/// the "trend" visibly above the data and inflates loss − trend; the backward pass cancels the lag.
pub fn smooth(xs: &[f64], alpha: f64) -> Vec<f64> {
    let fwd = ema(xs, alpha);
    let mut back = ema(&fwd.iter().rev().copied().collect::<Vec<_>>(), alpha);
    back.reverse();
    // keep the gaps (non-finite inputs) where they were
    back.iter().zip(xs).map(|(b, x)| if x.is_finite() { *b } else { f64::NAN }).collect()
}

fn finite(xs: &[f64]) -> impl Iterator<Item = f64> + '_ {
    xs.iter().copied().filter(|x| x.is_finite())
}

/// Arithmetic mean of the finite values (NaN if none).
pub fn mean(xs: &[f64]) -> f64 {
    let (s, n) = finite(xs).fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Sample standard deviation (n − 1 denominator) of the finite values; NaN for n < 2.
pub fn std(xs: &[f64]) -> f64 {
    let m = mean(xs);
    let (ss, n) = finite(xs).fold((0.0, 0usize), |(s, n), x| (s + (x - m).powi(2), n + 1));
    if n < 2 {
        f64::NAN
    } else {
        (ss / (n - 1) as f64).sqrt()
    }
}

/// Two-sided 95% Student-t critical value for `dof` degrees of freedom. Between table
/// entries the lower dof is used (slightly conservative); 1.96 from 1000 dof on.
pub fn t_crit95(dof: f64) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if dof.is_nan() || dof < 1.0 {
        return f64::NAN;
    }
    match dof.floor() as usize {
        d @ 1..=30 => T[d - 1],
        31..=39 => 2.042,
        40..=59 => 2.021,
        60..=119 => 2.000,
        120..=999 => 1.980,
        _ => 1.960,
    }
}

/// Mean and half-width of its 95% confidence interval (Student t, n−1 dof) over the
/// finite values; see the aggregation rule below.
///
#[doc = def_ci!()]
///
/// n = 1 gives a NaN half-width (callers print "n=1"); n = 0 gives (NaN, NaN).
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let n = finite(xs).count();
    if n < 2 {
        return (mean(xs), f64::NAN);
    }
    (
        mean(xs),
        t_crit95((n - 1) as f64) * std(xs) / (n as f64).sqrt(),
    )
}

/// The last `frac` of a series (at least 2 points when the series has them).
pub fn tail(xs: &[f64], frac: f64) -> &[f64] {
    let k = ((xs.len() as f64 * frac.clamp(0.0, 1.0)).ceil() as usize)
        .max(2)
        .min(xs.len());
    &xs[xs.len() - k..]
}

#[doc = def_roughness!()]
///
/// Differences touching a non-finite loss are skipped.
pub fn roughness(loss: &[f64], tail_frac: f64) -> f64 {
    let t = tail(loss, tail_frac);
    let diffs: Vec<f64> = t
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| d.is_finite())
        .collect();
    std(&diffs)
}

#[doc = def_detrended!()]
///
/// `alpha` is the EMA weight (see [`ema`]).
pub fn detrended_std(loss: &[f64], alpha: f64, tail_frac: f64) -> f64 {
    let smooth = smooth(loss, alpha);
    let resid: Vec<f64> = loss.iter().zip(&smooth).map(|(x, m)| x - m).collect();
    std(tail(&resid, tail_frac))
}

/// Number of sign changes in `d`, ignoring exact zeros (+ 0 − counts as one change).
pub fn flips(d: &[f64]) -> usize {
    let mut prev = 0.0f64;
    let mut n = 0;
    for &x in d.iter().filter(|x| x.is_finite() && **x != 0.0) {
        if prev != 0.0 && prev.signum() != x.signum() {
            n += 1;
        }
        prev = x;
    }
    n
}

/// Difference of two runs' smoothed training losses on their common steps.
#[derive(Debug, Clone)]
pub struct PairDiff {
    /// Steps kept after alignment and skipping the first `pair_skip_frac`.
    pub steps: Vec<u64>,
    /// d = EMA(a) − EMA(b) at those steps (positive: a has the higher, i.e. worse, loss).
    pub d: Vec<f64>,
    /// Sample std of d: how much the gap itself moves.
    pub std: f64,
    /// max |d|.
    pub max_abs: f64,
    /// mean d: the typical gap.
    pub mean: f64,
    /// Sign changes of d ([`flips`]): 0 means one run stays on one side of the other.
    pub flips: usize,
}

#[doc = def_pair!()]
///
/// Here `a` plays NoPE and `b` RoPE (`(step, loss)`, sorted by step); the skipped fraction
/// is `opts.pair_skip_frac`.
pub fn pair_diff(a: &[(u64, f64)], b: &[(u64, f64)], opts: &VolatilityOpts) -> PairDiff {
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
    let (ea, eb) = (smooth(&la, opts.ema_alpha), smooth(&lb, opts.ema_alpha));
    let skip = (steps.len() as f64 * opts.pair_skip_frac.clamp(0.0, 1.0)) as usize;
    let d: Vec<f64> = ea.iter().zip(&eb).skip(skip).map(|(x, y)| x - y).collect();
    let steps = steps.split_off(skip.min(steps.len()));
    let max_abs = finite(&d).map(f64::abs).fold(f64::NAN, f64::max);
    PairDiff {
        std: std(&d),
        max_abs,
        mean: mean(&d),
        flips: flips(&d),
        steps,
        d,
    }
}

/// Welch's two-sample comparison of means: mean(a) − mean(b) and the half-width of its
/// 95% CI (t critical value from [`t_crit95`]).
///
#[doc = def_welch!()]
#[derive(Debug, Clone, Copy)]
pub struct Welch {
    pub diff: f64,
    pub half_width: f64,
    pub dof: f64,
}

impl Welch {
    /// Whether the 95% CI of the difference excludes zero.
    pub fn significant(&self) -> bool {
        self.diff.abs() > self.half_width
    }
}

/// [`Welch`] comparison of the finite values of `a` and `b`; None when either side has
/// fewer than 2 values (no variance estimate: the difference cannot be tested).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    let (na, nb) = (finite(a).count() as f64, finite(b).count() as f64);
    if na < 2.0 || nb < 2.0 {
        return None;
    }
    let (va, vb) = (std(a).powi(2) / na, std(b).powi(2) / nb);
    let se2 = va + vb;
    let diff = mean(a) - mean(b);
    if se2 == 0.0 {
        return Some(Welch {
            diff,
            half_width: 0.0,
            dof: f64::INFINITY,
        });
    }
    let dof = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    Some(Welch {
        diff,
        half_width: t_crit95(dof) * se2.sqrt(),
        dof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ema_debiased_constant_and_step() {
        assert!(ema(&[3.5; 50], 0.02).iter().all(|&v| close(v, 3.5)));
        // zero-phase smoothing does not lag a straight falling line (interior points)
        let ramp: Vec<f64> = (0..400).map(|i| 6.0 - 0.01 * i as f64).collect();
        let sm = smooth(&ramp, 0.05);
        assert!((sm[200] - ramp[200]).abs() < 1e-3, "{} vs {}", sm[200], ramp[200]);
        assert!((ema(&ramp, 0.05)[200] - ramp[200]).abs() > 0.1, "the one-sided EMA does lag");
        // Hand-computed: m1 = .5*0 -> 0/.5 = 0; m2 = .5*0 + .5*2 = 1 -> 1/.75
        let e = ema(&[0.0, 2.0], 0.5);
        assert!(close(e[0], 0.0) && close(e[1], 4.0 / 3.0), "{e:?}");
        let e = ema(&[1.0, f64::NAN, 1.0], 0.1);
        assert!(
            e.iter().all(|&v| close(v, 1.0)),
            "NaN must be skipped: {e:?}"
        );
    }

    #[test]
    fn t_table_and_ci() {
        assert_eq!(t_crit95(1.0), 12.706); // n = 2
        assert_eq!(t_crit95(2.0), 4.303); // n = 3
        assert_eq!(t_crit95(4.0), 2.776); // n = 5
        assert_eq!(t_crit95(1e6), 1.96);
        let (m, h) = mean_ci95(&[1.0, 3.0]);
        assert!(
            close(m, 2.0) && close(h, 12.706 * 2f64.sqrt() / 2f64.sqrt()),
            "{h}"
        );
        let (m, h) = mean_ci95(&[7.0]);
        assert!(close(m, 7.0) && h.is_nan());
    }

    #[test]
    fn roughness_and_detrended_by_hand() {
        // diffs 1, 2, 3 -> std 1
        assert!(close(roughness(&[1.0, 2.0, 4.0, 7.0], 1.0), 1.0));
        // last half of [9,9,1,2,4,7] = [2,4,7]: diffs 2,3 -> std sqrt(0.5)
        assert!(close(
            roughness(&[9.0, 9.0, 1.0, 2.0, 4.0, 7.0], 0.5),
            0.5f64.sqrt()
        ));
        // zero-phase trend: forward EMA [0, 4/3], backward over it [4/9, 4/3];
        // residuals [-4/9, 2/3] -> std = (10/9)/sqrt(2)
        assert!(close(
            detrended_std(&[0.0, 2.0], 0.5, 1.0),
            (10.0 / 9.0) / 2f64.sqrt()
        ));
        assert!(close(detrended_std(&[2.0; 20], 0.1, 0.5), 0.0));
    }

    #[test]
    fn flips_on_known_pattern() {
        assert_eq!(flips(&[1.0, -1.0, 0.0, -2.0, 3.0, 0.0, 0.0, 4.0, -1.0]), 3);
        assert_eq!(flips(&[0.0, 0.5, 0.1, 0.0, 2.0]), 0);
        assert_eq!(flips(&[]), 0);
    }

    #[test]
    fn pair_diff_aligns_and_skips() {
        let a: Vec<(u64, f64)> = (1..=20).map(|s| (s, 3.0)).collect();
        let b: Vec<(u64, f64)> = (5..=30).map(|s| (s, 2.0)).collect();
        let p = pair_diff(
            &a,
            &b,
            &VolatilityOpts {
                pair_skip_frac: 0.25,
                ..Default::default()
            },
        );
        assert_eq!(p.steps.first(), Some(&9)); // common 5..=20 (16 steps), skip 4
        assert_eq!(p.d.len(), 12);
        assert!(close(p.mean, 1.0) && close(p.max_abs, 1.0) && close(p.std, 0.0));
        assert_eq!(p.flips, 0);
    }

    #[test]
    fn welch_detects_separation_only_when_real() {
        let w = welch(&[1.0, 1.1, 0.9], &[2.0, 2.1, 1.9]).unwrap();
        assert!(w.significant() && close(w.diff, -1.0));
        assert!(!welch(&[1.0, 2.0, 3.0], &[1.5, 2.5, 3.5])
            .unwrap()
            .significant());
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
    }
}
