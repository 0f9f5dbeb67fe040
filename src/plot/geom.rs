//! Data-space geometry for drawing: clipping and thinning of polylines. Plotters clamps
//! out-of-range points onto the plot border instead of clipping, which draws false lines
//! along the edge, so every curve goes through [`clip_polyline`] first.

/// Clips a polyline to the rectangle (Liang–Barsky per segment), splitting it where it
/// leaves the rectangle or hits a non-finite point.
pub fn clip_polyline(pts: &[(f64, f64)], xr: (f64, f64), yr: (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![];
    let mut cur: Vec<(f64, f64)> = vec![];
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let clipped = if finite(&a) && finite(&b) { clip_segment(a, b, xr, yr) } else { None };
        match clipped {
            Some((p, q)) => {
                if cur.last() != Some(&p) {
                    if cur.len() > 1 {
                        out.push(std::mem::take(&mut cur));
                    }
                    cur = vec![p];
                }
                cur.push(q);
                if q != b {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                if cur.len() > 1 {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
        }
    }
    if cur.len() > 1 {
        out.push(cur);
    }
    out
}

fn clip_segment(a: (f64, f64), b: (f64, f64), xr: (f64, f64), yr: (f64, f64)) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0 - xr.0), (dx, xr.1 - a.0), (-dy, a.1 - yr.0), (dy, yr.1 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r)
            } else {
                t1 = t1.min(r)
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f64| {
        if t == 0.0 {
            a
        } else if t == 1.0 {
            b
        } else {
            (a.0 + t * dx, a.1 + t * dy)
        }
    };
    Some((at(t0), at(t1)))
}

/// Thins a smooth curve to at most `max` points by averaging consecutive buckets: a thick
/// line through thousands of tiny zig-zags renders as a ragged smear.
pub fn thin(pts: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max {
        return pts.to_vec();
    }
    let avg = |c: &[(f64, f64)]| {
        let n = c.len() as f64;
        (c.iter().map(|p| p.0).sum::<f64>() / n, c.iter().map(|p| p.1).sum::<f64>() / n)
    };
    let mut out = vec![pts[0]];
    out.extend(pts.chunks(pts.len().div_ceil(max)).map(avg));
    out.push(pts[pts.len() - 1]);
    out
}

/// Keeps at most ~`max` points of a noisy curve by taking each bucket's min and max
/// (in order), so thinning does not hide the noise it is meant to show.
pub fn decimate(pts: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max {
        return pts.to_vec();
    }
    let bucket = pts.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for c in pts.chunks(bucket) {
        let lo = c.iter().enumerate().filter(|p| p.1 .1.is_finite()).min_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        let hi = c.iter().enumerate().filter(|p| p.1 .1.is_finite()).max_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        match (lo, hi) {
            (Some(l), Some(h)) if l.0 <= h.0 => out.extend([*l.1, *h.1]),
            (Some(l), Some(h)) => out.extend([*h.1, *l.1]),
            _ => out.push((c[0].0, f64::NAN)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_splits_at_edges() {
        let segs = clip_polyline(&[(0.0, 0.0), (1.0, 2.0), (2.0, 0.0), (3.0, 0.5)], (0.0, 3.0), (0.0, 1.0));
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!(segs[0], vec![(0.0, 0.0), (0.5, 1.0)]);
        assert_eq!(segs[1], vec![(1.5, 1.0), (2.0, 0.0), (3.0, 0.5)]);
        assert!(clip_polyline(&[(0.0, 5.0), (1.0, 6.0)], (0.0, 1.0), (0.0, 1.0)).is_empty());
        assert_eq!(clip_polyline(&[(0.0, 0.5), (f64::NAN, 0.5), (0.2, 0.5), (0.4, 0.5)], (0.0, 1.0), (0.0, 1.0)).len(), 1);
    }

    #[test]
    fn decimation_keeps_spikes_and_thin_keeps_ends() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, if i == 500 { 9.0 } else { 0.0 })).collect();
        let d = decimate(&pts, 100);
        assert!(d.len() <= 102 && d.iter().any(|p| p.1 == 9.0), "spike must survive thinning");
        let t = thin(&pts, 50);
        assert!(t.len() <= 52 && t[0] == pts[0] && t[t.len() - 1] == pts[999]);
    }
}
