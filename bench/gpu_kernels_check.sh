#!/bin/bash
# GPU call (carry [".gpu"]): the bf16 training curve with bakallm's fused kernels (the defaults:
# attention, cross-entropy, embedding, layernorm, gradient norm) against the shipped curves of the
# same run with burn's ops (experiments/posenc/dtype-check/{bf16,f32}-s1: 001_pristine seed 1 at the
# posenc size, 300 steps). Brings back $OUT/fused-run.tgz (fusedrun/) and the caches. Compare with
#   baka plot experiments/posenc/dtype-check/* fusedrun --by train.attention --by train.dtype --out plots/posenc-kernels
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
rm -rf fusedrun
timeout "${RUN_S:-240}" $B train --branch 001_pristine --seed 1 $(posenc_sets) --steps 300 \
  --set train.eval_every=50 --set train.eval_samples=32 --out fusedrun > /tmp/fused.log 2>&1
echo "== fused run rc=$? at $(( $(date +%s) - t0 )) s: $(tail -1 /tmp/fused.log)"
tar czf "$OUT/fused-run.tgz" fusedrun/{config.toml,metrics.csv,eval.csv,run.json} 2>/dev/null
save_cache
