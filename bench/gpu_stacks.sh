#!/bin/bash
# GPU call (carry [".gpu"], with .gpu/baka.xz built unstripped): where the host's time goes in a
# 001_pristine training step (bf16, batch 32 × 512, vocab 50304). There is no perf on the GPU
# machine, so this samples the stacks of a running `baka bench` with cuda-gdb ($SAMPLES attaches,
# one backtrace of every thread each) into $OUT/stacks.tgz; bench/stacks.py tallies them.
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
$B bench --branch 001_pristine --device cuda --set train.dtype=bf16 --set model.vocab=50304 --batch 32 \
  --steps "${STEPS:-2000}" "$@" > "$OUT/stacks-bench.json" 2> /tmp/stacks-bench.err &
pid=$!
sleep "${SETTLE:-25}"  # past start-up and warm-up
mkdir -p /tmp/stacks
for i in $(seq 1 "${SAMPLES:-30}"); do
  kill -0 $pid 2>/dev/null || { echo "bench exited early:"; tail -5 /tmp/stacks-bench.err; break; }
  timeout 30 cuda-gdb -q -nx -p $pid -batch -ex "set pagination off" -ex "thread apply all bt 80" > /tmp/stacks/$i.txt 2>&1
  sleep 0.2
done
kill $pid 2>/dev/null; wait $pid 2>/dev/null
echo "== $(ls /tmp/stacks | wc -l) samples at $(( $(date +%s) - t0 )) s"; head -c 1500 /tmp/stacks/1.txt
tar czf "$OUT/stacks.tgz" -C /tmp stacks
