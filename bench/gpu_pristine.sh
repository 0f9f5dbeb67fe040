#!/bin/bash
# GPU call B (carry [".gpu"]): the target shape, BakaLLM 001_pristine (d 768, 12 layers,
# vocab 50304, bf16, batch 32 × 512): baka vs PyTorch via bench/run_gpu.sh (autotunes for minutes
# on a fresh cache), then a per-kernel profile of baka's training step from cubecl's own profiler
# ($OUT/profile.txt: the last step's table, slowest kernels first), and the caches brought back.
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
[ -n "${WITH_TESTS:-}" ] && gpu_tests
BAKA=$B PYTHON=$PY OUT_DIR="$OUT" BATCH=32 STEPS=20 timeout "${BENCH_S:-420}" bench/run_gpu.sh 2>&1 | tail -8
echo "== bench done at $(( $(date +%s) - t0 )) s"; save_cache
CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile timeout "${PROFILE_S:-120}" $B bench --branch 001_pristine \
  --batch 32 --steps 2 --warmup 2 --device cuda --set train.dtype=bf16 --set model.vocab=50304 > "$OUT/profile-bench.json" 2> "$OUT/profile.err"
echo "== profile rc=$? at $(( $(date +%s) - t0 )) s"
python3 bench/last_profile.py /tmp/cubecl.log > "$OUT/profile.txt"; head -40 "$OUT/profile.txt"
xz -T0 -c /tmp/cubecl.log > "$OUT/cubecl.log.xz" 2>/dev/null
save_cache
