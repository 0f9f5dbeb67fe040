#!/usr/bin/env bash
# Data-parallel training on one machine's GPUs: correctness, then throughput and scaling
# efficiency against PyTorch DDP + torch.compile, for 001_pristine bf16 (the 190M shape).
#
# Usage: bench/multi_gpu.sh BIN OUT_DIR [N ...]
#   BIN      the baka binary (a `cargo build --release --features cuda` build)
#   OUT_DIR  writes multi_gpu.jsonl (one JSON line per run) and the training runs' directories
#   N ...    GPU counts to bench (default: 1 2, and every power of two up to the GPUs present)
# Environment:
#   BATCH    sequences per GPU and step (default 32): N GPUs train a global batch of N · BATCH
#   STEPS    timed steps per bench run (default 50)
#   PYTHON   python3 with torch, for torchrun and the comparison (default python3)
#   TORCH=0  skips the PyTorch DDP runs
# Steps:
#   1. `BIN train --gpus 2` and `--gpus 1` on a small model (bf16, same global batch, 60 steps):
#      their loss curves must agree within bf16 tolerance (max |Δloss| printed); the ranks compare
#      their weights' checksums at every checkpoint (a run stops if they differ).
#   2. `BIN bench --gpus N` for each N, then `torchrun --nproc_per_node N bench/torch_reference.py
#      --mode compile`, both at a global batch of N · BATCH; prints tok/s and the scaling efficiency
#      tok/s(N) / (N · tok/s(1)).
# NCCL's NVLink multicast stays off (NCCL_NVLS_ENABLE=0) in every launch.
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
BIN="$1"
OUT_DIR="$2"
shift 2
BATCH="${BATCH:-32}"
STEPS="${STEPS:-50}"
PYTHON="${PYTHON:-python3}"
export NCCL_NVLS_ENABLE=0
# libnccl from PyTorch's pip wheel (nvidia-nccl-*), if the loader path lacks one
NCCL_LIB="$("$PYTHON" -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)"
if [ -n "$NCCL_LIB" ] && [ -d "$NCCL_LIB" ]; then export LD_LIBRARY_PATH="$NCCL_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT_DIR"
JSONL="$OUT_DIR/multi_gpu.jsonl"
touch "$JSONL"
GPUS_PRESENT="$(nvidia-smi -L 2>/dev/null | wc -l)"
if [ $# -gt 0 ]; then
  COUNTS="$*"
else
  COUNTS="1"
  n=2
  while [ "$n" -le "$GPUS_PRESENT" ]; do COUNTS="$COUNTS $n"; n=$((n * 2)); done
fi
echo "GPUs present: $GPUS_PRESENT; benching N in: $COUNTS" >&2

# 1. the same run on 2 GPUs and on 1
if [ "$GPUS_PRESENT" -ge 2 ]; then
  SMALL=(--branch 001_pristine --steps 60 --device cuda --set train.dtype=bf16 --set model.d_model=256 --set model.n_layers=4
    --set model.n_heads=4 --set model.d_ff=1024 --set model.window=256 --set train.batch=8 --set train.n_windows=1
    --set train.eval_every=20 --set train.checkpoint_every=20)
  rm -rf "$OUT_DIR/run-g1" "$OUT_DIR/run-g2"
  "$BIN" train "${SMALL[@]}" --gpus 1 --out "$OUT_DIR/run-g1" || exit 1
  "$BIN" train "${SMALL[@]}" --gpus 2 --out "$OUT_DIR/run-g2" || exit 1
  "$PYTHON" - "$OUT_DIR/run-g1/metrics.csv" "$OUT_DIR/run-g2/metrics.csv" <<'EOF' || exit 1
import csv, sys
rows = [[r for r in csv.DictReader(open(p)) if r["split"] in ("train", "val")] for p in sys.argv[1:]]
assert len(rows[0]) == len(rows[1]), (len(rows[0]), len(rows[1]))
d = max(abs(float(a["loss"]) - float(b["loss"])) for a, b in zip(*rows))
print(f"2 GPUs vs 1: {len(rows[0])} rows, max |loss difference| {d:.4f} (bf16)")
sys.exit(0 if d < 0.05 else 1)
EOF
fi

# 2. throughput
for n in $COUNTS; do
  line="$("$BIN" bench --branch 001_pristine --device cuda --set train.dtype=bf16 --set model.vocab=50304 \
    --batch "$((BATCH * n))" --steps "$STEPS" --gpus "$n" | tail -1)"
  [ -n "$line" ] && echo "$line" | tee -a "$JSONL"
  if [ "${TORCH:-1}" != 0 ]; then
    if [ "$n" -eq 1 ]; then
      "$PYTHON" "$HERE/torch_reference.py" --branch 001_pristine --mode compile --batch "$BATCH" --steps "$STEPS" | tail -1 | tee -a "$JSONL"
    else
      "$PYTHON" -m torch.distributed.run --nproc_per_node "$n" "$HERE/torch_reference.py" --branch 001_pristine \
        --mode compile --batch "$((BATCH * n))" --steps "$STEPS" | tail -1 | tee -a "$JSONL"
    fi
  fi
done
"$PYTHON" - "$JSONL" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
for system in sorted({r["system"].replace("-ddp", "") for r in rows}):
    mine = [r for r in rows if r["system"].replace("-ddp", "") == system]
    one = next((r["tok_s"] for r in mine if r.get("gpus", 1) == 1), None)
    for r in mine:
        n = r.get("gpus", 1)
        eff = f"{r['tok_s'] / (n * one):.3f}" if one else "-"
        print(f"{system:14} gpus {n}: {r['tok_s']:>12,.0f} tok/s  {r['ms_step']:8.2f} ms/step  efficiency {eff}")
EOF
