#!/bin/bash
# GPU call (carry [".gpu"]): where the time of a 001_pristine training step goes (bf16, vocab
# 50304). `baka bench --phases` at batch 32 with the defaults and with each setting in $VARIANTS
# (words as in gpu_pristine.sh: "train.adamw=burn", "train.ce=autodiff,train.attention=burn"; a
# part starting with -- is a bench flag: "--phases"), the
# defaults at each batch of $BATCHES, and the PyTorch reference (eager + torch.compile) at each batch
# of $TORCH_BATCHES. JSON lines in $OUT/bench.jsonl, then bench/compare.py's table; caches brought
# back. TESTS_FIRST=1 runs the CUDA tests ($TESTS_FILTER) before any timing.
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
[ -n "${TESTS_FIRST:-}" ] && gpu_tests
pristine=(--branch 001_pristine --device cuda --set train.dtype=bf16 --set model.vocab=50304 --steps 20)
run() {
  timeout "${BENCH_S:-300}" $B bench "${pristine[@]}" "$@" >> "$OUT/bench.jsonl"
  echo "== baka $* rc=$? at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/bench.jsonl"
}
run --batch 32 --phases
for v in ${VARIANTS:-}; do
  sets=(); IFS=, read -ra kv <<< "$v"; for x in "${kv[@]}"; do [[ $x == --* ]] && sets+=("$x") || sets+=(--set "$x"); done
  run --batch 32 --phases "${sets[@]}"
done
for b in ${BATCHES:-}; do run --batch "$b"; done
save_cache
for b in ${TORCH_BATCHES:-}; do
  timeout "${TORCH_S:-240}" $PY bench/torch_reference.py --mode both --batch "$b" --steps 20 | grep '^{' >> "$OUT/bench.jsonl"
  echo "== torch batch $b at $(( $(date +%s) - t0 )) s"
done
$PY bench/compare.py "$OUT/bench.jsonl"
