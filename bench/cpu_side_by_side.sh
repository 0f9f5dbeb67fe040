#!/usr/bin/env bash
# CPU speed side by side: `baka bench` and PyTorch (bench/torch_reference.py --device cpu, eager
# and torch.compile) train the same small model on this machine's CPU, alternating ROUNDS times so
# both see the same machine state. Prints every JSON line to OUT and the median tok/s of each
# system with its ratio to baka's.
#
# Usage: bench/cpu_side_by_side.sh [BAKA] [ROUNDS] [OUT]
#   BAKA    the baka binary (default target/release/baka)
#   ROUNDS  alternations (default 3)
#   OUT     JSON lines (default: a temporary file)
# Environment: BATCH (8), VOCAB (8192), STEPS (20), PYTHON (python3 with torch).
# The model: d_model 128, 2 layers, 4 heads, d_ff 512, window 128, f32, AdamW, fwd + bwd + step.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BAKA="${1:-target/release/baka}"
ROUNDS="${2:-3}"
OUT="${3:-$(mktemp)}"
PYTHON="${PYTHON:-python3}"
BATCH="${BATCH:-8}"
VOCAB="${VOCAB:-8192}"
STEPS="${STEPS:-20}"
: >"$OUT"

shape=(--set model.d_model=128 --set model.n_layers=2 --set model.n_heads=4 --set model.d_ff=512
  --set model.window=128 --set "model.vocab=$VOCAB" --set "data.vocab_size=$VOCAB")
torch_shape=(--batch "$BATCH" --seq 128 --vocab "$VOCAB" --d-model 128 --layers 2 --heads 4 --d-ff 512)

for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS" >&2
  "$BAKA" bench --branch 001_pristine --device cpu --batch "$BATCH" --steps "$STEPS" "${shape[@]}" | grep '^{' >>"$OUT"
  "$PYTHON" "$HERE/torch_reference.py" --device cpu --dtype f32 --mode both --steps "$STEPS" --warmup 3 "${torch_shape[@]}" | grep '^{' >>"$OUT"
done

"$PYTHON" - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r.get("system", "?"), []).append(r["tok_s"])
baka = [v for k, v in by.items() if not k.startswith("torch")]
ref = statistics.median(baka[0]) if baka else None
for system, v in by.items():
    med = statistics.median(v)
    ratio = f"  baka / this = {ref / med:.2f}x" if ref and system.startswith("torch") else ""
    print(f"{system:14} tok/s median {med:8.0f}  (runs: {', '.join(f'{x:.0f}' for x in v)}){ratio}")
EOF
echo "JSON lines: $OUT" >&2
