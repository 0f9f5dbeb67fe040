#!/bin/bash
# Runs an experiment on a CUDA machine and packs what it wrote, for drawing the report elsewhere
# (a machine without fonts cannot draw the charts; the runs are safe on disk before that step).
#   bench/gpu_experiment.sh BIN EXPERIMENT.toml OUT_DIR [baka experiment flags...]
# BIN: a `cargo build --release --features cuda` binary; the data cache (data/) must be prepared.
# OUT_DIR/runs.tgz holds each run's CSVs, JSONs and config (no checkpoints); unpack it in the repo
# root and run `baka report EXPERIMENT.toml`. TIMEOUT_S stops the experiment after that many
# seconds (a rerun continues: finished runs are skipped; add --resume for a cut one).
set -uo pipefail
bin=$1; exp=$2; out=$3; shift 3
mkdir -p "$out"
name=$(basename "$exp" .toml); runs=$(dirname "$exp")/$name/runs
CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal} timeout "${TIMEOUT_S:-0}" "$bin" experiment "$exp" "$@" 2>&1 | grep -v ' step [0-9]*/' | tee "$out/experiment.log"
echo "experiment exit ${PIPESTATUS[0]}"
tar czf "$out/runs.tgz" --exclude=checkpoint --exclude=checkpoint.old "$runs"
