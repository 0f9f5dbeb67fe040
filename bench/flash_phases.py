#!/usr/bin/env python3
"""Where the wgmma flash backward's (or forward's) cycles go, from the `PROF` lines of a build with
`bench/flash_bwd_phases.patch` (or `bench/flash_fwd_phases.patch`) applied (each patch's header
says how to make them).

Each line is one warp of one block: `PROF w<warp> kb <block> bh <head> sm <SM> tiles <n> total
<cycles>` and then its phases' cycles summed over the block's tiles (the backward: a block of keys
and its query tiles; the forward: a block of queries and its key tiles). Prints, per warp printed,
each phase's share of the blocks' cycles and its cycles per tile (the prologue `pro` and epilogue
`epi` per block), then per block index the blocks' mean cycles and tiles.

Usage: flash_phases.py PHASES.txt
"""
import sys
from collections import defaultdict

PER_BLOCK = ("pro", "epi")


def fail(msg):
    print(f"flash_phases.py: {msg}", file=sys.stderr)
    sys.exit(2)


def parse(path):
    """The lines as dicts of int: warp `w`, then each `name value` pair in order."""
    try:
        text = open(path).read()
    except OSError as e:
        fail(f"{path}: cannot read it ({e.strerror or e})")
    rows, phases = [], None
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0] != "PROF":
            continue
        if len(words) % 2 or not words[1].startswith("w") or not words[1][1:].isdigit():
            fail(f"{path}:{n}: expected 'PROF w<warp>' and name-value pairs, got {line[:60]!r}")
        pairs = list(zip(words[2::2], words[3::2]))
        try:
            row = {"w": int(words[1][1:]), **{k: int(v) for k, v in pairs}}
        except ValueError:
            fail(f"{path}:{n}: a value is not a whole number: {line[:80]!r}")
        names = [k for k, _ in pairs if k not in ("kb", "bh", "sm", "tiles", "total")]
        if phases is None:
            phases = names
        elif names != phases:
            fail(f"{path}:{n}: phases {names} differ from the first line's {phases}")
        if row.get("tiles", 0) <= 0 or row.get("total", 0) <= 0:
            fail(f"{path}:{n}: needs tiles and total above 0")
        rows.append(row)
    if not rows:
        fail(f"{path}: no PROF lines (the output of a build with bench/flash_bwd_phases.patch or flash_fwd_phases.patch)")
    return rows, phases


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    rows, phases = parse(sys.argv[1])
    for w in sorted({r["w"] for r in rows}):
        mine = [r for r in rows if r["w"] == w]
        tiles, total = sum(r["tiles"] for r in mine), sum(r["total"] for r in mine)
        print(f"warp {w}: {len(mine)} blocks, {tiles} query tiles, {total / len(mine):.0f} cycles per block, {total / tiles:.0f} per tile")
        for p in phases:
            s = sum(r[p] for r in mine)
            per, unit = (s / len(mine), "block") if p in PER_BLOCK else (s / tiles, "tile")
            print(f"  {p:8s} {100 * s / total:5.1f}%  {per:7.0f} per {unit}")
    by_kb = defaultdict(list)
    for r in rows:
        by_kb[r.get("kb", 0)].append(r)
    print("key block  lines  tiles  cycles per block")
    for kb in sorted(by_kb):
        mine = by_kb[kb]
        print(f"{kb:9d}  {len(mine):5d}  {sum(r['tiles'] for r in mine) / len(mine):5.1f}  {sum(r['total'] for r in mine) / len(mine):16.0f}")


if __name__ == "__main__":
    main()
