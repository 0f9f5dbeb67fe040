#!/usr/bin/env python3
"""Parity test: `baka logits` against an independent numpy reference (reference.py).

For every case it trains a tiny run with the real binary (a few steps, so weights are off their
init), exports it, asks `baka logits` for the logits of a few token ids read in several windows,
recomputes them with reference.py and requires max |diff| <= 1e-4. Each case also names
ablations (the same weights with one setting changed, or the state not carried between windows)
whose reference logits must differ from baka's by > 1e-3: proof that the case really exercises
the feature it is named after. Then negative checks (a perturbed weight must be caught; a tensor
of the wrong shape must be refused by `baka logits`) and the tokenizer checks.

    python3 tests/parity/test_parity.py --baka target/release/baka --work target/test-scratch/parity

Exit code 0 when everything agrees, 1 with a message per failure otherwise.
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

try:
    import numpy as np
    import safetensors  # noqa: F401
    import tokenizers
except ImportError as e:  # pragma: no cover
    print(f"parity: missing Python package ({e}); run: pip install numpy safetensors tokenizers", file=sys.stderr)
    sys.exit(1)

from safetensors import safe_open
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4  # max |baka - reference| allowed
SENSITIVE = 1e-3  # an ablation must move the logits by more than this
TOKENS = [5, 17, 300, 9, 1023, 0, 42, 511, 256, 77, 3]  # 11 ids: windows of 4 -> 4, 4, 3
WINDOWS_OF = 4
STEPS = 12

TINY = [
    "model.d_model=32", "model.n_layers=2", "model.n_heads=4", "model.d_ff=64", "model.window=16",
    "train.n_windows=2", "train.batch=2", "train.eval_samples=2", "train.eval_every=0",
    "train.lr=0.01",  # large enough that 4 steps move every weight (norms, pos.scale) off its init
    "data.vocab_size=1024",
]
MEM = ["memory.tokens=3"]

# (name, branch, extra --set values, ablations {label: (overrides, carry_state)})
CASES = [
    ("nope", "002_nope", [], {"rope": ({"model.positions": "rope"}, True)}),
    ("rope", "001_pristine", [], {"nope": ({"model.positions": "nope"}, True)}),
    ("xpos", "003_xpos", [], {"nope": ({"model.positions": "nope"}, True)}),
    ("xpos-scale4", "003_xpos", ["model.xpos_scale_base=4.0"], {"rope": ({"model.positions": "rope"}, True)}),
    ("linspace", "004_linspace", [], {"nope": ({"model.positions": "nope"}, True)}),
    ("linspace-edge4", "004_linspace", ["model.linspace_edge=4.0"], {"nope": ({"model.positions": "nope"}, True)}),
    ("alibi", "005_alibi", [], {"nope": ({"model.positions": "nope"}, True)}),
    ("alibi-6heads", "005_alibi", ["model.d_model=48", "model.n_heads=6"], {"nope": ({"model.positions": "nope"}, True)}),
    ("rmsnorm", "001_pristine", ["model.norm=rmsnorm"], {}),
    ("sequential", "001_pristine", ["model.residual=sequential"], {}),
    ("global-rope", "001_pristine", ["model.global_positions=true"], {}),
    ("global-linspace", "004_linspace", ["model.global_positions=true", "model.linspace_edge=4.0"], {}),
    ("rmt", "000_rmt", MEM, {"no-carry": ({}, False), "nope": ({"model.positions": "nope"}, True)}),
    ("rmt-previous", "000_rmt", MEM + ["memory.write_init=previous"],
     {"no-carry": ({}, False), "learned": ({"memory.write_init": "learned"}, True)}),
    ("rmt-window-pos", "000_rmt", MEM + ["memory.positions=window"],
     {"no-carry": ({}, False), "none": ({"memory.positions": "none"}, True)}),
    ("rmt-rmsnorm-seq", "000_rmt", MEM + ["model.norm=rmsnorm", "model.residual=sequential"], {"no-carry": ({}, False)}),
    ("rmt-global-rope", "000_rmt", MEM + ["model.global_positions=true"],
     {"no-carry": ({}, False), "local": ({"model.global_positions": False}, True)}),
    ("rmt-global-linspace", "000_rmt", MEM + ["model.positions=linspace", "model.global_positions=true", "model.linspace_edge=4.0"],
     {"no-carry": ({}, False), "local": ({"model.global_positions": False}, True)}),
    ("rmt-global-xpos", "000_rmt", MEM + ["model.positions=xpos", "model.global_positions=true", "model.xpos_scale_base=4.0"],
     {"no-carry": ({}, False), "local": ({"model.global_positions": False}, True)}),
    ("rmt-alibi-window", "000_rmt", MEM + ["model.positions=alibi", "memory.positions=window"],
     {"no-carry": ({}, False), "none": ({"memory.positions": "none"}, True)}),
    ("rmt-linspace-window", "000_rmt", MEM + ["model.positions=linspace", "memory.positions=window", "model.linspace_edge=4.0"],
     {"no-carry": ({}, False), "none": ({"memory.positions": "none"}, True)}),
]

SAMPLE = "The quick brown fox — naïve café, 東京 🦀 — jumps over the lazy dog.\n\tIt's 3.14159 > 2!  Done."

failures = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL: {msg}")


def baka(bin_, args, check=True):
    p = subprocess.run([str(bin_), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"baka {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


def sets(values):
    out = []
    for v in values:
        out += ["--set", v]
    return out


def baka_logits(bin_, path, tokens, window):
    p = baka(bin_, ["logits", path, "--tokens", ",".join(map(str, tokens)), "--windows-of", window])
    d = json.loads(p.stdout)
    got = np.array(d["logits"], dtype=np.float64)
    if d["tokens"] != list(tokens) or d["window"] != window or got.shape != (len(tokens), d["vocab"]):
        raise RuntimeError(f"unexpected logits JSON header: tokens={d['tokens']} window={d['window']} shape={got.shape}")
    return got


def train_export(bin_, work, cache_set, name, branch, extra):
    run = work / name
    out = work / f"{name}.safetensors"
    shutil.rmtree(run, ignore_errors=True)
    baka(bin_, ["train", "--branch", branch, "--steps", STEPS, "--out", run, *sets(TINY + [cache_set] + extra)])
    baka(bin_, ["export", run, "--out", out, "--force"])
    return out


def check_config(path, extra):
    """The metadata config must equal the exported .json and reflect the --set overrides."""
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    side = json.loads(path.with_suffix(".json").read_text())
    for section in ("model", "memory"):
        if cfg[section] != side[section]:
            fail(f"{path.name}: metadata config [{section}] differs from {path.with_suffix('.json').name}")
    expected = dict(kv.split("=", 1) for kv in TINY + extra)  # later --set values win
    for key, value in expected.items():
        section, k = key.split(".")
        if section in ("model", "memory") and str(cfg[section][k]).lower() != value.lower() and str(float(cfg[section][k])) != value:
            fail(f"{path.name}: config {key} = {cfg[section][k]!r}, expected {value}")
    return cfg


def run_cases(bin_, work, cache_set):
    exported = {}
    for name, branch, extra, ablations in CASES:
        t0 = time.time()
        try:
            path = train_export(bin_, work, cache_set, name, branch, extra)
            check_config(path, extra)
            got = baka_logits(bin_, path, TOKENS, WINDOWS_OF)
            ref = reference.logits(path, TOKENS, WINDOWS_OF)
        except Exception as e:  # noqa: BLE001
            fail(f"{name}: {e}")
            continue
        diff = float(np.abs(got - ref).max())
        abl = []
        for label, (overrides, carry) in ablations.items():
            d = float(np.abs(got - reference.logits(path, TOKENS, WINDOWS_OF, carry_state=carry, overrides=overrides)).max())
            abl.append(f"{label} {d:.1e}")
            if not d > SENSITIVE:
                fail(f"{name}: ablation '{label}' moves the logits by only {d:.2e} (<= {SENSITIVE}): the case does not exercise it")
        print(f"{name:22s} max|diff| {diff:.2e}   (|logits| <= {np.abs(ref).max():.2f}; ablations: {', '.join(abl) or '-'})  {time.time() - t0:.1f}s")
        if not diff <= TOL:
            worst = np.unravel_index(np.argmax(np.abs(got - ref)), got.shape)
            fail(f"{name}: max |baka - reference| = {diff:.3e} > {TOL} (token index {worst[0]}, vocab id {worst[1]}: "
                 f"baka {got[worst]:.6f} vs reference {ref[worst]:.6f})")
        exported[name] = path
    return exported


def negative_checks(bin_, work, exported):
    print("negative checks")
    src = exported.get("rmt") or next(iter(exported.values()), None)
    if src is None:
        fail("negative checks: no exported case to work on")
        return
    with safe_open(str(src), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(src))
    got = baka_logits(bin_, src, TOKENS, WINDOWS_OF)

    # 1. a perturbed weight must be caught by the comparison
    bad = {k: v.copy() for k, v in tensors.items()}
    bad["embed.weight"][TOKENS[0]] *= -1.0
    perturbed = work / "perturbed.safetensors"
    save_file(bad, str(perturbed), metadata=meta)
    d = float(np.abs(got - reference.logits(perturbed, TOKENS, WINDOWS_OF)).max())
    print(f"  perturbed embed row {TOKENS[0]}: reference vs baka(original) max|diff| {d:.2e} (must be > {TOL})")
    if not d > TOL:
        fail(f"perturbed weight not detected: max|diff| {d:.2e}")
    # ... and baka reads the perturbed file the same way the reference does
    d2 = float(np.abs(baka_logits(bin_, perturbed, TOKENS, WINDOWS_OF) - reference.logits(perturbed, TOKENS, WINDOWS_OF)).max())
    print(f"  perturbed file: baka vs reference max|diff| {d2:.2e}")
    if not d2 <= TOL:
        fail(f"perturbed file: baka and reference disagree by {d2:.2e}")

    # 2. the model's own window (no --windows-of) and a run directory as the source read the same
    cfg = json.loads(meta["config"])
    long = (TOKENS * 3)[: cfg["model"]["window"] + 4]
    p = baka(bin_, ["logits", src, "--tokens", ",".join(map(str, long))])
    d = float(np.abs(np.array(json.loads(p.stdout)["logits"]) - reference.logits(src, long, cfg["model"]["window"])).max())
    print(f"  default window ({cfg['model']['window']}) on {len(long)} tokens: baka vs reference max|diff| {d:.2e}")
    if not d <= TOL:
        fail(f"default --windows-of: baka and reference disagree by {d:.2e}")
    run_dir = work / src.stem
    d = float(np.abs(baka_logits(bin_, run_dir, TOKENS, WINDOWS_OF) - got).max())
    print(f"  run directory {run_dir.name}/ vs its export: max|diff| {d:.2e}")
    if not d <= TOL:
        fail(f"baka logits on the run directory and on its export differ by {d:.2e}")

    # 3. a tensor of the wrong shape must be refused with one error line naming it
    d_ff = tensors["layers.1.mlp.up.weight"].shape[0]
    for label, name, change in [
        ("truncated", "layers.1.mlp.up.weight", lambda a: a[: d_ff - 1].copy()),
        ("reshaped", "layers.0.mlp.down.weight", lambda a: np.ascontiguousarray(a.reshape(a.shape[1], a.shape[0]))),
        ("truncated", "memory.init", lambda a: a[:-1].copy()),
    ]:
        if name not in tensors:
            continue
        bad = dict(tensors)
        bad[name] = change(tensors[name])
        path = work / f"bad-shape-{name}.safetensors"
        save_file(bad, str(path), metadata=meta)
        p = baka(bin_, ["logits", path, "--tokens", ",".join(map(str, TOKENS)), "--windows-of", WINDOWS_OF], check=False)
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        print(f"  {label} {name} {list(tensors[name].shape)} -> {list(bad[name].shape)}: exit {p.returncode}, {errors[0] if errors else '<no error line>'}")
        if p.returncode == 0:
            fail(f"baka logits accepted {name} of shape {list(bad[name].shape)}")
        elif len(errors) != 1 or name not in errors[0]:
            fail(f"baka logits on {label} {name}: expected one 'error:' line naming {name}, got stderr:\n{p.stderr}")


def read_tok(path):
    raw = Path(path).read_bytes()
    magic, version, width, vocab, _reserved, count = struct.unpack_from("<8sIIIIQ", raw, 0)
    digest = raw[32:64]
    payload = raw[64:]
    if magic != b"BAKATOK\0" or version != 1 or width not in (2, 4):
        raise ValueError(f"{path}: bad header magic={magic!r} version={version} width={width}")
    if len(payload) != count * width:
        raise ValueError(f"{path}: payload {len(payload)} bytes, header says {count} tokens x {width}")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"{path}: payload SHA-256 does not match the header")
    ids = np.frombuffer(payload, dtype="<u2" if width == 2 else "<u4")
    return vocab, ids


def tokenizer_checks(bin_, cache, exported):
    print("tokenizer")
    src = exported.get("rope") or next(iter(exported.values()), None)
    tok_path = Path(str(src).removesuffix(".safetensors") + ".tokenizer.json")
    cached = cache / "default" / "bpe1024-docsplit" / "tokenizer.json"
    if tok_path.read_bytes() != cached.read_bytes():
        fail(f"{tok_path.name} differs from the data cache's {cached}")
    tok = tokenizers.Tokenizer.from_file(str(tok_path))
    vocab, ids = read_tok(cache / "default" / "bpe1024-docsplit" / "val.tok")
    if vocab != 1024 or tok.get_vocab_size() != vocab or int(ids.max()) >= vocab:
        fail(f"val.tok vocab {vocab}, tokenizer vocab {tok.get_vocab_size()}, max id {int(ids.max())}")

    # Cut the stream where the next token starts a new space-prefixed word (a pre-token boundary),
    # so that the slice is exactly what encoding its own text gives.
    def boundary(n):
        while not tok.id_to_token(int(ids[n])).startswith("Ġ"):
            n += 1
        return n

    checked = 0
    for start in (0, 5000, 50000):
        if start > 0:
            start = boundary(start)
        end = boundary(start + 200)
        chunk = [int(i) for i in ids[start:end]]
        text = tok.decode(chunk, skip_special_tokens=False)
        again = tok.encode(text, add_special_tokens=False).ids
        if again != chunk:
            k = next((i for i, (a, b) in enumerate(zip(again, chunk)) if a != b), min(len(again), len(chunk)))
            fail(f"val.tok[{start}:{end}] does not round-trip through Python tokenizers: first difference at {k}: "
                 f"file {chunk[k:k + 5]} vs re-encoded {again[k:k + 5]} (text {text[:80]!r}...)")
        checked += len(chunk)
    print(f"  val.tok: {len(ids)} tokens, SHA-256 ok; {checked} ids in 3 slices decode and re-encode to the same ids")
    enc = tok.encode(SAMPLE, add_special_tokens=False).ids
    back = tok.decode(enc, skip_special_tokens=False)
    print(f"  sample sentence: {len(SAMPLE)} chars -> {len(enc)} ids -> {'same text' if back == SAMPLE else 'DIFFERENT text'}")
    # the same sentence through baka itself, with the exported weights' tokenizer
    out = baka(bin_, ["encode", str(src), "--text", SAMPLE])
    baka_ids = json.loads(out.stdout)["ids"]
    if baka_ids != enc:
        k = next((i for i, (a, b) in enumerate(zip(baka_ids, enc)) if a != b), min(len(baka_ids), len(enc)))
        fail(f"baka encode and Python tokenizers disagree at id {k}: {baka_ids[k:k + 5]} vs {enc[k:k + 5]}")
    print(f"  baka encode gives the same {len(enc)} ids as Python tokenizers")
    if back != SAMPLE:
        fail(f"decode(encode(s)) != s: {back!r} vs {SAMPLE!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baka", required=True, help="path to the baka binary")
    ap.add_argument("--work", required=True, help="scratch directory (created)")
    ap.add_argument("--cache", default=str(ROOT / "target" / "test-data"), help="data cache dir (default target/test-data)")
    ap.add_argument("--only", nargs="*", help="run only these case names")
    a = ap.parse_args()
    bin_ = Path(a.baka).resolve()
    work = Path(a.work).resolve()
    cache = Path(a.cache).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if a.only:
        global CASES
        CASES = [c for c in CASES if c[0] in a.only]
    t0 = time.time()
    cache_set = f'data.cache_dir="{cache}"'
    baka(bin_, ["prepare", *sets(["data.vocab_size=1024", cache_set])])  # idempotent
    exported = run_cases(bin_, work, cache_set)
    if exported:
        negative_checks(bin_, work, exported)
        tokenizer_checks(bin_, cache, exported)
    print(f"parity: {len(CASES)} cases, {len(failures)} failures, {time.time() - t0:.1f}s")
    if failures:
        print("\nparity FAILED:\n" + "\n".join(f"- {f}" for f in failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
