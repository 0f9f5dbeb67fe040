#!/bin/bash
# One GPU-machine call that trains experiments/posenc.toml seed-major (seed 1 of every branch, then
# seed 2, ...) until BUDGET_S seconds would be exceeded, given RUN_S seconds per run, and brings the
# small files of every finished run back as $OUT/posenc-runs.tgz (unpack into experiments/posenc/runs,
# or results/, here). Runs finished by earlier calls travel in .gpu/posenc-runs.tgz and are skipped.
#   BUDGET_S=520 RUN_S=60 bash bench/gpu_posenc.sh          (carry [".gpu"])
source bench/gpu_env.sh
B=.gpu/baka; BUDGET_S="${BUDGET_S:-520}"; RUN_S="${RUN_S:-60}"; t0=$(date +%s)
mkdir -p experiments/posenc/runs
[ -f .gpu/posenc-runs.tgz ] && tar xzf .gpu/posenc-runs.tgz -C experiments/posenc/runs
cp experiments/posenc.toml /tmp/posenc.toml
for seed in $(sed -n 's/^seeds *= *\[\(.*\)\]/\1/p' /tmp/posenc.toml | tr ',' ' '); do
  sed "s/^seeds *=.*/seeds = [$seed]/" /tmp/posenc.toml > experiments/posenc.toml
  for br in ${BRANCHES:-001_pristine 002_nope 003_xpos 004_linspace 005_alibi 000_rmt}; do
    [ -f "experiments/posenc/runs/$br-s$seed/run.json" ] && continue
    left=$(( BUDGET_S - ($(date +%s) - t0) ))
    [ "$left" -lt "$RUN_S" ] && { echo "stop: ${left}s left < ${RUN_S}s per run"; break 2; }
    s=$(date +%s)
    timeout "$left" $B experiment experiments/posenc.toml --only "$br" --resume ${EXTRA:-} >> "$OUT/posenc.log" 2>&1
    echo "$br s$seed rc=$? $(( $(date +%s) - s )) s: $(grep -o '"final_val_loss": *[0-9.]*' experiments/posenc/runs/$br-s$seed/run.json 2>/dev/null)"
  done
done
cp /tmp/posenc.toml experiments/posenc.toml
(cd experiments/posenc/runs && for d in */; do [ -f "$d/run.json" ] && grep -q '"finished": *true' "$d/run.json" && \
  echo "$d"config.toml "$d"metrics.csv "$d"eval.csv "$d"run.json; done | xargs tar czf "$OUT/posenc-runs.tgz")
save_cache
echo "posenc call done at $(( $(date +%s) - t0 )) s; $(tar tzf "$OUT/posenc-runs.tgz" | grep -c run.json) runs"
