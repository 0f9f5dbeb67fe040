#!/bin/bash
# GPU call (carry [".gpu"]): setups compared against run-to-run drift (back-to-back `baka bench`
# runs have drifted by several ms, README): each word of $AB is one setup, run in turn $ROUNDS
# times (A B C A B C …), `baka bench` of 001_pristine at batch 32 (bf16, vocab 50304) each time.
# A word is "name" (the defaults) or "name:part,part,…", each part a bench flag ("--phases"), a
# setting ("train.gate=burn": its key has a dot), an environment variable ("BAKA_POINTERS=each") or
# another binary ("bin=.gpu/baka-old": an xz-packed build carried as .gpu/baka-old.xz).
# JSON lines, with "setup" and "round" added, in $OUT/ab.jsonl; then per setup its ms/step by round.
source bench/gpu_env.sh
B=.gpu/baka; t0=$(date +%s)
pristine=(--branch 001_pristine --device cuda --set train.dtype=bf16 --set model.vocab=50304 --batch 32 --steps "${STEPS:-20}")
for round in $(seq "${ROUNDS:-3}"); do
  for word in ${AB:-default}; do
    name=${word%%:*}; envs=(); args=(); bin=$B
    if [ "$name" != "$word" ]; then
      IFS=, read -ra parts <<< "${word#*:}"
      for x in "${parts[@]}"; do
        if [[ $x == --* ]]; then args+=("$x"); elif [[ $x == bin=* ]]; then bin=${x#bin=}; elif [[ ${x%%=*} == *.* ]]; then args+=(--set "$x"); else envs+=("$x"); fi
      done
    fi
    env "${envs[@]}" timeout "${BENCH_S:-200}" $bin bench "${pristine[@]}" "${args[@]}" |
      python3 -c 'import json,sys; [print(json.dumps(dict(json.loads(l), setup=sys.argv[1], round=int(sys.argv[2])))) for l in sys.stdin if l.startswith("{")]' "$name" "$round" >> "$OUT/ab.jsonl"
    echo "== $name round $round rc=${PIPESTATUS[0]} at $(( $(date +%s) - t0 )) s"
  done
done
python3 - "$OUT/ab.jsonl" <<'PY'
import collections, json, sys
by = collections.defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l); by[r["setup"]].append(r)
for name, rows in by.items():
    ms = [r["ms_step"] for r in rows]
    extra = next((r.get("phases_ms", {}).get("kernels") for r in rows if r.get("phases_ms")), None)
    print(f"{name:24} mean {sum(ms) / len(ms):7.2f} ms/step  rounds {' '.join(f'{m:.2f}' for m in ms)}" + (f"  kernels host {extra}" if extra else ""))
PY
