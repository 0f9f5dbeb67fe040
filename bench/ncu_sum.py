#!/usr/bin/env python3
"""Time per kernel name and training step from Nsight Compute CSVs (bench/profile_ncu.sh), one column
per CSV, slowest first, with the total: where the GPU's time goes, and what changed between runs.

    python3 bench/ncu_sum.py [--steps N] [--top 40] A.csv [B.csv ...]
"""
import argparse, collections, csv, re, sys


def load(path):
    """{kernel name: total microseconds} of one `ncu --csv --metrics gpu__time_duration.sum` log."""
    out = collections.Counter()
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own ==PROF== lines are not CSV
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}[row["Metric Unit"]]
        out[short(row["Kernel Name"])] += float(row["Metric Value"].replace(",", "")) * scale
    return out


def short(name):
    """A kernel name without its argument list and template arguments, at most 70 characters."""
    name = re.sub(r"\(.*$", "", name)
    name = re.sub(r"<.*>", "<…>", name)
    return name[:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csvs", nargs="+")
    ap.add_argument("--steps", type=int, default=1, help="training steps the run timed (totals are divided by it)")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    runs = [load(p) for p in a.csvs]
    names = sorted(set().union(*runs), key=lambda k: -max(r[k] for r in runs))
    head = "".join(f" | {p.split('/')[-1][:18]:>18}" for p in a.csvs)
    print(f"{'kernel (ms per step)':<70}{head}")
    for k in names[: a.top]:
        print(f"{k:<70}" + "".join(f" | {r[k] / a.steps / 1e3:18.3f}" for r in runs))
    print(f"{'TOTAL':<70}" + "".join(f" | {sum(r.values()) / a.steps / 1e3:18.3f}" for r in runs))
    print(f"{'kernels':<70}" + "".join(f" | {len(r):18d}" for r in runs))


if __name__ == "__main__":
    sys.exit(main())
