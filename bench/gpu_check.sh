#!/usr/bin/env bash
# Checks a CUDA build on the GPU: every branch (all position schemes + RMT memory) trains a small
# model for a few hundred steps in f32 and in bf16 on the real corpus, and the final validation
# losses are printed side by side (bf16 with f32 master weights should agree within noise).
#
#   BAKA=target/release/baka STEPS=200 OUT_DIR=gpu-check bench/gpu_check.sh
#   BAKA     a `cargo build --release --features cuda` binary (default ./baka)
#   STEPS    steps per run (default 200)
#   OUT_DIR  one run folder and log per branch and dtype (default gpu-check)
# Uses the data cache in the working directory (data/default/bpe8192/, made by
# `baka prepare --set data.vocab_size=8192`); without it the first run builds it, which needs npm.
set -euo pipefail
BAKA="${BAKA:-./baka}"
STEPS="${STEPS:-200}"
OUT_DIR="${OUT_DIR:-gpu-check}"
mkdir -p "$OUT_DIR"
small=(--set model.d_model=256 --set model.n_layers=4 --set model.n_heads=4 --set model.d_ff=1024
       --set train.batch=8 --set train.n_windows=2 --set train.eval_every=50 --set train.eval_samples=16
       --set train.lr=1e-3 --set train.warmup_steps=20 --set train.schedule=cosine --set data.vocab_size=8192)
printf '%-14s %-6s %12s %10s\n' branch dtype final_val wall_s
for branch in 001_pristine 002_nope 003_xpos 004_linspace 005_alibi 000_rmt; do
  for dtype in f32 bf16; do
    out="$OUT_DIR/$branch-$dtype"
    rm -rf "$out"
    if "$BAKA" train --branch "$branch" --steps "$STEPS" --device cuda --set "train.dtype=$dtype" "${small[@]}" \
        --out "$out" >"$out.log" 2>&1; then
      python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%-14s %-6s %12.4f %10.1f' % (sys.argv[2], sys.argv[3], d['final_val_loss'], d['wall_s']))" \
        "$out/run.json" "$branch" "$dtype"
    else
      printf '%-14s %-6s %12s   (see %s)\n' "$branch" "$dtype" FAILED "$out.log"
    fi
  done
done
