"""Prints the last per-kernel table that cubecl's profiler (CUBECL_DEBUG_OPTION=profile) wrote to a log.

cubecl prints one table per device sync: `| Name | Duration | Num Computed | Ratio |` rows between
rule lines, slowest first, then a `| Total ...` row. The last table is the last timed step."""
import sys

lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
tables, cur = [], None
for line in lines:
    if line.startswith("| Name"):
        cur = [line]
    elif cur is not None and line.startswith("|"):
        cur.append(line)
        if line.startswith("| Total"):
            tables.append(cur)
            cur = None
if not tables:
    sys.exit(f"{sys.argv[1]}: no profile table found")
print(f"{len(tables)} tables; the last:")
print("\n".join(line[:200] for line in tables[-1]))
