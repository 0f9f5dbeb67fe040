#!/bin/bash
# GPU call A (the `device` tool, carry [".gpu"]), for shapes whose kernels the carried cache holds:
#  1. baka vs PyTorch (eager, torch.compile) at the posenc shape, batch 8 × 512 — the ratio;
#  2. the bf16-vs-f32 check: 001_pristine seed 1 of experiments/posenc.toml in f32 (compare its
#     curve with the shipped bf16 seeds: baka plot experiments/posenc/results/001_pristine-s* f32run
#     --by train.dtype --out plots/posenc-dtype);
#  3. the missing posenc run (000_rmt s3);
# and brings the caches back ($OUT/autotune.txz → .gpu/). Prepare here first:
#   cargo build --release --features cuda --target-dir target/cuda
#   mkdir -p .gpu/data/default && strip -o /tmp/baka target/cuda/release/baka && xz -T2 -c /tmp/baka > .gpu/baka.xz
#   cargo test --release --features cuda --lib --no-run --target-dir target/cuda   # prints the test binary
#   strip -o /tmp/t target/cuda/release/deps/bakallm-<hash> && xz -T2 -c /tmp/t > .gpu/gpu-tests.xz
#   cp -r data/default/bpe8192 .gpu/data/default/        # baka prepare --set data.vocab_size=8192
#   tar czf .gpu/posenc-runs.tgz -C experiments/posenc/results .   # finished runs are skipped
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 )) s"; }
# 0. every branch on CUDA against the CPU reference
gpu_tests; el
shape=(--d-model 512 --layers 8 --heads 8 --d-ff 2048 --vocab 8192)
BAKA=$B PYTHON=$PY OUT_DIR="$OUT/posenc-shape" BATCH=8 STEPS=30 BAKA_ARGS="$(posenc_sets) --set train.n_windows=1" \
  TORCH_ARGS="${shape[*]}" timeout 200 bench/run_gpu.sh 2>&1 | tail -8
echo "== side by side done at $(el)"; save_cache
# minimal autotune: this run checks the numerics of f32 against bf16, not its speed (fresh dir: a warm
# machine may hold a partial one from an earlier call)
rm -rf f32run
CUBECL_AUTOTUNE_LEVEL=minimal timeout "${F32_S:-200}" $B train --branch 001_pristine --seed 1 $(posenc_sets) --set train.dtype=f32 --steps 300 \
  --set train.eval_every=50 --set train.eval_samples=32 --out f32run > "$OUT/f32.log" 2>&1
echo "== f32 run rc=$? at $(el)"; tail -1 "$OUT/f32.log"
tar czf "$OUT/f32run.tgz" f32run/config.toml f32run/metrics.csv f32run/eval.csv f32run/run.json 2>/dev/null; save_cache
BUDGET_S="${RMT_S:-150}" RUN_S=60 BRANCHES=000_rmt bash bench/gpu_posenc.sh 2>&1 | tail -3
echo "== all done at $(el)"
