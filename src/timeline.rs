//! `baka bench --trace FILE`: what the GPU did during a few training steps, from the activities
//! CUPTI recorded ([`crate::kernels::trace`]). [`summary`] goes into the bench's JSON line: per
//! step the span from the first start to the last end, the time something ran (`busy_ms`), the
//! time nothing did (`idle_ms`, by gap length), the largest gaps with their neighbours, and the
//! kernels that took the most time. [`chrome_trace`] is the whole timeline in the Trace Event
//! format that Perfetto (ui.perfetto.dev) and chrome://tracing open.

use crate::kernels::trace::{Activity, ActivityKind};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Kernels named in the summary, most time first.
const TOP: usize = 15;
/// Gap lengths the idle time is split by (ns): below 5 µs, 5–20, 20–100, 100 and over.
const GAP_EDGES_NS: [u64; 3] = [5_000, 20_000, 100_000];

fn ms(ns: u64, steps: usize) -> f64 {
    // per step in ns first, then whole µs: exact ties (1.5 µs) round away from zero
    (ns as f64 / steps as f64 / 1e3).round() / 1e3
}

/// Per step (divided by `steps`) figures of a timeline of `steps` steps; `acts` in start order.
pub fn summary(acts: &[Activity], steps: usize, dropped: usize) -> Value {
    let steps = steps.max(1);
    let (Some(first), Some(last)) = (acts.first(), acts.iter().map(|a| a.end_ns).max()) else {
        return json!({ "steps": steps, "activities": 0, "dropped": dropped });
    };
    let span = last.saturating_sub(first.start_ns);
    // the union of the spans, and the gaps between its pieces
    let (mut busy, mut end, mut end_name) = (0u64, first.start_ns, "");
    let mut gaps: Vec<(u64, &str, &str)> = Vec::new();
    for a in acts {
        if a.start_ns > end {
            gaps.push((a.start_ns - end, end_name, &a.name));
            end = a.start_ns;
        }
        if a.end_ns > end {
            busy += a.end_ns - end;
            end = a.end_ns;
            end_name = &a.name;
        }
    }
    let mut buckets = [(0usize, 0u64); GAP_EDGES_NS.len() + 1];
    for g in &gaps {
        let b = GAP_EDGES_NS.iter().take_while(|&&e| g.0 >= e).count();
        buckets[b].0 += 1;
        buckets[b].1 += g.0;
    }
    let labels = ["under_5us", "5_to_20us", "20_to_100us", "100us_and_over"];
    let idle: serde_json::Map<String, Value> =
        labels.iter().zip(buckets).map(|(l, (n, t))| (l.to_string(), json!({ "gaps": (n as f64 / steps as f64 * 100.0).round() / 100.0, "ms": ms(t, steps) }))).collect();
    gaps.sort_by_key(|g| std::cmp::Reverse(g.0));
    let largest: Vec<Value> = gaps.iter().take(5).map(|g| json!({ "us": (g.0 as f64 / 10.0).round() / 100.0, "after": short(g.1), "before": short(g.2) })).collect();
    // time per name
    let mut by: HashMap<&str, (u64, usize)> = HashMap::new();
    for a in acts {
        let e = by.entry(&a.name).or_insert((0, 0));
        e.0 += a.end_ns.saturating_sub(a.start_ns);
        e.1 += 1;
    }
    let mut names: Vec<_> = by.into_iter().collect();
    names.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let total: u64 = names.iter().map(|n| n.1 .0).sum();
    let top: Vec<Value> = names
        .iter()
        .take(TOP)
        .map(|(n, (t, c))| json!({ "name": short(n), "ms": ms(*t, steps), "launches": *c as f64 / steps as f64, "share": (*t as f64 / total.max(1) as f64 * 1e3).round() / 1e3 }))
        .collect();
    let streams: std::collections::BTreeSet<u32> = acts.iter().map(|a| a.stream).collect();
    let count = |k: ActivityKind| acts.iter().filter(|a| a.kind == k).count() as f64 / steps as f64;
    json!({
        "steps": steps,
        "span_ms": ms(span, steps),
        "busy_ms": ms(busy, steps),
        "idle_ms": ms(span - busy, steps),
        "kernels": count(ActivityKind::Kernel),
        "memcpys": count(ActivityKind::Memcpy),
        "memsets": count(ActivityKind::Memset),
        "streams": streams.len(),
        "idle_by_gap": idle,
        "largest_gaps": largest,
        "top": top,
        "dropped": dropped,
    })
}

/// A name cut to 80 characters (cuBLAS's kernel names run to 150).
fn short(name: &str) -> String {
    match name.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}

/// The timeline as Trace Event JSON: one complete event ("X") per activity, µs from the first
/// start, a row per CUDA stream.
pub fn chrome_trace(acts: &[Activity]) -> Value {
    let t0 = acts.first().map_or(0, |a| a.start_ns);
    let events: Vec<Value> = acts
        .iter()
        .map(|a| {
            let cat = match a.kind {
                ActivityKind::Kernel => "kernel",
                ActivityKind::Memcpy => "memcpy",
                ActivityKind::Memset => "memset",
            };
            json!({
                "name": a.name, "cat": cat, "ph": "X", "pid": 0, "tid": a.stream,
                "ts": a.start_ns.saturating_sub(t0) as f64 / 1e3, "dur": a.end_ns.saturating_sub(a.start_ns) as f64 / 1e3,
                "args": if a.bytes > 0 { json!({ "bytes": a.bytes }) } else { json!({}) },
            })
        })
        .collect();
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str, start_us: u64, end_us: u64) -> Activity {
        Activity { kind: ActivityKind::Kernel, name: name.into(), start_ns: start_us * 1000, end_ns: end_us * 1000, stream: 7, bytes: 0 }
    }

    #[test]
    fn busy_idle_and_gaps_of_a_timeline() {
        // two steps: a 0–100, b 102–150 (gap 2), c 140–160 overlapping b, d 400–500 (gap 240),
        // a 530–600 (gap 30), b 610–700 (gap 10)
        let acts = [k("a", 0, 100), k("b", 102, 150), k("c", 140, 160), k("d", 400, 500), k("a", 530, 600), k("b", 610, 700)];
        let s = summary(&acts, 2, 0);
        assert_eq!(s["span_ms"], 0.35); // 700 µs / 2
                                        // busy: 100 + 58 + 100 + 70 + 90 = 418 µs, idle 282 µs
        assert_eq!(s["busy_ms"], 0.209);
        assert_eq!(s["idle_ms"], 0.141);
        assert_eq!(s["kernels"], 3.0);
        let g = &s["idle_by_gap"];
        assert_eq!(g["under_5us"]["gaps"], 0.5);
        assert_eq!(g["under_5us"]["ms"], 0.001);
        assert_eq!(g["5_to_20us"]["ms"], 0.005);
        assert_eq!(g["20_to_100us"]["ms"], 0.015);
        assert_eq!(g["100us_and_over"]["ms"], 0.12);
        let big = &s["largest_gaps"][0];
        // the gap after c (the last to end before it), before d
        assert_eq!((big["us"].as_f64(), big["after"].as_str(), big["before"].as_str()), (Some(240.0), Some("c"), Some("d")));
        let top = s["top"].as_array().unwrap();
        assert_eq!(top[0]["name"], "a"); // 170 µs, then b 138, d 100, c 20
        assert_eq!(top[0]["ms"], 0.085);
        assert_eq!(top[0]["launches"], 1.0);
        assert_eq!(top.iter().map(|t| t["name"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b", "d", "c"]);
    }

    #[test]
    fn an_empty_timeline_says_so() {
        let s = summary(&[], 3, 4);
        assert_eq!((s["activities"].as_u64(), s["dropped"].as_u64()), (Some(0), Some(4)));
    }

    #[test]
    fn chrome_trace_holds_every_activity_from_zero() {
        let mut copy = k("memcpy HtoD", 5, 9);
        (copy.kind, copy.bytes) = (ActivityKind::Memcpy, 4096);
        let t = chrome_trace(&[k("a", 2, 4), copy]);
        let e = t["traceEvents"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0]["ts"].as_f64(), e[0]["dur"].as_f64(), e[0]["tid"].as_u64()), (Some(0.0), Some(2.0), Some(7)));
        assert_eq!((e[1]["cat"].as_str(), e[1]["ts"].as_f64(), e[1]["args"]["bytes"].as_u64()), (Some("memcpy"), Some(3.0), Some(4096)));
    }

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(short(&long).chars().count(), 81);
        assert_eq!(short("flash_fwd_hd64"), "flash_fwd_hd64");
    }
}
