#!/usr/bin/env python3
"""Where a step's GPU time goes, from the Trace Event JSON of `baka bench --trace FILE`.

Prints per kernel (and `memset`, `memcpy HtoD`, ...) its milliseconds and launches per step, the
slowest first; with a second trace, both side by side and the difference, the largest change first
(the same kernel names in both: an algorithm cuBLAS picked in one run only shows as a change of
two rows). Then the totals: everything, cuBLAS's GEMMs (names with `nvjet`, `gemm`, `cutlass` or
`splitKreduce`) and the rest. With --gaps, the idle time between consecutive activities by what
lies on either side (`memset`, `memcpy`, `gemm`, `kernel`), in µs per step: where the GPU waits.

Usage: trace_table.py TRACE.json [BEFORE.json] [--steps N] [--top N] [--gaps]   (either may be .json.gz)
  --steps N  the steps the trace holds (default 5, what `baka bench --trace` records)
  --top N    rows of the table (default 30)
"""
import argparse
import gzip
import json
import sys
from collections import defaultdict

GEMM = ("nvjet", "gemm", "cutlass", "splitKreduce")
NAME = 48  # characters of a name kept in the table


def fail(msg):
    print(f"trace_table.py: {msg}", file=sys.stderr)
    sys.exit(2)


def events(path):
    """The trace's complete events of the GPU ("X", not the host's "cpu" ones), by start time."""
    try:
        with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
            doc = json.load(f)
    except gzip.BadGzipFile:
        fail(f"{path}: not gzip data; expected the file of `baka bench --trace`, gzipped or not")
    except OSError as e:
        fail(f"{path}: cannot read it ({e.strerror or e})")
    except (ValueError, EOFError) as e:  # JSON and UTF-8 errors are ValueErrors
        fail(f"{path}: not JSON ({e}); expected the file of `baka bench --trace`")
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        fail(f"{path}: no `traceEvents` list; expected the Trace Event JSON of `baka bench --trace`")
    evs = [e for e in doc["traceEvents"] if isinstance(e, dict) and e.get("ph") == "X" and e.get("cat") != "cpu"]
    for e in evs:
        if not all(isinstance(e.get(k), (int, float)) for k in ("ts", "dur")) or not isinstance(e.get("name"), str):
            fail(f"{path}: an event without a name, `ts` or `dur`: {json.dumps(e)[:120]}")
    return sorted(evs, key=lambda e: e["ts"])


def kind(e):
    cat = e.get("cat", "kernel")
    if cat in ("memset", "memcpy"):
        return cat
    return "gemm" if any(g in e["name"] for g in GEMM) else "kernel"


def per_kernel(evs, steps):
    """name → [ms per step, launches per step]."""
    out = defaultdict(lambda: [0.0, 0.0])
    for e in evs:
        row = out[e["name"][:NAME]]
        row[0] += e["dur"] / 1000 / steps
        row[1] += 1 / steps
    return out


def totals(evs, steps):
    gemm = sum(e["dur"] for e in evs if kind(e) == "gemm") / 1000 / steps
    every = sum(e["dur"] for e in evs) / 1000 / steps
    return every, gemm, every - gemm


def gaps(evs, steps):
    """(kind before, kind after) → [µs per step, gaps per step] between consecutive activities."""
    out = defaultdict(lambda: [0.0, 0.0])
    for a, b in zip(evs, evs[1:]):
        gap = b["ts"] - (a["ts"] + a["dur"])
        if gap > 0:
            row = out[(kind(a), kind(b))]
            row[0] += gap / steps
            row[1] += 1 / steps
    return out


def main():
    p = argparse.ArgumentParser(description="GPU time per kernel and step from `baka bench --trace` files.")
    p.add_argument("trace")
    p.add_argument("before", nargs="?")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--gaps", action="store_true")
    a = p.parse_args()
    if a.steps < 1 or a.top < 1:
        fail(f"--steps {a.steps}, --top {a.top}: both must be at least 1")
    now = events(a.trace)
    old = events(a.before) if a.before else None
    k_now = per_kernel(now, a.steps)
    if old is None:
        print(f"{'kernel':<{NAME}} {'ms/step':>9} {'launches':>8}")
        for name, (ms, n) in sorted(k_now.items(), key=lambda kv: -kv[1][0])[: a.top]:
            print(f"{name:<{NAME}} {ms:9.3f} {n:8.1f}")
        every, gemm, rest = totals(now, a.steps)
        print(f"{'all':<{NAME}} {every:9.3f}\n{'cuBLAS GEMMs':<{NAME}} {gemm:9.3f}\n{'the rest':<{NAME}} {rest:9.3f}")
    else:
        k_old = per_kernel(old, a.steps)
        names = set(k_now) | set(k_old)
        diff = lambda n: k_now.get(n, [0, 0])[0] - k_old.get(n, [0, 0])[0]
        print(f"{'kernel':<{NAME}} {'before':>9} {'now':>9} {'change':>9} {'launches':>13}")
        for n in sorted(names, key=lambda n: -abs(diff(n)))[: a.top]:
            (mb, lb), (mn, ln) = k_old.get(n, [0, 0]), k_now.get(n, [0, 0])
            print(f"{n:<{NAME}} {mb:9.3f} {mn:9.3f} {diff(n):+9.3f} {lb:6.1f} {ln:6.1f}")
        for label, i in (("all", 0), ("cuBLAS GEMMs", 1), ("the rest", 2)):
            b, n = totals(old, a.steps)[i], totals(now, a.steps)[i]
            print(f"{label:<{NAME}} {b:9.3f} {n:9.3f} {n - b:+9.3f}")
    if a.gaps:
        print(f"\n{'idle between':<24} {'µs/step':>9} {'gaps':>7} {'mean µs':>8}")
        g = gaps(now, a.steps)
        for (x, y), (us, n) in sorted(g.items(), key=lambda kv: -kv[1][0]):
            print(f"{x + ' → ' + y:<24} {us:9.1f} {n:7.1f} {us / n:8.2f}")
        print(f"{'all':<24} {sum(v[0] for v in g.values()):9.1f} {sum(v[1] for v in g.values()):7.1f}")


if __name__ == "__main__":
    main()
