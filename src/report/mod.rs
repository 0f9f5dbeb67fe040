//! The markdown report: verdict, per-branch and paired tables, charts and definitions. Every
//! sentence of the verdict is chosen from the numbers (nothing about which scheme wins is
//! written in). Run-specific numbers that change between identical reruns (wall time) are left
//! out, so a rerun rewrites the same file.

mod sweep;
mod verdict;

use crate::plot::summary::{self, branch_stats, BranchStats, Comparison};
use crate::plot::Run;
use crate::stats::{self, VolatilityOpts};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes out_dir/report.md: the verdict, a table per branch, every branch against the baseline
/// (paired by seed, Holm-corrected), the NoPE−RoPE pairs, the extrapolation table, the charts
/// (relative links to the PNGs) and the definitions.
pub fn write_report(name: &str, runs: &[Run], out_dir: &Path, charts: &[PathBuf]) -> Result<PathBuf> {
    if runs.is_empty() {
        bail!("no runs to report on");
    }
    let vo = VolatilityOpts::default();
    let branches = summary::group(runs);
    let bs: Vec<BranchStats> = branches.iter().map(|b| branch_stats(b, &vo)).collect();
    let cmp = summary::compare(&branches, &vo);
    let nr = summary::nope_rope(&branches, &cmp);
    let rank = nr.and_then(|n| summary::rank_track(&branches, &n.branch, &vo));
    let extra = crate::plot::extrapolation_table(&branches);

    let mut md = format!("# {name}\n\n");
    let seeds: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    writeln!(md, "{} runs in {} branches, seeds {}.\n", runs.len(), branches.len(), seeds.join(", "))?;
    md += "## Verdict\n\n";
    for s in verdict::verdict(&bs, &cmp, nr, rank.as_ref(), &extra, runs, &vo) {
        writeln!(md, "- {s}")?;
    }
    let scale = scale_lines(runs);
    if !scale.is_empty() {
        md += "\n## Scale\n\n";
        for s in scale {
            writeln!(md, "- {s}")?;
        }
    }
    if let Some(table) = sweep::section(&bs) {
        md += "\n## Sweep\n\n";
        md += &table;
    }
    md += "\n## Per branch\n\n";
    md += &branch_table(&bs);
    if !cmp.is_empty() {
        writeln!(md, "\n## Each branch against {} (paired by seed)\n", cmp[0].baseline)?;
        md += &paired_table(&cmp);
    }
    if let Some(nr) = nr {
        writeln!(md, "\n## {} − {}, step by step\n", nr.branch, nr.baseline)?;
        md += &steps_table(nr);
    }
    if !extra.is_empty() {
        md += "\n## Train short, test long\n\n";
        md += &extrapolation_table(&extra);
    }
    md += "\n## Charts\n\n";
    for c in charts.iter().filter(|c| c.extension().is_some_and(|e| e == "png")) {
        let rel = c.strip_prefix(out_dir).unwrap_or(c).to_string_lossy().replace('\\', "/");
        let stem = c.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let svg = c.with_extension("svg");
        let svg_link = if charts.contains(&svg) { format!(" ([svg]({}))", rel.trim_end_matches(".png").to_string() + ".svg") } else { String::new() };
        writeln!(md, "### {}{svg_link}\n\n![{stem}]({rel})\n", chart_heading(&stem))?;
    }
    md += "## Definitions\n\n";
    for d in stats::DEFINITIONS {
        writeln!(md, "- {d}")?;
    }
    writeln!(md, "- Settings used here: tail = last {:.0}% of each run; sign changes counted after the first {:.0}% of the common steps.", vo.tail_frac * 100.0, vo.pair_skip_frac * 100.0)?;
    let notes = verdict::data_notes(runs, &bs);
    if !notes.is_empty() {
        md += "\n## Data notes\n\n";
        for n in notes {
            writeln!(md, "- {n}")?;
        }
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("{}: cannot create", out_dir.display()))?;
    let path = out_dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(path)
}

fn chart_heading(stem: &str) -> String {
    match stem {
        "loss_vs_tokens" => "Training loss".into(),
        "val_loss" => "Validation loss".into(),
        "val_final" => "Final loss".into(),
        "volatility" => "Volatility".into(),
        "nope_vs_rope" => "NoPE − RoPE".into(),
        "loss_per_window" => "Validation loss per window".into(),
        "extrapolation" => "Train short, test long".into(),
        s => match s.strip_prefix("zoom_").and_then(|r| r.split_once('_')) {
            Some((a, b)) => format!("Zoom: steps {a}–{b}"),
            None => s.into(),
        },
    }
}

/// "m ± h" with n=1 / no-data spelled out.
pub(crate) fn ci(xs: &[f64], digits: usize) -> String {
    let (m, h) = stats::mean_ci95(xs);
    match (m.is_finite(), h.is_finite()) {
        (false, _) => "–".into(),
        (true, true) => format!("{m:.digits$} ± {h:.digits$}"),
        (true, false) => format!("{m:.digits$} (n=1)"),
    }
}

/// A signed "+m ± h".
pub(crate) fn ci_signed(m: f64, h: f64, digits: usize) -> String {
    match (m.is_finite(), h.is_finite()) {
        (false, _) => "–".into(),
        (true, true) => format!("{m:+.digits$} ± {h:.digits$}"),
        (true, false) => format!("{m:+.digits$} (n=1)"),
    }
}

/// A p-value as printed: 3 significant digits, "< 0.001" below that.
pub(crate) fn pval(p: f64) -> String {
    match p {
        p if !p.is_finite() => "–".into(),
        p if p < 0.001 => "< 0.001".into(),
        p => format!("{p:.3}"),
    }
}

/// "s (lo–hi)": a std and its χ² 95% CI.
fn spread(xs: &[f64]) -> String {
    let (s, lo, hi) = stats::std_ci95(xs);
    match (s.is_finite(), lo.is_finite()) {
        (false, _) => "–".into(),
        (true, true) => format!("{s:.4} ({lo:.4}–{hi:.4})"),
        (true, false) => format!("{s:.4}"),
    }
}

/// One line per distinct run size (as printed: sizes that round alike share a line): the
/// branches of that size, their parameters, tokens per run, tokens per non-embedding parameter
/// and epochs of the training split.
fn scale_lines(runs: &[Run]) -> Vec<String> {
    let m = |n: u64| format!("{:.1}M", n as f64 / 1e6);
    let describe = |s: &crate::plot::Scale| {
        let per = s.tokens as f64 / s.non_embedding.max(1) as f64;
        let epochs = s.tokens as f64 / s.split.max(1) as f64;
        format!(
            "{} parameters, {} outside the embedding and LM head; {} training tokens per run = {per:.2} per non-embedding parameter and {epochs:.2} epochs of the {}-token training split.",
            m(s.params),
            m(s.non_embedding),
            m(s.tokens),
            m(s.split)
        )
    };
    let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
    for r in runs {
        let Some(s) = &r.scale else { continue };
        let text = describe(s);
        let i = lines.iter().position(|(t, _)| *t == text).unwrap_or_else(|| {
            lines.push((text, Vec::new()));
            lines.len() - 1
        });
        if !lines[i].1.contains(&r.branch.as_str()) {
            lines[i].1.push(&r.branch);
        }
    }
    lines.into_iter().map(|(text, names)| format!("{}: {text}", names.join(", "))).collect()
}

fn branch_table(bs: &[BranchStats]) -> String {
    let test = bs.iter().any(|b| !b.final_test.is_empty());
    let win = bs.iter().any(|b| !b.window_gain.is_empty());
    let mut cols = vec!["branch", "positions", "memory", "seeds"];
    if test {
        cols.extend(["final test loss", "test bits/byte", "perplexity (test)"]);
    }
    cols.extend(["final val loss", "seed spread (std, 95% CI)", "roughness (context)", "tokens (M)"]);
    if win {
        cols.push("window Δ (last − first)");
    }
    let mut t = format!("| {} |\n|{}\n", cols.join(" | "), "---|".repeat(cols.len()));
    for b in bs {
        let seeds: Vec<String> = b.seeds.iter().map(u64::to_string).collect();
        let mem = if b.memory_tokens > 0 { format!("{} tokens", b.memory_tokens) } else { "–".into() };
        let mut row = vec![b.name.clone(), b.positions.clone().unwrap_or_else(|| "?".into()), mem, seeds.join(", ")];
        if test {
            let (m, h) = stats::mean_ci95(&b.final_test);
            let ppl = match (m.is_finite(), h.is_finite()) {
                (false, _) => "–".into(),
                (true, true) => format!("{:.2} ({:.2}–{:.2})", m.exp(), (m - h).exp(), (m + h).exp()),
                (true, false) => format!("{:.2}", m.exp()),
            };
            row.extend([ci(&b.final_test, 4), ci(&b.test_bpb, 4), ppl]);
        }
        row.extend([ci(&b.final_val, 4), spread(b.final_loss().1), ci(&b.roughness, 4), format!("{:.1}", stats::mean(&b.tokens) / 1e6)]);
        if win {
            row.push(ci(&b.window_gain, 4));
        }
        let _ = writeln!(t, "| {} |", row.join(" | "));
    }
    t
}

fn paired_table(cmp: &[Comparison]) -> String {
    let mut t = String::from(
        "| branch | seeds paired | Δ final loss (mean ± 95% CI) | per seed | p (paired t) | p (Holm) | beyond noise | late training gap | paired noise |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in cmp {
        let (d, per, verdict) = match c.primary() {
            Some(p) => {
                let per: Vec<String> = p.diffs.iter().map(|d| format!("{d:+.4}")).collect();
                let v = if c.p_holm < 0.05 {
                    if p.mean < 0.0 {
                        "yes, better"
                    } else {
                        "yes, worse"
                    }
                } else {
                    "no"
                };
                (format!("{} ({})", ci_signed(p.mean, p.half_width, 4), c.metric), per.join(" "), v.to_string())
            }
            None => match &c.unpaired {
                Some(w) => {
                    (format!("{} ({}, unpaired Welch)", ci_signed(w.diff, w.half_width, 4), c.metric), "–".into(), if c.p_holm < 0.05 { "yes (unpaired)".into() } else { "no (unpaired)".into() })
                }
                None => ("–".into(), "–".into(), "cannot be tested".into()),
            },
        };
        let gap = c.gap.as_ref().map_or("–".into(), |g| ci_signed(g.mean, g.half_width, 4));
        let _ = writeln!(t, "| {} | {} | {d} | {per} | {} | {} | {verdict} | {gap} | {} |", c.branch, c.seeds.len(), pval(c.p), pval(c.p_holm), ci(&c.noise(), 4));
    }
    t
}

fn steps_table(nr: &Comparison) -> String {
    let mut t = format!(
        "| seed | late gap (mean d) | paired noise | trend sign changes | {} ahead (share of steps) | corr of raw losses | raw std {} / {} | steps |\n|---|---|---|---|---|---|---|---|\n",
        nr.branch, nr.branch, nr.baseline
    );
    for (s, d) in &nr.steps {
        let _ = writeln!(t, "| {s} | {:+.4} | {:.4} | {} | {:.0}% | {:.3} | {:.4} / {:.4} | {} |", d.tail_mean, d.noise, d.flips, d.ahead * 100.0, d.corr, d.raw_std.0, d.raw_std.1, d.d.len());
    }
    let col = |f: &dyn Fn(&stats::StepDiff) -> f64| nr.steps.iter().map(|(_, d)| f(d)).collect::<Vec<f64>>();
    let _ = writeln!(
        t,
        "| **mean ± 95% CI** | {} | {} | {} | {} | {} | {} / {} | |",
        ci(&col(&|d| d.tail_mean), 4),
        ci(&col(&|d| d.noise), 4),
        ci(&col(&|d| d.flips as f64), 1),
        ci(&col(&|d| d.ahead * 100.0), 0),
        ci(&col(&|d| d.corr), 3),
        ci(&col(&|d| d.raw_std.0), 4),
        ci(&col(&|d| d.raw_std.1), 4)
    );
    t
}

pub(crate) type ExtraTable = [(String, crate::plot::ByLength)];

fn extrapolation_table(extra: &ExtraTable) -> String {
    let lens: std::collections::BTreeSet<usize> = extra.iter().flat_map(|(_, at)| at.keys().copied()).collect();
    let mut t = String::from("Test split, one attention window of L tokens per sample; bits per byte (nats/token below), mean ± 95% CI over seeds.\n\n| branch |");
    for l in &lens {
        let _ = write!(t, " L = {l} |");
    }
    t += &format!("\n|---|{}\n", "---|".repeat(lens.len()));
    for (name, at) in extra {
        let _ = write!(t, "| {name} |");
        for l in &lens {
            let cell = at.get(l).map_or("–".into(), |(loss, bpb)| format!("{}<br>{}", ci(bpb, 4), ci(loss, 3)));
            let _ = write!(t, " {cell} |");
        }
        t += "\n";
    }
    t
}

#[cfg(test)]
mod tests;
