#!/usr/bin/env bash
# Trains experiments on a CUDA machine for at most MINUTES, then packs what finished.
#
# Usage: bench/experiments_gpu.sh BAKA OUT_DIR MINUTES JOBS EXPERIMENT.toml...
#   BAKA     a `cargo build --release --features cuda` binary
#   OUT_DIR  gets results.tgz: every finished run's CSVs, run.json, config.toml and
#            extrapolation.json (experiments/<name>/runs/<run>/), no checkpoints; and log.txt
#   MINUTES  no experiment starts after this; the one training then is stopped (its unfinished
#            runs are left out of results.tgz and start over on the next call)
#   JOBS     runs trained at once on the GPU (`baka experiment --jobs`)
# Runs `baka experiment EXPERIMENT --resume --jobs JOBS` for each experiment in turn, from the
# repository root (data cache in ./data, finished runs skipped). Unpack results.tgz in the
# repository root elsewhere, and a later run carries on where this one stopped.
set -uo pipefail
[ $# -ge 5 ] || { echo "usage: $0 BAKA OUT_DIR MINUTES JOBS EXPERIMENT.toml..." >&2; exit 2; }
BAKA="$1" OUT_DIR="$2" MINUTES="$3" JOBS="$4"
shift 4
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/log.txt"
deadline=$(($(date +%s) + MINUTES * 60))
status=0
for exp in "$@"; do
  left=$((deadline - $(date +%s)))
  if [ "$left" -le 0 ]; then
    echo "== $exp: not started (time is up)" | tee -a "$LOG"
    status=1
    continue
  fi
  echo "== $exp ($((left / 60)) min $((left % 60)) s left)" | tee -a "$LOG"
  # its own process group, so that stopping it also stops the runs it started
  setsid "$BAKA" experiment "$exp" --resume --jobs "$JOBS" >>"$LOG" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "== $exp: stopped at the time limit" | tee -a "$LOG"
    kill -TERM -- "-$pid" 2>/dev/null
    sleep 3
    kill -KILL -- "-$pid" 2>/dev/null
    status=1
  fi
  wait "$pid" || { echo "== $exp: exit $?" | tee -a "$LOG"; status=1; }
done

# finished runs only: run.json says `"finished": true`
list="$(mktemp)"
for exp in "$@"; do
  runs="$(dirname "$exp")/$(basename "$exp" .toml)/runs"
  for run in "$runs"/*/; do
    [ -f "$run/run.json" ] && grep -q '"finished": *true' "$run/run.json" || continue
    for f in metrics.csv eval.csv run.json config.toml extrapolation.json; do
      [ -f "$run/$f" ] && echo "$run$f" >>"$list"
    done
  done
done
tar -czf "$OUT_DIR/results.tgz" -T "$list"
echo "== packed $(grep -c run.json "$list") finished runs into $OUT_DIR/results.tgz" | tee -a "$LOG"
rm -f "$list"
exit "$status"
