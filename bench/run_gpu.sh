#!/usr/bin/env bash
# Runs `baka bench` and the PyTorch reference (eager + torch.compile) on this GPU for each branch
# in $BRANCHES, collects their JSON lines in $OUT_DIR/bench.jsonl and prints a comparison table
# (bench/compare.py), which pairs the rows of each branch.
#
# Environment (all optional):
#   BAKA=./baka        the baka binary
#   PYTHON=python3     a python with CUDA torch
#   BRANCHES=001_pristine  space-separated branches, e.g. "001_pristine 002_nope 003_xpos 004_linspace 005_alibi"
#   BATCH=32 STEPS=20  passed to both sides
#   OUT_DIR=.          where bench.jsonl goes
#   TORCH_ARGS=""      extra flags for torch_reference.py (e.g. "--warmup 10")
#   BAKA_ARGS          flags for baka bench (default: CUDA, bf16, the reference's 50304 vocab)
# Exits non-zero if any run failed, after printing whatever is available.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BAKA="${BAKA:-./baka}"
PYTHON="${PYTHON:-python3}"
BRANCHES="${BRANCHES:-001_pristine}"
BATCH="${BATCH:-32}"
STEPS="${STEPS:-20}"
BAKA_ARGS="${BAKA_ARGS:---device cuda --set train.dtype=bf16 --set model.vocab=50304}"
OUT_DIR="${OUT_DIR:-.}"
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/bench.jsonl"
: >"$OUT"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
status=0

# Keep only JSON object lines of a run's stdout (its logs go to stderr anyway).
collect() { grep '^[[:space:]]*{' "$tmp" >>"$OUT" || echo "run_gpu.sh: $1 printed no JSON line" >&2; }

for B in $BRANCHES; do
  echo "== $BAKA bench --branch $B --batch $BATCH --steps $STEPS $BAKA_ARGS" >&2
  # shellcheck disable=SC2086  # BAKA_ARGS is a list of flags
  if "$BAKA" bench --branch "$B" --batch "$BATCH" --steps "$STEPS" $BAKA_ARGS >"$tmp"; then :; else
    echo "run_gpu.sh: baka bench --branch $B failed (exit $?)" >&2
    status=1
  fi
  collect "baka bench --branch $B"

  echo "== $PYTHON $HERE/torch_reference.py --branch $B --mode both --batch $BATCH --steps $STEPS ${TORCH_ARGS:-}" >&2
  # shellcheck disable=SC2086  # TORCH_ARGS is a list of flags
  if "$PYTHON" "$HERE/torch_reference.py" --branch "$B" --mode both --batch "$BATCH" --steps "$STEPS" ${TORCH_ARGS:-} >"$tmp"; then :; else
    echo "run_gpu.sh: torch reference --branch $B failed (exit $?)" >&2
    status=1
  fi
  collect "torch reference --branch $B"
done

echo "== $OUT" >&2
"$PYTHON" "$HERE/compare.py" "$OUT"
exit "$status"
