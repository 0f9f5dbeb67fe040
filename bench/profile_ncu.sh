#!/usr/bin/env bash
# Where the GPU's time goes in a 001_pristine training step (bf16, batch 32 × 512, vocab 50304):
# Nsight Compute serialises and times every kernel launch, cuBLAS's and bakallm's own included,
# and bench/ncu_sum.py prints the time per kernel and step, one column per run, slowest first.
#
# Usage: bench/profile_ncu.sh BIN OUT_DIR
#   BIN      the baka binary (a `cargo build --release --features cuda` build)
#   OUT_DIR  receives ncu-NAME.csv (Nsight Compute's raw CSV) and ncu-NAME.out (the bench's
#            output) per run; with FLASH_METRICS also flash-sections.txt, flash.ncu-rep (the
#            full set), flash-full.out (its bench output) and flash-sass.csv (its source page)
# Environment:
#   RUNS     one run per word (default "default"; "" for none, e.g. with FLASH_METRICS alone):
#            "name" profiles BIN as it is; "name:part,part,..." adds parts, each one of
#              --flag          a `baka bench` flag
#              key.sub=value   a setting, passed as --set (its key has a dot): `train.attention=fused`
#              NAME=value      an environment variable: `BAKA_CUBLASLT=0`
#              bin=PATH        another baka binary for this run
#            e.g. RUNS="new old:bin=./baka-old fused:train.attention=fused"
#   WARMUP   untimed steps before the profiled one (default 1)
#   FLASH_METRICS=1  also Nsight Compute's launch, occupancy, warp-state and compute sections and
#            the warps stalled per issue by reason, of one forward and one backward flash launch
#            (the warm-up step's last forward and first backward), in OUT_DIR/flash-sections.txt;
#            prints the main figures and the stall reasons above 0.05 warps per issue; then the
#            same two launches with `--set full` (OUT_DIR/flash.ncu-rep), their per-instruction
#            source page (OUT_DIR/flash-sass.csv) and bench/ncu_sass.py's summary of it
#   NCU      the Nsight Compute command line tool (default ncu)
#   NCU_S    time limit of one profiled run in seconds (default 240)
#   PYTHON   python3 (default python3)
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
BIN="$1"
OUT_DIR="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/setup_word.sh"
NCU="${NCU:-ncu}"
PYTHON="${PYTHON:-python3}"
WARMUP="${WARMUP:-1}"
mkdir -p "$OUT_DIR"
t0=$(date +%s)
pristine=(--branch 001_pristine --device cuda --set train.dtype=bf16 --set model.vocab=50304 --batch 32)
files=()

for run in ${RUNS-default}; do
  parse_word "$run" "$BIN"
  csv="$OUT_DIR/ncu-$name.csv"
  env ${envs[@]+"${envs[@]}"} timeout "${NCU_S:-240}" "$NCU" --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum --csv --log-file "$csv" \
    "$bin" bench "${pristine[@]}" --warmup "$WARMUP" --steps 1 ${args[@]+"${args[@]}"} >"$OUT_DIR/ncu-$name.out" 2>&1
  echo "== ncu $run rc=$? at $(($(date +%s) - t0)) s" >&2
  tail -2 "$OUT_DIR/ncu-$name.out" >&2
  files+=("$csv")
done

if [ ${#files[@]} -gt 0 ]; then
  # steps run: the warm-up, the timed one, and the three of the in-use memory sampler (src/bench.rs)
  "$PYTHON" "$HERE/ncu_sum.py" --steps $((WARMUP + 1 + 3)) "${files[@]}"
fi

if [ -n "${FLASH_METRICS:-}" ]; then
  sections="$OUT_DIR/flash-sections.txt"
  timeout "${NCU_S:-240}" "$NCU" --clock-control none --kernel-name regex:"flash_(fwd|bwd)" --launch-skip 11 --launch-count 2 \
    --section LaunchStats --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    --metrics "regex:^smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio$" \
    "$BIN" bench "${pristine[@]}" --warmup 1 --steps 1 >"$sections" 2>&1
  echo "== flash sections rc=$? at $(($(date +%s) - t0)) s: $sections" >&2
  grep -E "flash_|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Stall|Issue Slots|Pipe Util|Executed Ipc|Warp Cycles" "$sections" | head -60
  # the stall reasons above 0.05 warps per issue
  awk '/flash_(fwd|bwd)/ {print} /issue_stalled/ && $NF+0 > 0.05 {n = $1; sub(/smsp__average_warps_issue_stalled_/, "", n); sub(/_per_issue_active.ratio/, "", n); print "    stalled", n, $NF}' "$sections"
  # where the warps wait, instruction by instruction
  timeout "${NCU_S:-240}" "$NCU" --clock-control none --kernel-name regex:"flash_(fwd|bwd)" --launch-skip 11 --launch-count 2 \
    --set full --import-source no -f -o "$OUT_DIR/flash" "$BIN" bench "${pristine[@]}" --warmup 1 --steps 1 >"$OUT_DIR/flash-full.out" 2>&1
  echo "== flash full set rc=$? at $(($(date +%s) - t0)) s: $OUT_DIR/flash.ncu-rep" >&2
  "$NCU" -i "$OUT_DIR/flash.ncu-rep" --page source --print-source sass --csv >"$OUT_DIR/flash-sass.csv" &&
    "$PYTHON" "$HERE/ncu_sass.py" "$OUT_DIR/flash-sass.csv" --top 10
fi
