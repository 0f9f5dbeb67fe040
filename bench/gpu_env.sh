# Sourced by the GPU-machine scripts: library paths, the carried data and autotune cache, python.
export LD_LIBRARY_PATH=$PWD/.gpu/lib:/usr/local/cuda/lib64:/usr/local/cuda-13.0/lib64:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
OUT="${OUT:-gpu-out}"; mkdir -p "$OUT" data
[ -n "$(ls -A .gpu/data 2>/dev/null)" ] && cp -r .gpu/data/* data/  # token files, where a run needs them (bench does not)
# Carried xz-compressed to fit the 64 MiB carry: the stripped binary and cubecl's caches (autotune
# results and compiled PTX), which cubecl keeps in ./target (next to Cargo.toml).
# .gpu/baka.xz → .gpu/baka; likewise the CUDA test binary .gpu/gpu-tests.xz, if carried.
for xz in .gpu/*.xz; do
  [ -f "$xz" ] || continue
  [ -f "${xz%.xz}" ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3],'wb'))" "$xz"
  chmod +x "${xz%.xz}"
done
# Only onto a bare machine: a script sourced again in the same call (gpu_session.sh → gpu_posenc.sh),
# or a later call on a still-warm machine, must not roll the newer ./target back to the carried one.
[ -f .gpu/autotune.txz ] && [ ! -d target/autotune ] && python3 -c "import tarfile; tarfile.open('.gpu/autotune.txz').extractall()"
# Packs ./target (the caches) into $OUT/autotune.txz, to bring back and carry next time.
save_cache() { tar cf - target 2>/dev/null | { command -v xz >/dev/null && xz -T0 -6 || python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.compress(sys.stdin.buffer.read(), preset=1))"; } > "$OUT/autotune.txz"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader  # printed: at most 8 files come back from $OUT
PY=python3; [ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
# The overrides of experiments/posenc.toml as --set flags (for one-off trains at that size).
posenc_sets() {
  echo --device cuda --set train.dtype=bf16 --set model.d_model=512 --set model.n_layers=8 \
    --set model.n_heads=8 --set model.d_ff=2048 --set model.window=512 --set train.batch=8 \
    --set train.n_windows=4 --set train.lr=1e-3 --set train.warmup_steps=30 --set train.schedule=cosine \
    --set data.vocab_size=8192
}
# The CUDA-vs-CPU test of every branch (src/model/gpu_tests.rs), when its binary is carried
# (.gpu/gpu-tests.xz, from cargo test --release --features cuda --lib --no-run --target-dir target/cuda).
gpu_tests() {
  [ -x .gpu/gpu-tests ] || return 0
  CUBECL_AUTOTUNE_LEVEL=minimal timeout "${TESTS_S:-240}" .gpu/gpu-tests ${TESTS_FILTER:-gpu_} --nocapture > "$OUT/gpu-tests.log" 2>&1
  echo "== gpu tests rc=$?"; grep -E "vs cpu|vs burn|vs autodiff|test result|panicked|NVRTC|error" "$OUT/gpu-tests.log" | tail -${TESTS_LINES:-15}
}
