#!/bin/bash
# GPU call (carry [".gpu"]): every kernel's time in 001_pristine training steps (bf16, batch 32 × 512,
# vocab 50304) from Nsight Compute, which serialises and times each launch, cuBLAS and bakallm's
# own kernels included. One run per word of $RUNS ("name" or "name:part,...", each part an
# environment variable "ENV=VALUE", a setting "train.attention=fused" (its key has a dot) or another
# binary "bin=.gpu/baka-old" (carried xz-packed as .gpu/baka-old.xz); raw
# CSVs in $OUT/ncu.tgz, and bench/ncu_sum.py's table of time per kernel and step, side by side.
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s); files=()
for run in ${RUNS-default}; do  # RUNS="": none (FLASH_METRICS alone)
  name=${run%%:*}; envs=(); sets=(); parts=(); bin=$B; [ "$name" != "$run" ] && IFS=, read -ra parts <<< "${run#*:}"
  for x in "${parts[@]}"; do
    if [[ $x == bin=* ]]; then bin=${x#bin=}; elif [[ ${x%%=*} == *.* ]]; then sets+=(--set "$x"); else envs+=("$x"); fi
  done
  env "${envs[@]}" timeout "${NCU_S:-240}" ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum \
    --csv --log-file "/tmp/ncu-$name.csv" $bin bench --branch 001_pristine --device cuda --set train.dtype=bf16 \
    --set model.vocab=50304 --batch 32 --warmup "${WARMUP:-1}" --steps 1 "${sets[@]}" > "/tmp/ncu-$name.out" 2>&1
  echo "== ncu $run rc=$? at $(( $(date +%s) - t0 )) s"; tail -2 "/tmp/ncu-$name.out"; files+=("ncu-$name.csv")
done
if [ ${#files[@]} -gt 0 ]; then
  tar czf "$OUT/ncu.tgz" -C /tmp "${files[@]}"
  # steps run: the warm-up, the timed one, and the three of the in-use memory sampler (bench.rs)
  python3 bench/ncu_sum.py --steps $(( ${WARMUP:-1} + 1 + 3 )) "${files[@]/#//tmp/}"
fi
# FLASH_METRICS=1: Nsight Compute's launch, occupancy, warp-state and compute sections, and the
# warps stalled per issue by reason, of one forward and one backward flash launch (the warm-up
# step's last forward and first backward); the whole report in $OUT/flash-sections.txt
if [ -n "${FLASH_METRICS:-}" ]; then
  timeout "${NCU_S:-240}" ncu --clock-control none --kernel-name regex:"flash_(fwd|bwd)" --launch-skip 11 --launch-count 2 \
    --section LaunchStats --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    --metrics "regex:^smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio$" \
    $B bench --branch 001_pristine --device cuda --set train.dtype=bf16 --set model.vocab=50304 --batch 32 --warmup 1 --steps 1 > "$OUT/flash-sections.txt" 2>&1
  grep -E "flash_|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Stall|Issue Slots|Pipe Util|Executed Ipc|Warp Cycles" "$OUT/flash-sections.txt" | head -60
  # the stall reasons above 0.05 warps per issue
  awk '/flash_(fwd|bwd)/ {print} /issue_stalled/ && $NF+0 > 0.05 {n = $1; sub(/smsp__average_warps_issue_stalled_/, "", n); sub(/_per_issue_active.ratio/, "", n); print "    stalled", n, $NF}' "$OUT/flash-sections.txt"
fi
