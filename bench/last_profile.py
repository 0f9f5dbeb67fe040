"""Summarises the last per-kernel table that cubecl's profiler (CUBECL_DEBUG_OPTION=profile) wrote to a log.

cubecl prints, per device sync, every kernel it ran (`| duration | name |`, in order) and then a
table `| Name | Duration | Num Computed | Ratio |`, slowest first, ending in a `| Total ...` row. The
last table is the last timed steps. Kernel names are long generic signatures; this keeps the
kernel's own name and, for matmuls, the algorithm family, so one row fits a line."""
import re
import sys

UNITS = {"s": 1e3, "ms": 1.0, "µs": 1e-3, "us": 1e-3, "ns": 1e-6}


def short(name: str) -> str:
    parts = [p.strip() for p in name.split("|") if p.strip()]
    fam = [p for p in parts if p.endswith("Family") or "Matmul" in p and p != parts[0]]
    return parts[0] + (f" [{fam[0]}]" if parts[0] == "MatmulEntry" and fam else "") + \
        (f" {parts[1]}" if parts[0] == "MatmulEntry" and len(parts) > 1 else (f" {parts[1]}" if len(parts) > 2 else ""))


def main(path: str) -> None:
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    tables, cur = [], None
    for line in lines:
        if line.startswith("| Name"):
            cur = []
        elif cur is not None and line.startswith("|") and not line.startswith("|⎼"):
            if line.startswith("| Total"):
                tables.append((cur, line))
                cur = None
            else:
                cur.append(line)
    if not tables:
        sys.exit(f"{path}: no profile table found")
    rows, total = tables[-1]
    agg = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        i = next(i for i, c in enumerate(cells) if re.fullmatch(r"[\d.]+(s|ms|µs|us|ns)", c))
        ms = float(re.match(r"[\d.]+", cells[i]).group()) * UNITS[re.sub(r"[\d.]", "", cells[i])]
        key = short("|".join(cells[:i]))
        a = agg.setdefault(key, [0.0, 0])
        a[0] += ms
        a[1] += int(cells[i + 1])
    tot = sum(a[0] for a in agg.values())
    n = sum(a[1] for a in agg.values())
    print(f"{len(tables)} tables; the last: {tot:.1f} ms in {n} kernel launches")
    print(f"{'ms':>9} {'share':>6} {'launches':>8}  kernel")
    for k, (ms, c) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        print(f"{ms:9.2f} {ms / tot:6.1%} {c:8d}  {k}")


if __name__ == "__main__":
    main(sys.argv[1])
