#!/usr/bin/env python3
"""Where a kernel's warps wait, instruction by instruction.

Reads Nsight Compute's source page as CSV (`ncu -i REPORT --page source --print-source sass --csv`,
from a report profiled with `--set full`; `bench/profile_ncu.sh` writes it with FLASH_METRICS=1)
and prints per kernel:
  - the warp stall samples by reason (share of all samples),
  - the instruction mix (executed warp instructions by opcode, share),
  - the code between block barriers (`BAR.SYNC`) as segments: share of the kernel's samples,
    instructions and tensor-core instructions (`HMMA`/`HGMMA`) executed, the segment's main stall
    reasons (as shares of the kernel's samples),
  - the instructions with the most samples and their main stall reason.
Usage: ncu_sass.py FILE [--top N] [--kernel REGEX] [--json]
"""
import argparse
import csv
import json
import re
import sys
from collections import Counter

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def kernels(path):
    """[(name, rows as dicts)], one per kernel; ncu writes some pages twice, identical copies are dropped."""
    out, name, header, rows = [], None, None, []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if row and row[0] == "Kernel Name":
                if name is not None:
                    out.append((name, rows))
                name, header, rows = row[1], None, []
            elif name is not None and header is None:
                header = row
            elif name is not None and len(row) == len(header):
                rows.append(dict(zip(header, row)))
    if name is not None:
        out.append((name, rows))
    unique = []
    for k in out:
        if k not in unique:
            unique.append(k)
    return unique


def num(row, key):
    try:
        return float(row.get(key) or 0)
    except ValueError:
        return 0.0


def opcode(source):
    """The instruction's opcode without predicate or modifiers: `@!P0 BRA 0x..` -> `BRA`."""
    words = re.sub(r"^@!?U?P\w+\s+", "", source.strip()).split()
    return words[0].split(".")[0] if words else ""


def stall_keys(rows):
    keys = rows[0].keys() if rows else []
    return [k for k in keys if k.startswith("stall_") and "Not Issued" not in k]


def shares(counter, total, n):
    return [[k, round(v / total, 3)] for k, v in counter.most_common(n)] if total else []


def summarise(name, rows, top):
    stalls = stall_keys(rows)
    samples = sum(num(r, SAMPLES) for r in rows)
    executed = sum(num(r, EXECUTED) for r in rows)
    by_reason = Counter({k[len("stall_"):]: sum(num(r, k) for r in rows) for k in stalls})
    mix = Counter()
    for r in rows:
        mix[opcode(r["Source"])] += num(r, EXECUTED)
    cuts = [0] + [i + 1 for i, r in enumerate(rows) if opcode(r["Source"]) == "BAR"] + [len(rows)]
    segments = []
    for a, b in zip(cuts, cuts[1:]):
        seg = rows[a:b]
        if not seg:
            continue
        reasons = Counter({k[len("stall_"):]: sum(num(r, k) for r in seg) for k in stalls})
        segments.append(
            {
                "instructions": [a, b],
                "samples": round(sum(num(r, SAMPLES) for r in seg) / samples, 3) if samples else 0.0,
                "executed": sum(num(r, EXECUTED) for r in seg),
                "tensor": sum(num(r, EXECUTED) for r in seg if opcode(r["Source"]) in ("HMMA", "HGMMA")),
                "stalls": shares(reasons, samples, 3),
            }
        )
    hottest = []
    for i in sorted(range(len(rows)), key=lambda i: -num(rows[i], SAMPLES))[:top]:
        r = rows[i]
        reason = max(stalls, key=lambda k: num(r, k), default="stall_")
        if not num(r, reason):
            reason = "stall_–"  # no samples on this instruction
        hottest.append(
            {
                "index": i,
                "samples": round(num(r, SAMPLES) / samples, 4) if samples else 0.0,
                "executed": num(r, EXECUTED),
                "stall": reason[len("stall_"):],
                "source": r["Source"].strip(),
            }
        )
    return {
        "kernel": name,
        "instructions": len(rows),
        "executed": executed,
        "samples": samples,
        "stalls": shares(by_reason, samples, 10),
        "mix": shares(mix, executed, 12),
        "segments": segments,
        "hottest": hottest,
    }


def show(s):
    print(f"== {s['kernel']}: {s['instructions']} instructions, {s['executed']:.0f} executed (warp), {s['samples']:.0f} stall samples")
    print("  stalls: " + ", ".join(f"{k} {v:.3f}" for k, v in s["stalls"]))
    print("  mix:    " + ", ".join(f"{k} {v:.3f}" for k, v in s["mix"]))
    print("  between barriers (instructions, share of the kernel's samples, executed, tensor-core, main stalls as shares of the kernel's samples):")
    for g in s["segments"]:
        a, b = g["instructions"]
        reasons = ", ".join(f"{k} {v:.3f}" for k, v in g["stalls"])
        print(f"    {a:5d}-{b:<5d} {g['samples']:6.3f} {g['executed']:12.0f} {g['tensor']:10.0f}  {reasons}")
    print("  hottest (index, share of samples, executed, main stall, instruction):")
    for h in s["hottest"]:
        print(f"    {h['index']:5d} {h['samples']:6.4f} {h['executed']:10.0f} {h['stall']:<18} {h['source'][:70]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", help="ncu --page source --print-source sass --csv output")
    p.add_argument("--top", type=int, default=15, help="hottest instructions per kernel (default 15)")
    p.add_argument("--kernel", default="", help="only kernels whose name matches this regular expression")
    p.add_argument("--json", action="store_true", help="one JSON line per kernel instead of the text")
    a = p.parse_args()
    try:
        pages = kernels(a.file)
    except OSError as e:
        sys.exit(f"ncu_sass.py: {a.file}: {e.strerror}")
    found = [(n, r) for n, r in pages if re.search(a.kernel, n)]
    if not found:
        sys.exit(f"ncu_sass.py: {a.file}: no kernel's source page{' matches ' + repr(a.kernel) if a.kernel else ''} (expected `ncu --page source --print-source sass --csv` output)")
    for name, rows in found:
        s = summarise(name, rows, a.top)
        print(json.dumps(s)) if a.json else show(s)


if __name__ == "__main__":
    main()
