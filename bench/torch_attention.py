#!/usr/bin/env python3
"""PyTorch's causal attention alone at the pristine shape, the yardstick for bakallm's flash kernels.

`scaled_dot_product_attention(is_causal=True)` in bf16 on q, k, v [batch, heads, L, head dim] (what
bench/torch_reference.py's model calls), forward alone and forward + backward, timed with CUDA
events over --iters calls after a warm-up; prints one JSON line with the backend PyTorch chose
and ms per call of one layer, and per training step (× layers). bakallm's own per-kernel times come
from Nsight Compute (bench/profile_ncu.sh).

    python3 bench/torch_attention.py [--batch 32] [--heads 12] [--seq 512] [--hd 64] [--layers 12]
"""

import argparse
import json

import torch
import torch.nn.functional as F
from cuda_timing import timed_ms


def main():
    ap = argparse.ArgumentParser()
    for k, v in [("batch", 32), ("heads", 12), ("seq", 512), ("hd", 64), ("layers", 12), ("iters", 50)]:
        ap.add_argument(f"--{k}", type=int, default=v)
    a = ap.parse_args()
    shape = (a.batch, a.heads, a.seq, a.hd)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def both():
        q.grad = k.grad = v.grad = None
        fwd().backward(dout)

    # what PyTorch picks by itself (as in the model), then each backend that runs, pinned
    rows = {"default": (timed_ms(fwd, a.iters, warmup=3), timed_ms(both, a.iters, warmup=3))}
    for name, b in [("flash", torch.nn.attention.SDPBackend.FLASH_ATTENTION), ("cudnn", torch.nn.attention.SDPBackend.CUDNN_ATTENTION)]:
        try:
            with torch.nn.attention.sdpa_kernel([b]):
                rows[name] = (timed_ms(fwd, a.iters, warmup=3), timed_ms(both, a.iters, warmup=3))
        except RuntimeError:
            pass
    for name, (f, fb) in rows.items():
        print(json.dumps({"system": f"torch {torch.__version__} sdpa {name}", "shape": list(shape),
                          "fwd_ms_layer": round(f, 4), "fwd_bwd_ms_layer": round(fb, 4), "fwd_ms_step": round(f * a.layers, 3),
                          "fwd_bwd_ms_step": round(fb * a.layers, 3), "gpu": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
