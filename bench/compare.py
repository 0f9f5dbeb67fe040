#!/usr/bin/env python3
"""Side-by-side table of `baka bench` and the PyTorch reference, from a JSONL file.

Why: `run_gpu.sh` collects one JSON line per system into bench.jsonl; this turns them into a
markdown table plus the ratios a reader wants (baka vs torch eager / torch.compile). Usable
alone: `python3 bench/compare.py bench.jsonl` (or `-` for stdin). Needs only the standard library.

Rows whose `system` starts with "torch-" are the reference; any other system (e.g. "baka-cuda")
is a baka row. Memory is shown both ways: "reserved" is what the allocator holds from the GPU
(baka: `peak_mem_gib`, cubecl's pool; torch: `peak_reserved_gib`, its caching allocator) and
"allocated" what live tensors use (baka: `peak_in_use_gib`, sampled; torch: `peak_mem_gib`,
`max_memory_allocated`). Keys other than the ones shown are ignored. Every row is shown; ratios pair each baka
shape (system, branch, batch, seq, dtype, params; the last row of each) with the torch row of the same
branch and shape, or, where torch has none, with that torch system's last row of the same branch and a
warning; never across branches. A row without "branch" counts as 001_pristine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_BRANCH = "001_pristine"  # rows from before the "branch" key
COLUMNS = ["system", "branch", "dtype", "batch", "seq", "params", "tok/s", "ms/step", "MFU", "reserved", "allocated"]


def load(path: str) -> list[dict]:
    """JSON object lines of `path`; other lines (logs, blanks) are skipped with a note."""
    if path == "-":
        return parse(sys.stdin.read().splitlines(), "<stdin>")
    with open(path, encoding="utf-8") as f:
        return parse(f.read().splitlines(), path)


def parse(lines: list[str], path: str) -> list[dict]:
    """Rows with a "system" key; `path` only names the source in notes."""
    rows = []
    for no, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            print(f"note: {path}:{no}: not JSON, skipped", file=sys.stderr)
            continue
        if isinstance(row, dict) and "system" in row:
            rows.append(row)
        else:
            print(f'note: {path}:{no}: no "system" key, skipped', file=sys.stderr)
    return rows


def num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt(v, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    x = num(v)
    return "n/a" if x is None else f"{x * scale:{spec}}{suffix}"


def branch(r: dict) -> str:
    """The row's branch: its file stem if baka was given a path; 001_pristine if absent."""
    b = r.get("branch")
    if not b:
        return DEFAULT_BRANCH
    b = os.path.basename(str(b))
    return b[: -len(".toml")] if b.endswith(".toml") else b


def is_torch(r: dict) -> bool:
    return str(r.get("system")).startswith("torch-")


def reserved(r: dict):
    """Peak GiB the allocator held (older rows may lack torch's)."""
    return r.get("peak_reserved_gib") if is_torch(r) else r.get("peak_mem_gib")


def allocated(r: dict):
    """Peak GiB of live tensors (baka's is sampled during a few steps; older rows lack it)."""
    return r.get("peak_mem_gib") if is_torch(r) else r.get("peak_in_use_gib")


def cells(r: dict) -> list[str]:
    params = num(r.get("params"))
    return [
        str(r.get("system")),
        branch(r),
        str(r.get("dtype", "n/a")),
        str(r.get("batch", "n/a")),
        str(r.get("seq", "n/a")),
        "n/a" if params is None else f"{params / 1e6:.1f}M",
        fmt(r.get("tok_s"), ",.0f"),
        fmt(r.get("ms_step"), ".2f"),
        fmt(r.get("mfu"), ".2f", 100, "%"),
        fmt(reserved(r), ".2f", suffix=" GiB"),
        fmt(allocated(r), ".2f", suffix=" GiB"),
    ]


def table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cs: "| " + " | ".join(c.ljust(w) for c, w in zip(cs, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def ratio(a, b) -> str:
    a, b = num(a), num(b)
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def report(rows: list[dict]) -> tuple[str, bool]:
    """Markdown text, and whether both a baka row and at least one torch row were present."""
    out = []
    if not rows:
        return "no benchmark rows found", False
    out.append(table(COLUMNS, [cells(r) for r in rows]))
    gpus = sorted({str(r["gpu"]) for r in rows if r.get("gpu")})
    if gpus:
        out.append(
            "\nGPU: " + ", ".join(gpus) + ("  (WARNING: rows come from different GPUs)" if len(gpus) > 1 else "")
        )

    shape = lambda r: tuple(r.get(k) for k in ("batch", "seq", "dtype", "params"))
    last = {(r["system"], branch(r), shape(r)): r for r in rows}
    branches = list(dict.fromkeys(branch(r) for r in rows))  # in order of first appearance
    label = lambda br: f" for {br}" if len(branches) > 1 else ""
    ok = True
    body, warnings, missing = [], [], []
    for br in branches:
        baka = [r for (s, b, _), r in last.items() if b == br and not str(s).startswith("torch-")]
        # each torch system's last row of this branch: the fallback partner
        torch_rows = {s: r for (s, b, _), r in last.items() if b == br and str(s).startswith("torch-")}
        if not baka:
            missing.append(f"baka line missing{label(br)} (baka bench failed or printed no JSON): no ratios.")
        for name in ("torch-eager", "torch-compile"):
            if name not in torch_rows:
                missing.append(f"{name} line missing{label(br)}.")
        for b in baka:
            for name, t in torch_rows.items():
                t = last.get((name, br, shape(b)), t)
                body.append(
                    [
                        br,
                        f"{b['system']} (batch {b.get('batch')}) / {name}",
                        ratio(b.get("tok_s"), t.get("tok_s")),
                        ratio(reserved(b), reserved(t)),
                        ratio(allocated(b), allocated(t)),
                    ]
                )
                diff = [k for k in ("batch", "seq", "params", "dtype") if b.get(k) != t.get(k)]
                if diff:
                    warnings.append(
                        f"WARNING: {br}: {b['system']} and {name} differ in "
                        + ", ".join(f"{k} ({b.get(k)} vs {t.get(k)})" for k in diff)
                    )
    if missing:
        out.append("\n" + "\n".join(missing))
        ok = False
    if body:
        out.append("\nRatios (tok/s > 1: baka faster; memory > 1: baka uses more), within each branch:\n")
        out.append(table(["branch", "ratio", "tok/s", "reserved", "allocated"], body))
        out.extend(["", *warnings] if warnings else [])
    return "\n".join(out), ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Markdown table + ratios from a bench JSONL file.")
    p.add_argument("jsonl", nargs="?", default="bench.jsonl", help="file of JSON lines, or - for stdin")
    p.add_argument("--strict", action="store_true", help="exit 1 when the baka or a torch line is missing")
    args = p.parse_args(argv)
    text, ok = report(load(args.jsonl))
    print(text)
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
