#!/usr/bin/env bash
# Measures `baka prepare` on a generated JSON-lines corpus: wall time, MB/s of text and peak RSS.
#   bench/prepare_scale.sh [MB] [WORK_DIR]        (default 230 MB in /tmp/bakallm-scale)
# Needs the built-in "prose" corpus's clients (npm, apt-get, pip) or its cache in ./data.
set -euo pipefail
MB="${1:-230}"
WORK="${2:-/tmp/bakallm-scale}"
cargo build --release --example make_corpus --bin baka >&2
rm -rf "$WORK/cache"
[ -f "$WORK/corpus/corpus.jsonl.zst" ] || target/release/examples/make_corpus "$WORK/corpus" --mb "$MB"
/usr/bin/time -v target/release/baka prepare --set "data.corpus=\"$WORK/corpus\"" --set "data.cache_dir=\"$WORK/cache\"" 2>"$WORK/prepare.log" || { cat "$WORK/prepare.log" >&2; exit 1; }
grep -E "^(corpus|split|training|trained|encoded|data ready)" "$WORK/prepare.log"
grep -E "Elapsed \(wall|Maximum resident" "$WORK/prepare.log"
