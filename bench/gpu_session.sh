#!/bin/bash
# One GPU-machine call (the `device` tool): every branch smoke-trained at the posenc size (which also
# autotunes those shapes), baka vs PyTorch bench, the f32 bench, and the autotune cache brought back.
# Prepare here first:
#   cargo build --release --features cuda --target-dir target/cuda
#   mkdir -p .gpu/data/default && cp target/cuda/release/baka .gpu/ && strip .gpu/baka
#   cp -r data/default/bpe8192 .gpu/data/default/        # baka prepare --set data.vocab_size=8192
# then run `bash bench/gpu_session.sh` with carry [".gpu"]; $OUT/autotune.tgz goes back into .gpu/.
source bench/gpu_env.sh
B=.gpu/baka
t0=$(date +%s)
echo "== smoke: every branch, ${SMOKE_STEPS:-10} steps at the posenc size (bf16)"
for br in 001_pristine 002_nope 003_xpos 004_linspace 005_alibi 000_rmt; do
  timeout 150 $B train --branch $br --steps "${SMOKE_STEPS:-10}" $(posenc_sets) --set train.eval_every=10 \
    --set train.eval_samples=4 --out "smoke/$br" > "smoke-$br.log" 2>&1; rc=$?; cat "smoke-$br.log" >> "$OUT/smoke.log"
  echo "$br rc=$rc at $(( $(date +%s) - t0 )) s: $(tail -c 300 smoke/$br/run.json 2>/dev/null | tr -d '\n' || tail -2 "smoke-$br.log")"
done
save_cache
BAKA=$B PYTHON=$PY OUT_DIR="$OUT" BATCH=32 STEPS=20 timeout 330 bench/run_gpu.sh 2>&1 | tail -25
echo "bench done at $(( $(date +%s) - t0 )) s"
save_cache
timeout 90 $B bench --branch 001_pristine --batch 32 --steps 10 --device cuda --set train.dtype=f32 \
  --set model.vocab=50304 >> "$OUT/bench.jsonl" 2>> "$OUT/f32.err"
echo "f32 done at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/bench.jsonl"
save_cache
