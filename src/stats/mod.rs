//! Pure statistics for comparing training runs: an unbiased trend, confidence intervals, paired
//! comparisons with a Holm correction, volatility measures and an unpaired fallback. No I/O, no
//! plotting, so the numbers in the charts and in the report come from exactly one place.
//!
//! Runs of different branches with the same seed start from the same weights and see the same
//! batches: they are *paired*, and branches are compared by per-seed differences ([`paired`]).
//! Non-finite values (a diverged run writes `NaN`/`inf`) are skipped by every function here;
//! callers count them separately to say so in the report.

pub mod paired;
pub mod trend;

pub use paired::{holm, paired_t, step_diff, Paired, StepDiff};
pub use trend::{trend, TREND_FRAC};

use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

/// The definitions printed in the report, next to the functions that compute them.
/// The standard normal's 97.5% quantile.
const Z975: f64 = 1.959_963_984_540_054;

pub const DEFINITIONS: [&str; 7] = [
    "**Paired design**: runs of different branches with the same seed start from the same initial weights and see the same batches in the same order, so each branch is compared with the baseline seed by seed: the difference of their final losses, and of their raw training losses at every common step.",
    "**Paired comparison**: mean of the per-seed differences ± half-width of its 95% CI (Student t, n−1 degrees of freedom), a two-sided paired t-test, and its p-value after Holm's correction over all the branches compared with the baseline. A difference is *beyond noise* when the Holm-adjusted p < 0.05.",
    "**Trend**: a local-linear (LOESS, tricube weights) fit over a window of 10% of the run's steps (at least 7), the window shifted inward at the ends. It is unbiased on a straight line and follows a falling curve instead of dragging the early descent into the tail, as an exponential moving average does.",
    "**Paired noise**: std of (d − trend(d)) over the last half of the run, d the per-step difference of raw training losses on the same batch. Batch difficulty cancels in d, so this is how much two models' losses move apart from step to step: volatility that is about the models, not the data. The trend takes up a little of it where its window holds few steps (white noise of std 1 reads ≈ 0.9 over 100 steps, ≈ 1.0 over 3,000): compare it between runs of the same length.",
    "**Seed spread**: std of the final loss across seeds, with its 95% CI from the χ² distribution: how much a branch's result depends on the seed.",
    "**Roughness** (context only): std of step-to-step differences of a run's raw training loss over the last half. It mostly measures how different consecutive batches are, which all branches share.",
    "**Unpaired comparison** (only where runs are not paired, e.g. no shared seeds): Welch's unequal-variance t procedure on the two branches' final losses; its p-value joins the same Holm correction.",
];

/// Knobs of the run statistics; `Default` is what the report and the charts use.
#[derive(Debug, Clone, Copy)]
pub struct VolatilityOpts {
    /// Fraction of the run, counted from the end, over which noise and late gaps are measured
    /// (0.5 = last half: the steep initial descent would dominate otherwise).
    pub tail_frac: f64,
    /// Fraction of the common steps skipped before counting sign changes of a trend difference.
    pub pair_skip_frac: f64,
}

impl Default for VolatilityOpts {
    fn default() -> Self {
        Self { tail_frac: 0.5, pair_skip_frac: 0.1 }
    }
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

/// Two-sided 95% Student-t critical value for `dof` degrees of freedom (NaN below 1 dof). Past
/// 10⁴ dof it is the normal quantile (within 2·10⁻⁴ of t's): statrs's inverse drifts there and
/// does not return past ~3·10⁷.
pub fn t_crit95(dof: f64) -> f64 {
    if dof > 1e4 {
        return Z975;
    }
    match StudentsT::new(0.0, 1.0, dof) {
        Ok(t) if dof >= 1.0 => t.inverse_cdf(0.975),
        _ => f64::NAN,
    }
}

/// Two-sided p-value of a t statistic with `dof` degrees of freedom.
pub fn t_p_value(t: f64, dof: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    match StudentsT::new(0.0, 1.0, dof) {
        Ok(d) if t.is_finite() && dof >= 1.0 => (2.0 * d.cdf(-t.abs())).min(1.0),
        _ => f64::NAN,
    }
}

/// Mean and half-width of its 95% confidence interval (Student t, n−1 dof) over the finite
/// values. n = 1 gives a NaN half-width (callers print "n=1"); n = 0 gives (NaN, NaN).
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let n = finite(xs).count();
    if n < 2 {
        return (mean(xs), f64::NAN);
    }
    (mean(xs), t_crit95((n - 1) as f64) * std(xs) / (n as f64).sqrt())
}

/// Sample std of the finite values and its 95% CI `(std, lo, hi)` from the χ² distribution
/// with n−1 dof (assuming normal values); NaNs for n < 2.
pub fn std_ci95(xs: &[f64]) -> (f64, f64, f64) {
    let n = finite(xs).count();
    let s = std(xs);
    let Ok(chi) = ChiSquared::new((n.max(2) - 1) as f64) else { return (s, f64::NAN, f64::NAN) };
    if n < 2 {
        return (s, f64::NAN, f64::NAN);
    }
    let k = (n - 1) as f64;
    (s, s * (k / chi.inverse_cdf(0.975)).sqrt(), s * (k / chi.inverse_cdf(0.025)).sqrt())
}

/// The last `frac` of a series (at least 2 points when the series has them).
pub fn tail(xs: &[f64], frac: f64) -> &[f64] {
    let k = ((xs.len() as f64 * frac.clamp(0.0, 1.0)).ceil() as usize).max(2).min(xs.len());
    &xs[xs.len() - k..]
}

/// Roughness: std of the step-to-step differences of the raw loss over its last `tail_frac`
/// (differences touching a non-finite loss are skipped). See [`DEFINITIONS`].
pub fn roughness(loss: &[f64], tail_frac: f64) -> f64 {
    let t = tail(loss, tail_frac);
    let diffs: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).filter(|d| d.is_finite()).collect();
    std(&diffs)
}

/// Std of `xs − trend(xs)` over the last `tail_frac`, the trend fitted over the whole series.
pub fn detrended_std(xs: &[f64], tail_frac: f64) -> f64 {
    let tr = trend(xs, TREND_FRAC);
    let resid: Vec<f64> = xs.iter().zip(&tr).map(|(x, m)| x - m).collect();
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

/// Welch's two-sample comparison of means, for runs that are *not* paired: mean(a) − mean(b),
/// the half-width of its 95% CI (Welch–Satterthwaite dof) and the two-sided p-value.
#[derive(Debug, Clone, Copy)]
pub struct Welch {
    pub diff: f64,
    pub half_width: f64,
    pub dof: f64,
    pub p: f64,
}

/// [`Welch`] comparison of the finite values of `a` and `b`; None when either side has fewer
/// than 2 values (no variance estimate: the difference cannot be tested).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    let (na, nb) = (finite(a).count() as f64, finite(b).count() as f64);
    if na < 2.0 || nb < 2.0 {
        return None;
    }
    let (va, vb) = (std(a).powi(2) / na, std(b).powi(2) / nb);
    let se2 = va + vb;
    let diff = mean(a) - mean(b);
    if se2 == 0.0 {
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Some(Welch { diff, half_width: 0.0, dof: f64::INFINITY, p });
    }
    let dof = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    Some(Welch { diff, half_width: t_crit95(dof) * se2.sqrt(), dof, p: t_p_value(diff / se2.sqrt(), dof) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn t_quantiles_and_p_values_match_tables() {
        // textbook two-sided 95% values
        for (dof, t) in [(1.0, 12.706), (2.0, 4.303), (4.0, 2.776), (30.0, 2.042), (1e6, 1.960)] {
            assert!(close(t_crit95(dof), t, 1e-3), "dof {dof}: {}", t_crit95(dof));
        }
        assert!(close(t_p_value(4.303, 2.0), 0.05, 1e-4));
        assert!(close(t_p_value(-2.776, 4.0), 0.05, 1e-4));
        assert!(close(t_p_value(0.0, 3.0), 1.0, 1e-12));
        assert!(t_crit95(0.5).is_nan());
    }

    #[test]
    fn ci_of_mean_and_of_std() {
        let (m, h) = mean_ci95(&[1.0, 3.0]);
        assert!(close(m, 2.0, 1e-12) && close(h, 12.7062, 1e-3), "{h}");
        let (m, h) = mean_ci95(&[7.0]);
        assert!(close(m, 7.0, 1e-12) && h.is_nan());
        // n = 3, s = 1: χ²(2) quantiles 0.0506 and 7.3778 -> [sqrt(2/7.3778), sqrt(2/0.0506)]
        let (s, lo, hi) = std_ci95(&[1.0, 2.0, 3.0]);
        assert!(close(s, 1.0, 1e-12) && close(lo, 0.5207, 1e-3) && close(hi, 6.2847, 1e-2), "{lo} {hi}");
        assert!(std_ci95(&[1.0]).1.is_nan());
    }

    #[test]
    fn roughness_by_hand() {
        // diffs 1, 2, 3 -> std 1
        assert!(close(roughness(&[1.0, 2.0, 4.0, 7.0], 1.0), 1.0, 1e-12));
        // last half of [9,9,1,2,4,7] = [2,4,7]: diffs 2,3 -> std sqrt(0.5)
        assert!(close(roughness(&[9.0, 9.0, 1.0, 2.0, 4.0, 7.0], 0.5), 0.5f64.sqrt(), 1e-12));
        // a straight line has no residual around its trend
        let line: Vec<f64> = (0..50).map(|i| 3.0 - 0.01 * i as f64).collect();
        assert!(detrended_std(&line, 0.5) < 1e-9);
    }

    /// White noise of std 1 (a fixed LCG, Box–Muller): what the trend leaves of it.
    #[test]
    fn detrended_white_noise_reads_near_its_std_on_long_runs() {
        let mut state = 12345u64;
        let mut unif = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut noise = |n: usize| -> Vec<f64> { (0..n).map(|_| (-2.0 * unif().ln()).sqrt() * (std::f64::consts::TAU * unif()).cos()).collect() };
        let long = noise(3000);
        let ratio = detrended_std(&long, 0.5) / std(tail(&long, 0.5));
        assert!(ratio > 0.98 && ratio < 1.0, "3,000 steps: {ratio}");
        let short: Vec<f64> = (0..40).map(|_| noise(100)).map(|x| detrended_std(&x, 0.5) / std(tail(&x, 0.5))).collect();
        let r = mean(&short);
        assert!(r > 0.85 && r < 0.95, "100 steps: {r}");
    }

    #[test]
    fn flips_on_known_pattern() {
        assert_eq!(flips(&[1.0, -1.0, 0.0, -2.0, 3.0, 0.0, 0.0, 4.0, -1.0]), 3);
        assert_eq!(flips(&[0.0, 0.5, 0.1, 0.0, 2.0]), 0);
        assert_eq!(flips(&[]), 0);
    }

    /// Values from scipy 1.17 (`stats.t.ppf`, `stats.t.cdf`, `stats.chi2.ppf`, `ttest_ind(equal_var=False)`).
    #[test]
    fn quantiles_intervals_and_welch_match_scipy() {
        assert!(close(t_crit95(3.0), 3.182_446_305_284, 1e-9));
        assert!(close(t_crit95(1.5), 6.016_663_104_428, 1e-9), "fractional dof, as Welch's");
        for dof in [1e5, 1e7, 1e9] {
            assert!(close(t_crit95(dof), 1.959_964, 3e-5), "dof {dof}: {}", t_crit95(dof));
        }
        assert!(close(t_p_value(10.0, 2.0), 9.852_457_023_3e-3, 1e-12));
        assert!(close(t_p_value(25.0, 4.0), 1.519_752_576_3e-5, 1e-13));
        let (s, lo, hi) = std_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(close(s, 1.581_138_830_084, 1e-9) && close(lo, 0.947_312_670_675, 1e-9) && close(hi, 4.543_490_393_448, 1e-9), "{lo} {hi}");
        assert!(close(mean_ci95(&[1.0, 2.0, 4.0]).1, 3.794_583_033_597, 1e-9));
        for (a, b, dof, half, p) in [
            (&[1.0, 2.0, 3.0, 4.0][..], &[2.0, 4.0, 6.0][..], 3.234_718_826_405_868, 4.042_327_954_923_024, 0.333_823_700_077_501_06),
            (&[1.0, 1.1, 0.9][..], &[2.0, 2.1, 1.9][..], 4.0, 0.226_695_793_552_751_9, 2.552_167_494_419_268e-4),
            (&[1.0, 2.0][..], &[5.0, 5.0, 5.0][..], 1.0, 6.353_102_368_087_347, 0.090_334_470_601_733_1),
        ] {
            let w = welch(a, b).unwrap();
            assert!(close(w.dof, dof, 1e-9) && close(w.half_width, half, 1e-8) && close(w.p, p, 1e-9), "{a:?} vs {b:?}: {w:?}");
        }
    }

    #[test]
    fn welch_detects_separation_only_when_real() {
        let w = welch(&[1.0, 1.1, 0.9], &[2.0, 2.1, 1.9]).unwrap();
        assert!(close(w.diff, -1.0, 1e-12) && w.p < 0.01);
        assert!(welch(&[1.0, 2.0, 3.0], &[1.5, 2.5, 3.5]).unwrap().p > 0.05);
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
    }
}
