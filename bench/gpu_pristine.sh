#!/bin/bash
# GPU call B (carry [".gpu"]): the issue's target shape, BakaLLM 001_pristine (d 768, 12 layers,
# vocab 50304, bf16, batch 32 × 512): baka vs PyTorch via bench/run_gpu.sh (autotunes for minutes
# on a fresh cache), baka again with each setting in $VARIANTS (e.g. "train.matmul=burn train.ce=autodiff",
# one run each) to measure each lever against the defaults, then a
# per-kernel profile of baka's training step from cubecl's own profiler ($OUT/profile.txt: the last
# step's table, slowest kernels first; the raw log with the kernel sequence in $OUT/cubecl.log.xz),
# and the caches brought back. WITH_TESTS=1 runs the CUDA tests (TESTS_FILTER) alongside; SKIP_TORCH=1 skips
# the PyTorch side (its numbers from an earlier call on the same GPU kind still compare); TESTS_FIRST=1 runs the
# tests before the timings instead.
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
[ -n "${WITH_TESTS:-}" ] && { gpu_tests > /tmp/tests.out 2>&1 & }
[ -n "${TESTS_FIRST:-}" ] && gpu_tests  # in the foreground, before any timing
pristine=(--branch 001_pristine --batch 32 --device cuda --set train.dtype=bf16 --set model.vocab=50304)
if [ -n "${SKIP_TORCH:-}" ]; then
  timeout "${BENCH_S:-420}" $B bench "${pristine[@]}" --steps 20 >> "$OUT/bench.jsonl"; tail -1 "$OUT/bench.jsonl"
else
  BAKA=$B PYTHON=$PY OUT_DIR="$OUT" BATCH=32 STEPS=20 timeout "${BENCH_S:-420}" bench/run_gpu.sh 2>&1 | tail -8
fi
for v in ${VARIANTS:-}; do  # one run per word; a word may set several keys: "train.ce=autodiff,train.attention=burn"
  sets=(); IFS=, read -ra kv <<< "$v"; for x in "${kv[@]}"; do sets+=(--set "$x"); done
  timeout "${BENCH_S:-420}" $B bench "${pristine[@]}" --steps 20 "${sets[@]}" >> "$OUT/bench.jsonl"; tail -1 "$OUT/bench.jsonl"
done
echo "== bench done at $(( $(date +%s) - t0 )) s"; save_cache
CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile timeout "${PROFILE_S:-120}" $B bench "${pristine[@]}" \
  --steps 2 --warmup 2 > "$OUT/profile-bench.json" 2> "$OUT/profile.err"
echo "== profile rc=$? at $(( $(date +%s) - t0 )) s"
python3 bench/last_profile.py /tmp/cubecl.log > "$OUT/profile.txt"; head -30 "$OUT/profile.txt"
xz -T0 -c /tmp/cubecl.log > "$OUT/cubecl.log.xz" 2>/dev/null
wait; [ -f /tmp/tests.out ] && cat /tmp/tests.out
save_cache
