#!/bin/bash
# GPU call A (the `device` tool, carry [".gpu"]), at the posenc size whose kernels the carried cache
# holds, in one call:
#  0. the CUDA-vs-CPU tests (src/model/gpu_tests.rs), in the background;
#  1. the bf16-vs-f32 check: 001_pristine seed 1 of experiments/posenc.toml again in bf16 and in f32,
#     both with the default cuBLAS linears ($OUT/dtype-runs.tgz: bf16run/ and f32run/). Compare with
#     the shipped bf16 seeds (trained with burn's matmul):
#       baka plot experiments/posenc/results/001_pristine-s* bf16run f32run --by train.dtype --by train.matmul --out plots/posenc-dtype
#  2. the missing posenc run (000_rmt s3), with burn's matmul like its siblings;
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
gpu_tests > /tmp/tests.out 2>&1 &
tests=$!
rm -rf f32run bf16run
for dt in bf16 f32; do
  # minimal autotune: these runs check numerics, not speed
  CUBECL_AUTOTUNE_LEVEL=minimal timeout "${RUN_S:-200}" $B train --branch 001_pristine --seed 1 $(posenc_sets) --set train.dtype=$dt \
    --steps 300 --set train.eval_every=50 --set train.eval_samples=32 --out ${dt}run > /tmp/$dt.log 2>&1
  echo "== $dt run rc=$? at $(el): $(tail -1 /tmp/$dt.log)"
done
tar czf "$OUT/dtype-runs.tgz" {bf16,f32}run/{config.toml,metrics.csv,eval.csv,run.json} 2>/dev/null; save_cache
BUDGET_S="${RMT_S:-150}" RUN_S=60 BRANCHES=000_rmt EXTRA="--set train.matmul=burn" bash bench/gpu_posenc.sh 2>&1 | tail -3
wait $tests; cat /tmp/tests.out; save_cache
echo "== all done at $(el)"
