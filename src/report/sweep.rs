//! A sweep of one setting (an experiment's `[sweep]`): each branch's final loss at every swept
//! value side by side, the best value, and whether it lies at an end of the swept range — then
//! the sweep has not bracketed the optimum and should be widened before its choice is defended.

use super::ci;
use crate::plot::summary::BranchStats;
use std::fmt::Write as _;

/// One branch of a sweep: its name and `(value label, stats)` per swept value.
type Group<'a> = (&'a str, Vec<(&'a str, &'a BranchStats)>);

/// Series named `<branch> <setting>=<value>` (as `baka experiment` names a sweep's runs), grouped
/// by branch, values in swept order (numeric where they parse).
fn grouped(bs: &[BranchStats]) -> Option<Vec<Group<'_>>> {
    let mut out: Vec<Group> = Vec::new();
    for b in bs {
        let (branch, value) = b.name.split_once(' ').filter(|(_, v)| v.contains('='))?;
        match out.iter_mut().find(|(name, _)| *name == branch) {
            Some((_, values)) => values.push((value, b)),
            None => out.push((branch, vec![(value, b)])),
        }
    }
    let number = |label: &str| label.rsplit('=').next().and_then(|v| v.parse::<f64>().ok());
    for (_, values) in &mut out {
        values.sort_by(|a, b| match (number(a.0), number(b.0)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => a.0.cmp(b.0),
        });
    }
    out.iter().any(|(_, values)| values.len() > 1).then_some(out)
}

/// The `## Sweep` section, or None when the runs are not a sweep (no `setting=value` series, or
/// one value per branch).
pub fn section(bs: &[BranchStats]) -> Option<String> {
    let groups = grouped(bs)?;
    let mut labels: Vec<&str> = Vec::new();
    for (_, values) in &groups {
        for (label, _) in values {
            if !labels.contains(label) {
                labels.push(label);
            }
        }
    }
    let kind = bs[0].final_loss().0;
    let mean = |b: &BranchStats| crate::stats::mean_ci95(b.final_loss().1).0;
    let mut md = format!("Final {kind} loss of each branch at each swept value (mean over seeds); the lowest in bold.\n\n| branch |");
    for l in &labels {
        write!(md, " {l} |").unwrap();
    }
    md += "\n|---|";
    md += &"---|".repeat(labels.len());
    md += "\n";
    let mut notes = Vec::new();
    for (branch, values) in &groups {
        let best = values.iter().filter(|(_, b)| mean(b).is_finite()).min_by(|a, b| mean(a.1).total_cmp(&mean(b.1)));
        write!(md, "| {branch} |").unwrap();
        for l in &labels {
            let cell = match values.iter().find(|(label, _)| label == l) {
                Some((label, b)) if best.is_some_and(|(bl, _)| bl == label) => format!("**{}**", ci(b.final_loss().1, 4)),
                Some((_, b)) => ci(b.final_loss().1, 4),
                None => "–".into(),
            };
            write!(md, " {cell} |").unwrap();
        }
        md += "\n";
        if let Some((label, _)) = best {
            let at = values.iter().position(|(l, _)| l == label).unwrap_or(0);
            notes.push(if values.len() < 3 {
                format!("{branch}: lowest at {label}; with {} values the sweep cannot tell whether the optimum lies between or beyond them.", values.len())
            } else if at == 0 || at == values.len() - 1 {
                format!("{branch}: lowest at {label}, an end of the swept range: the optimum may lie beyond it; widen the sweep.")
            } else {
                format!("{branch}: lowest at {label}, inside the swept range ({} to {}).", values[0].0, values[values.len() - 1].0)
            });
        }
    }
    md += "\n";
    for n in notes {
        writeln!(md, "- {n}").unwrap();
    }
    Some(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(name: &str, test: &[f64]) -> BranchStats {
        BranchStats {
            name: name.into(),
            positions: Some("rope".into()),
            memory_tokens: 0,
            seeds: (1..=test.len() as u64).collect(),
            final_val: test.iter().map(|x| x + 0.4).collect(),
            final_test: test.to_vec(),
            test_bpb: Vec::new(),
            roughness: Vec::new(),
            tokens: Vec::new(),
            window_gain: Vec::new(),
            nonfinite: 0,
        }
    }

    #[test]
    fn table_orders_values_numerically_and_says_where_the_best_lies() {
        let bs = [
            stats("001_pristine lr=0.004", &[3.56]),
            stats("001_pristine lr=0.0005", &[3.45]),
            stats("001_pristine lr=0.002", &[3.38]),
            stats("002_nope lr=0.0005", &[3.61, 3.63]),
            stats("002_nope lr=0.002", &[3.66, 3.66]),
            stats("002_nope lr=0.004", &[4.34, 4.30]),
        ];
        let md = section(&bs).expect("a sweep");
        assert!(md.contains("| branch | lr=0.0005 | lr=0.002 | lr=0.004 |"), "{md}");
        assert!(md.contains("| 001_pristine | 3.4500 (n=1) | **3.3800 (n=1)** | 3.5600 (n=1) |"), "{md}");
        assert!(md.contains("001_pristine: lowest at lr=0.002, inside the swept range (lr=0.0005 to lr=0.004)."), "{md}");
        assert!(md.contains("| 002_nope | **3.6200 ± 0.1271** |"), "{md}");
        assert!(md.contains("002_nope: lowest at lr=0.0005, an end of the swept range"), "{md}");
        assert!(md.starts_with("Final test loss"), "{md}");
    }

    #[test]
    fn runs_that_are_not_a_sweep_get_no_section() {
        assert!(section(&[stats("001_pristine", &[3.4]), stats("002_nope", &[3.6])]).is_none());
        assert!(section(&[stats("001_pristine lr=0.001", &[3.4]), stats("002_nope lr=0.001", &[3.6])]).is_none());
        let md = section(&[stats("001_pristine dtype=bf16", &[3.4]), stats("001_pristine dtype=f32", &[3.41])]).unwrap();
        assert!(md.contains("with 2 values the sweep cannot tell"), "{md}");
    }
}
