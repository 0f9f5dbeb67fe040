//! The trend of a noisy loss curve: a local-linear (LOESS) fit with tricube weights.
//!
//! A local-linear fit is exact on a straight line anywhere, the ends included (its window is
//! shifted inward there instead of becoming one-sided), and its bias on a curve grows only with
//! the curvature times the window's width squared. An exponential moving average — even run
//! forward and backward — instead spreads the steep early descent over ~1/α steps and sits above
//! a falling curve for the whole tail.

/// Window of the trend as a fraction of the series' points (at least [`MIN_POINTS`]).
pub const TREND_FRAC: f64 = 0.1;
/// The smallest window, in points.
pub const MIN_POINTS: usize = 7;

/// Window size in points for a series of `n` finite points.
pub fn window_points(n: usize, frac: f64) -> usize {
    ((n as f64 * frac).round() as usize).max(MIN_POINTS).min(n)
}

/// The trend of `ys` (x = index), see [`trend_xy`].
pub fn trend(ys: &[f64], frac: f64) -> Vec<f64> {
    let xs: Vec<f64> = (0..ys.len()).map(|i| i as f64).collect();
    trend_xy(&xs, ys, frac)
}

/// Local-linear fit at every point of `(xs, ys)` (`xs` ascending) over the `k` nearest finite
/// points ([`window_points`]), weights (1 − (|x − x₀|/h)³)³ with h just past the farthest of them.
/// Non-finite `ys` are left out of every fit and are NaN in the output; with fewer than 3 finite
/// points the finite values are returned as they are.
pub fn trend_xy(xs: &[f64], ys: &[f64], frac: f64) -> Vec<f64> {
    assert_eq!(xs.len(), ys.len(), "trend: x and y lengths differ");
    let pts: Vec<(f64, f64)> = xs.iter().zip(ys).filter(|(_, y)| y.is_finite()).map(|(x, y)| (*x, *y)).collect();
    let n = pts.len();
    if n < 3 {
        return ys.iter().map(|y| if y.is_finite() { *y } else { f64::NAN }).collect();
    }
    let k = window_points(n, frac);
    let mut out = Vec::with_capacity(ys.len());
    let mut rank = 0usize;
    for (x0, y) in xs.iter().zip(ys) {
        if !y.is_finite() {
            out.push(f64::NAN);
            continue;
        }
        let lo = rank.saturating_sub(k / 2).min(n - k);
        rank += 1;
        out.push(local_linear(&pts[lo..lo + k], *x0));
    }
    out
}

/// Weighted least-squares line through `pts`, evaluated at `x0`.
fn local_linear(pts: &[(f64, f64)], x0: f64) -> f64 {
    let far = pts.iter().map(|(x, _)| (x - x0).abs()).fold(0.0, f64::max);
    let h = far * 1.000_001 + 1e-12;
    let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y) in pts {
        let u = (x - x0).abs() / h;
        let w = (1.0 - u * u * u).powi(3);
        let dx = x - x0;
        sw += w;
        sx += w * dx;
        sy += w * y;
        sxx += w * dx * dx;
        sxy += w * dx * y;
    }
    let det = sw * sxx - sx * sx;
    if det.abs() <= 1e-12 * sw * sxx.max(1e-300) {
        return sy / sw; // all weight at one x: the weighted mean
    }
    // intercept of y = a + b·(x − x0)
    (sy * sxx - sx * sxy) / det
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded N(0, 1) noise (SplitMix64 + Box–Muller).
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n).map(|_| (-2.0 * next().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * next()).cos()).collect()
    }

    /// statsmodels 0.14's `lowess(y, x, frac=7/20, it=0)`: the same local-linear tricube fit over
    /// the 7 nearest points.
    #[test]
    fn matches_statsmodels_lowess() {
        let y: Vec<f64> = (0..20).map(|i| (0.7 * i as f64).sin() + 0.05 * (i * i) as f64).collect();
        let t = trend(&y, 0.1);
        for (i, want) in [(0, 0.258_999), (4, 1.104_614), (10, 5.534_303), (19, 18.433_078)] {
            assert!((t[i] - want).abs() < 2e-6, "point {i}: {} vs {want}", t[i]);
        }
    }

    #[test]
    fn exact_on_lines_and_constants_including_the_ends() {
        let line: Vec<f64> = (0..40).map(|i| 5.0 - 0.1 * i as f64).collect();
        for (t, y) in trend(&line, 0.2).iter().zip(&line) {
            assert!((t - y).abs() < 1e-9, "{t} vs {y}");
        }
        assert!(trend(&[2.5; 12], 0.1).iter().all(|v| (v - 2.5).abs() < 1e-12));
        // gaps stay gaps and are skipped by the fit
        let t = trend(&[1.0, 2.0, f64::NAN, 4.0, 5.0, 6.0, 7.0, 8.0], 0.1);
        assert!(t[2].is_nan() && (t[3] - 4.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn unbiased_tail_on_a_falling_curve() {
        // a training curve: fast early descent, slow tail, per-step noise 0.15 (a raw loss's)
        let n = 300;
        let clean: Vec<f64> = (0..n).map(|i| 3.0 + 6.0 * (-(i as f64) / 40.0).exp() + (1.0 + i as f64 / 200.0).powf(-0.5)).collect();
        for seed in 1..=10 {
            let y: Vec<f64> = clean.iter().zip(noise(seed, n)).map(|(c, e)| c + 0.15 * e).collect();
            let t = trend(&y, TREND_FRAC);
            // the residual the report uses: data − trend, over the last half
            let r: f64 = t[n / 2..].iter().zip(&y[n / 2..]).map(|(t, y)| y - t).sum::<f64>() / (n / 2) as f64;
            assert!(r.abs() < 0.01, "seed {seed}: mean residual over the last half {r}");
        }
        // the bias itself, on the noise-free curve: the largest gap in the last half, and the
        // steep start (a zero-phase EMA with α = 0.02 sat 0.08–0.15 nats above real runs' tails)
        let t = trend(&clean, TREND_FRAC);
        let worst = t[n / 2..].iter().zip(&clean[n / 2..]).map(|(t, c)| (t - c).abs()).fold(0.0, f64::max);
        assert!(worst < 0.003, "bias of the trend over the last half: {worst}");
        let early = t[30..n / 2].iter().zip(&clean[30..n / 2]).map(|(t, c)| (t - c).abs()).fold(0.0, f64::max);
        assert!(early < 0.05, "bias after the first 10%: {early}");
    }

    #[test]
    fn follows_a_difference_that_crosses_zero() {
        // d starts negative (NoPE ahead early), crosses zero at step 60, ends at +0.1
        let n = 300;
        let clean: Vec<f64> = (0..n).map(|i| 0.1 * (1.0 - (-((i as f64) - 60.0) / 50.0).exp()).max(-0.08 / 0.1)).collect();
        let d: Vec<f64> = clean.iter().zip(noise(7, n)).map(|(c, e)| c + 0.04 * e).collect();
        let t = trend(&d, TREND_FRAC);
        assert!(t[20..45].iter().all(|v| *v < 0.0), "the early negative stretch must stay negative");
        assert!(t[90..].iter().all(|v| *v > 0.0));
        assert_eq!(crate::stats::flips(&t[10..]), 1, "exactly one crossing");
    }
}
