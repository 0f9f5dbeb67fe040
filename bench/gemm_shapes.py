#!/usr/bin/env python3
"""The parallel layer's GEMMs one by one against the same products merged, timed through PyTorch
(cuBLAS) on one GPU: what fusing the layer's input projections (q, k, v, gate, up: one GEMM of
width 3d + 2F) and its output projections (o and down: one GEMM of depth d + F) would save.

In the parallel residual `x + o(attn(n)) + down(g(n))` both input projections read `n`, and both
output projections add into the same `y`, so each pair is one GEMM over concatenated weights
(PaLM's "parallel layers"); the backward's pairs likewise. One JSON line per product:
`{"gemm", "shape", "separate_us", "merged_us", "tflops_separate", "tflops_merged"}`, then a total.

    python3 bench/gemm_shapes.py [--rows 16384] [--d 768] [--ff 3072] [--reps 50]
"""

from __future__ import annotations

import argparse
import json

import torch
from cuda_timing import timed_ms


def timed(fn, reps: int) -> float:
    """Mean µs per call of `fn` over `reps` calls between CUDA events (after 5 warm-up calls)."""
    return timed_ms(fn, reps, warmup=5) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16384, help="tokens per step (batch × window)")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--ff", type=int, default=3072)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--blas", choices=["default", "cublas", "cublaslt"], default="default", help="torch.backends.cuda.preferred_blas_library")
    a = ap.parse_args()
    if a.blas != "default":
        torch.backends.cuda.preferred_blas_library(a.blas)
    r, d, f = a.rows, a.d, a.ff
    s = 3 * d + 2 * f
    g = torch.Generator(device="cuda").manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=g) * 0.05
    n, x, dy = rnd(r, d), rnd(r, d), rnd(r, d)
    w1, w2 = rnd(d, s), rnd(d + f, d)  # [wq|wk|wv|wg|wu], [wo; wd]
    p, dp = rnd(r, s), rnd(r, s)  # [qkv | gate, up] and its gradient
    z, dz = rnd(r, d + f), rnd(r, d + f)  # [o | silu(a)·u] and its gradient
    # separate products write separate buffers (as the layer does today), merged ones one buffer
    shapes = [("rs", (r, s)), ("rd", (r, d)), ("rz", (r, d + f)), ("dd", (d + f, d)), ("ds", (d, s)), ("r3d", (r, 3 * d)), ("r2f", (r, 2 * f)), ("rf", (r, f)), ("dd1", (d, d)), ("fd", (f, d)), ("d3d", (d, 3 * d)), ("d2f", (d, 2 * f))]
    out = {k: torch.empty(shape, device="cuda", dtype=torch.bfloat16) for k, shape in shapes}
    q, h = slice(0, 3 * d), slice(3 * d, s)
    o, m = slice(0, d), slice(d, d + f)
    # the separate products read separate (contiguous) tensors, as the layer does today
    w1q, w1h, w2o, w2m = (t.contiguous() for t in (w1[:, q], w1[:, h], w2[o], w2[m]))
    zo, zm, dpq, dph = (t.contiguous() for t in (z[:, o], z[:, m], dp[:, q], dp[:, h]))
    cases = {
        # forward: P = n·W1; y = x + Z·W2
        "fwd input projections": (
            lambda: (torch.mm(n, w1q, out=out["r3d"]), torch.mm(n, w1h, out=out["r2f"])),
            lambda: torch.mm(n, w1, out=out["rs"]),
            2 * r * d * s,
        ),
        "fwd output projections": (
            lambda: (torch.addmm(x, zo, w2o, out=out["rd"]), torch.addmm(out["rd"], zm, w2m, out=out["rd"])),
            lambda: torch.addmm(x, z, w2, out=out["rd"]),
            2 * r * (d + f) * d,
        ),
        # backward: dZ = dy·W2ᵀ; dW2 = Zᵀ·dy; dn = dP·W1ᵀ; dW1 = nᵀ·dP
        "bwd output projections' input grad": (
            lambda: (torch.mm(dy, w2o.t(), out=out["rd"]), torch.mm(dy, w2m.t(), out=out["rf"])),
            lambda: torch.mm(dy, w2.t(), out=out["rz"]),
            2 * r * d * (d + f),
        ),
        "bwd output projections' weight grad": (
            lambda: (torch.mm(zo.t(), dy, out=out["dd1"]), torch.mm(zm.t(), dy, out=out["fd"])),
            lambda: torch.mm(z.t(), dy, out=out["dd"]),
            2 * r * (d + f) * d,
        ),
        "bwd input projections' input grad": (
            lambda: (torch.mm(dpq, w1q.t(), out=out["rd"]), torch.addmm(out["rd"], dph, w1h.t(), out=out["rd"])),
            lambda: torch.mm(dp, w1.t(), out=out["rd"]),
            2 * r * s * d,
        ),
        "bwd input projections' weight grad": (
            lambda: (torch.mm(n.t(), dpq, out=out["d3d"]), torch.mm(n.t(), dph, out=out["d2f"])),
            lambda: torch.mm(n.t(), dp, out=out["ds"]),
            2 * r * d * s,
        ),
    }
    total = [0.0, 0.0]
    for name, (sep, merged, flop) in cases.items():
        ts, tm = timed(sep, a.reps), timed(merged, a.reps)
        total[0] += ts
        total[1] += tm
        print(json.dumps({"gemm": name, "rows": r, "d": d, "ff": f, "separate_us": round(ts, 2), "merged_us": round(tm, 2), "tflops_separate": round(flop / ts / 1e6, 1), "tflops_merged": round(flop / tm / 1e6, 1), "gpu": torch.cuda.get_device_name(), "blas": a.blas}), flush=True)
    print(json.dumps({"gemm": "total per layer", "separate_us": round(total[0], 2), "merged_us": round(total[1], 2), "saved_us_per_layer": round(total[0] - total[1], 2), "blas": a.blas}), flush=True)


if __name__ == "__main__":
    main()
