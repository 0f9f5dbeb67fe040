#!/usr/bin/env bash
# Compares setups of `baka bench` (builds, settings, environment variables) against run-to-run
# drift: back-to-back runs of one binary can differ by several ms per step, so the setups run in
# turn (A B C A B C ...), ROUNDS times, and only setups of one invocation should be compared.
# Each run is the 190M shape on CUDA:
#   BIN bench --branch $BRANCH --device cuda --set train.dtype=bf16 --set model.vocab=50304 --batch $BATCH --steps $STEPS
#
# Usage: bench/ab.sh BIN OUT_DIR [ROUNDS]
#   BIN      the baka binary (a `cargo build --release --features cuda` build)
#   OUT_DIR  JSON lines, with "setup" and "round" added, are appended to OUT_DIR/ab.jsonl
#   ROUNDS   rounds (default 3)
# Environment:
#   AB       the setups, one word each (default "default"): "name" runs BIN as it is;
#            "name:part,part,..." adds parts, each one of
#              --flag          a `baka bench` flag (`--phases`; a value joins with `=`: `--warmup=10`)
#              key.sub=value   a setting, passed as --set (its key has a dot): `train.gate=burn`
#              NAME=value      an environment variable: `BAKA_CUBLASLT=0`
#              bin=PATH        another baka binary for this setup
#            e.g. AB="new old:bin=./baka-old lt0:BAKA_CUBLASLT=0 gate:train.gate=burn,--phases"
#   BRANCH   the branch benched (default 001_pristine)
#   BATCH    sequences per step (default 32)
#   STEPS    timed steps per run (default 20)
#   BENCH_S  time limit of one run in seconds (default 200)
#   PYTHON   python3 for the JSON handling (default python3)
# Prints per setup its mean ms/step and the ms/step of each round (and, with --phases, the host
# time of bakallm's kernels, `phases_ms.kernels`).
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
BIN="$1"
source "$(dirname "${BASH_SOURCE[0]}")/setup_word.sh"
OUT_DIR="$2"
ROUNDS="${3:-3}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
JSONL="$OUT_DIR/ab.jsonl"
touch "$JSONL"
first=$(($(wc -l <"$JSONL") + 1)) # the summary covers the lines this invocation appends
t0=$(date +%s)
shape=(--branch "${BRANCH:-001_pristine}" --device cuda --set train.dtype=bf16 --set model.vocab=50304 --batch "${BATCH:-32}" --steps "${STEPS:-20}")

for round in $(seq "$ROUNDS"); do
  for word in ${AB:-default}; do
    parse_word "$word" "$BIN"
    env ${envs[@]+"${envs[@]}"} timeout "${BENCH_S:-200}" "$bin" bench "${shape[@]}" ${args[@]+"${args[@]}"} |
      "$PYTHON" -c 'import json, sys
for l in sys.stdin:
    if l.startswith("{"):
        print(json.dumps(dict(json.loads(l), setup=sys.argv[1], round=int(sys.argv[2]))))' "$name" "$round" >>"$JSONL"
    echo "== $name round $round rc=${PIPESTATUS[0]} at $(($(date +%s) - t0)) s" >&2
  done
done

"$PYTHON" - "$JSONL" "$first" <<'PY'
import collections, json, sys
by = collections.defaultdict(list)
for l in list(open(sys.argv[1]))[int(sys.argv[2]) - 1:]:
    if l.strip():
        r = json.loads(l)
        by[r["setup"]].append(r)
for name, rows in by.items():
    ms = [r["ms_step"] for r in rows]
    extra = next((r.get("phases_ms", {}).get("kernels") for r in rows if r.get("phases_ms")), None)
    print(f"{name:24} mean {sum(ms) / len(ms):7.2f} ms/step  rounds {' '.join(f'{m:.2f}' for m in ms)}" + (f"  kernels host {extra}" if extra else ""))
PY
echo "JSON lines: $JSONL" >&2
