//! The verdict bullets and data notes, each sentence chosen from the numbers.

use super::{ci, ci_signed, pval, ExtraTable};

/// "p = 0.016" / "p < 0.001".
fn p_is(p: f64) -> String {
    let v = pval(p);
    if v.starts_with('<') {
        format!("p {v}")
    } else {
        format!("p = {v}")
    }
}
use crate::plot::summary::{BranchStats, Comparison, RankTrack};
use crate::plot::Run;
use crate::stats::{self, VolatilityOpts};
use std::fmt::Write as _;

/// "1 time" / "2 times".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn verdict(bs: &[BranchStats], cmp: &[Comparison], nr: Option<&Comparison>, rank: Option<&RankTrack>, extra: &ExtraTable, runs: &[Run], vo: &VolatilityOpts) -> Vec<String> {
    let mut out = vec![];
    out.extend(ranking(bs));
    out.extend(against_baseline(cmp));
    match nr {
        None => out.push("No NoPE branch and RoPE baseline without memory were both found with shared seeds, so the NoPE-volatility question is not addressed.".into()),
        Some(nr) => {
            out.push(volatility_sentence(nr, cmp, bs));
            out.push(crossing_sentence(nr, runs, vo));
        }
    }
    if let Some(r) = rank {
        let held: Vec<String> = r.share.iter().enumerate().filter(|(_, s)| **s > 0.0).map(|(k, s)| format!("rank {} for {:.0}%", k + 1, s * 100.0)).collect();
        let moves = if held.len() == 1 { "it never changes place".to_string() } else { format!("its rank changes {} in {} steps", plural(r.changes, "time", "times"), r.steps) };
        out.push(format!(
            "Ranking the {} memory-free branches by the seed mean of their training-loss trends (1 = lowest), {} holds {} of the compared steps: {moves}. Order at the last compared step: {}.",
            r.field.len(),
            r.branch,
            held.join(", "),
            r.final_order.join(" < ")
        ));
    }
    out.extend(extrapolation_sentence(extra));
    out
}

fn ranking(bs: &[BranchStats]) -> Option<String> {
    let mut ranked: Vec<&BranchStats> = bs.iter().filter(|b| !b.final_loss().1.is_empty()).collect();
    ranked.sort_by(|a, b| stats::mean(a.final_loss().1).total_cmp(&stats::mean(b.final_loss().1)));
    Some(match ranked.as_slice() {
        [] => "No branch has validation rows, so there is no final-loss ranking.".into(),
        [only] => format!("Only **{}** has a final loss ({} {}).", only.name, only.final_loss().0, ci(only.final_loss().1, 4)),
        [best, second, ..] => {
            let (split, a) = best.final_loss();
            let b = second.final_loss().1;
            let order: Vec<String> = ranked.iter().map(|b| b.name.clone()).collect();
            let same = (stats::mean(a) * 1e4).round() == (stats::mean(b) * 1e4).round();
            let lead = if same { format!("equal to four decimals with **{}** ({})", second.name, ci(b, 4)) } else { format!("ahead of **{}** ({})", second.name, ci(b, 4)) };
            format!(
                "Lowest final {split} loss: **{}** ({}), {lead}. Order: {}. Whether a gap is real is in the paired comparisons, not in overlapping intervals.",
                best.name,
                ci(a, 4),
                order.join(" < ")
            )
        }
    })
}

fn against_baseline(cmp: &[Comparison]) -> Option<String> {
    let first = cmp.first()?;
    if cmp.iter().all(|c| c.seeds.len() < 2 && c.unpaired.is_none()) {
        // a sweep (one seed per value): nothing to test
        return Some(format!("Against {} (final {} loss): no branch shares two seeds with it, so none is paired.", first.baseline, first.metric));
    }
    let m = cmp.iter().filter(|c| c.p.is_finite()).count();
    let (mut beyond, mut within, mut untested) = (vec![], vec![], vec![]);
    for c in cmp {
        match c.primary() {
            Some(p) if c.p_holm < 0.05 => beyond.push(format!(
                "**{}** is {} (Δ {} nats, paired t {}, Holm {})",
                c.branch,
                if p.mean < 0.0 { "better" } else { "worse" },
                ci_signed(p.mean, p.half_width, 4),
                p_is(c.p),
                p_is(c.p_holm)
            )),
            Some(p) => within.push(format!("{} (Δ {}, Holm {})", c.branch, ci_signed(p.mean, p.half_width, 4), p_is(c.p_holm))),
            None => untested.push(match &c.unpaired {
                Some(w) => format!("{} (not paired: Welch Δ {}, {}, Holm {})", c.branch, ci_signed(w.diff, w.half_width, 4), p_is(w.p), p_is(c.p_holm)),
                None if c.seeds.len() < 2 => format!("{} (fewer than 2 shared seeds)", c.branch),
                None => format!("{} (no finite final loss on 2 shared seeds)", c.branch),
            }),
        }
    }
    let mut s = match m {
        0 => format!("Against {} (final {} loss, nothing paired): ", first.baseline, first.metric),
        _ => format!("Against {} (final {} loss, paired by seed, Holm-corrected over {}): ", first.baseline, first.metric, plural(m, "comparison", "comparisons")),
    };
    let mut parts = vec![];
    if !beyond.is_empty() {
        parts.push(format!("beyond noise: {}", beyond.join("; ")));
    }
    if !within.is_empty() {
        parts.push(format!("within noise: {}", within.join(", ")));
    }
    if !untested.is_empty() {
        parts.push(format!("not tested: {}", untested.join(", ")));
    }
    s += &parts.join(". ");
    s.push('.');
    Some(s)
}

/// Is NoPE volatile? Its paired noise against RoPE, next to the other branches', the raw
/// roughness the batches cause, and the seed-to-seed spread.
fn volatility_sentence(nr: &Comparison, cmp: &[Comparison], bs: &[BranchStats]) -> String {
    let noise = nr.noise();
    let others: Vec<f64> = cmp.iter().filter(|c| c.branch != nr.branch).map(|c| stats::mean(&c.noise())).filter(|v| v.is_finite()).collect();
    let corr = stats::mean(&nr.steps.iter().map(|(_, d)| d.corr).collect::<Vec<_>>());
    let raw = stats::mean(&nr.steps.iter().map(|(_, d)| d.raw_std.0).collect::<Vec<_>>());
    let mut s = format!("Volatility: on the same batch {n}'s and {r}'s raw losses correlate at r = {corr:.3} (late in training), so the raw curves' jitter (std {raw:.4}) is mostly batch difficulty. What is left, {n}'s paired noise against {r}, is {} nats", ci(&noise, 4), n = nr.branch, r = nr.baseline);
    if !others.is_empty() {
        let (lo, hi) = others.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let m = stats::mean(&noise);
        let cmp_word = if m > hi {
            "more than"
        } else if m < lo {
            "less than"
        } else {
            "within the range of"
        };
        let _ = write!(s, ", {cmp_word} the other branches' against {} ({lo:.4}–{hi:.4})", nr.baseline);
    }
    let find = |n: &str| bs.iter().find(|b| b.name == n);
    if let (Some(a), Some(b)) = (find(&nr.branch), find(&nr.baseline)) {
        let (sa, sb) = (stats::std_ci95(a.final_loss().1), stats::std_ci95(b.final_loss().1));
        if sa.0.is_finite() && sb.0.is_finite() {
            let word = match (sa.0 * 1e4).round().total_cmp(&(sb.0 * 1e4).round()) {
                std::cmp::Ordering::Greater => "larger than",
                std::cmp::Ordering::Less => "smaller than",
                std::cmp::Ordering::Equal => "equal to",
            };
            let overlap = sa.1 <= sb.2 && sb.1 <= sa.2;
            let _ = write!(
                s,
                ". Seed to seed, {}'s final loss spreads by {:.4} (95% CI {:.4}–{:.4}), {word} {}'s {:.4} ({:.4}–{:.4}){}",
                nr.branch,
                sa.0,
                sa.1,
                sa.2,
                nr.baseline,
                sb.0,
                sb.1,
                sb.2,
                if overlap { ", the intervals overlapping" } else { ", the intervals apart" }
            );
        }
    }
    s.push('.');
    s
}

/// Does NoPE reach RoPE's level? Sign changes of the trend of the paired difference, and how
/// the late gap compares with the per-step noise a raw-loss chart shows.
fn crossing_sentence(nr: &Comparison, runs: &[Run], vo: &VolatilityOpts) -> String {
    let (n, r) = (&nr.branch, &nr.baseline);
    let gaps: Vec<f64> = nr.steps.iter().map(|(_, d)| d.tail_mean).collect();
    let flips: Vec<String> = nr.steps.iter().map(|(s, d)| format!("seed {s}: {}", d.flips)).collect();
    let total: usize = nr.steps.iter().map(|(_, d)| d.flips).sum();
    let trends: Vec<f64> = nr.steps.iter().flat_map(|(_, d)| d.trend.iter().skip((d.trend.len() as f64 * vo.pair_skip_frac) as usize).copied()).filter(|v| v.is_finite()).collect();
    let (lo, hi) = trends.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &d| (a.min(d), b.max(d)));
    let skip = vo.pair_skip_frac * 100.0;
    let mut s = if total == 0 && lo > 0.0 {
        format!("{n} is behind {r} throughout: after the first {skip:.0}% of steps the trend of their per-step difference stays above 0 in every seed (from {lo:+.4} to {hi:+.4}); late in training the gap is {} nats.", ci(&gaps, 4))
    } else if total == 0 && hi < 0.0 {
        format!("{n} is ahead of {r} throughout: after the first {skip:.0}% of steps the trend of their per-step difference stays below 0 in every seed (from {lo:+.4} to {hi:+.4}); late in training the gap is {} nats.", ci(&gaps, 4))
    } else if total == 0 {
        let ahead = gaps.iter().filter(|m| **m < 0.0).count();
        format!(
            "The trend of {n} − {r} never changes sign within a seed after the first {skip:.0}%, but its side depends on the seed ({n} ahead in {ahead} of {} seeds; late gap {} nats).",
            gaps.len(),
            ci(&gaps, 4)
        )
    } else {
        let ahead = stats::mean(&nr.steps.iter().map(|(_, d)| d.ahead).collect::<Vec<_>>());
        format!(
            "The trend of {n} − {r} changes sign ({}): {n} does reach {r}'s level, being ahead on {:.0}% of the compared steps; late in training the gap is {} nats.",
            flips.join(", "),
            ahead * 100.0,
            ci(&gaps, 4)
        )
    };
    // how visible the gap is in a raw-loss chart: |gap| against the raw loss's own wobble
    let raw_noise: Vec<f64> = runs.iter().filter(|x| &x.branch == n).map(|x| stats::detrended_std(&x.train.iter().map(|t| t.loss).collect::<Vec<_>>(), vo.tail_frac)).collect();
    let noise = stats::mean(&raw_noise);
    let gap = stats::mean(&gaps).abs();
    if noise.is_finite() && noise > 0.0 && gap.is_finite() {
        let ratio = gap / noise;
        let seen = if ratio < 1.0 { "so in a raw-loss chart the two curves overlap and the gap shows only in the paired difference" } else { "so the gap is visible even in raw-loss charts" };
        let _ = write!(s, " The late gap is {ratio:.2}× the per-step wobble of {n}'s raw loss around its trend ({noise:.4}), {seen}.");
    }
    s
}

fn extrapolation_sentence(extra: &ExtraTable) -> Option<String> {
    let lens: std::collections::BTreeSet<usize> = extra.iter().flat_map(|(_, at)| at.keys().copied()).collect();
    let (first, last) = (*lens.first()?, *lens.last()?);
    if first == last {
        return None;
    }
    let mut rows: Vec<(f64, String)> = extra
        .iter()
        .filter_map(|(name, at)| {
            let a = stats::mean(&at.get(&first)?.1);
            let b = stats::mean(&at.get(&last)?.1);
            Some((b, format!("{name} {a:.3} → {b:.3}")))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let best = rows.first()?.1.split(' ').next()?.to_string();
    Some(format!(
        "Train short, test long (test bits per byte from a {first}- to a {last}-token window, seed means): {}. Best at {last} tokens: **{best}**.",
        rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>().join(", ")
    ))
}

pub fn data_notes(runs: &[Run], bs: &[BranchStats]) -> Vec<String> {
    let mut notes = vec![];
    for b in bs.iter().filter(|b| b.nonfinite > 0) {
        notes.push(format!("{}: {} non-finite training losses (diverged steps) were skipped in every statistic.", b.name, b.nonfinite));
    }
    for r in runs {
        let bad = r.val.iter().filter(|v| !v.loss.is_finite()).count();
        if bad > 0 {
            notes.push(format!("{} seed {}: {} non-finite validation losses; its final val loss is the last finite one.", r.branch, r.seed, bad));
        }
    }
    for b in bs.iter().filter(|b| b.final_val.is_empty()) {
        notes.push(format!("{}: no validation rows.", b.name));
    }
    if bs.iter().all(|b| b.final_test.is_empty()) {
        notes.push("No run has a test row (runs from before the held-out test split): final numbers are validation losses, from the same split the curves use.".into());
    }
    let lens: Vec<u64> = runs.iter().map(|r| r.train.last().map_or(0, |t| t.step)).collect();
    let (lo, hi) = (lens.iter().min().unwrap_or(&0), lens.iter().max().unwrap_or(&0));
    if lo != hi {
        notes.push(format!("Runs have different lengths ({lo} to {hi} steps); means over seeds at late steps use the seeds that reached them."));
    }
    for r in runs.iter().filter(|r| r.positions.is_none()) {
        notes.push(format!("{}: no config.toml, branch and seed taken from the directory name; positions unknown.", r.dir.display()));
    }
    notes
}
