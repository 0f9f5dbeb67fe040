#!/bin/bash
# One GPU-machine call (the `device` tool): baka vs PyTorch bench, the f32 bench, and the autotune
# cache brought back. Prepare here first:
#   cargo build --release --features cuda --target-dir target/cuda
#   mkdir -p .gpu/data/default && cp target/cuda/release/baka .gpu/ && strip .gpu/baka
#   cp -r data/default/bpe8192 .gpu/data/default/        # baka prepare --set data.vocab_size=8192
# then run `bash bench/gpu_session.sh` with carry [".gpu"]; $OUT/autotune.tgz goes back into .gpu/.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda-13.0/lib64:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
OUT="${OUT:-gpu-out}"; mkdir -p "$OUT" data
cp -r .gpu/data/* data/
[ -f .gpu/autotune.tgz ] && tar xzf .gpu/autotune.tgz   # cubecl keeps it in ./target (next to Cargo.toml)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
PY=python3; [ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
B=.gpu/baka
t0=$(date +%s)
BAKA=$B PYTHON=$PY OUT_DIR="$OUT" BATCH=32 STEPS=20 timeout 420 bench/run_gpu.sh 2>&1 | tail -40
echo "bench done at $(( $(date +%s) - t0 )) s"
tar czf "$OUT/autotune.tgz" target 2>/dev/null
timeout 100 $B bench --branch 001_pristine --batch 32 --steps 10 --device cuda --set train.dtype=f32 \
  --set model.vocab=50304 >> "$OUT/bench.jsonl" 2>> "$OUT/f32.err"
echo "f32 done at $(( $(date +%s) - t0 )) s"; tail -1 "$OUT/bench.jsonl"
tar czf "$OUT/autotune.tgz" target 2>/dev/null
