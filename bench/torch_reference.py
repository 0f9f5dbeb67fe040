#!/usr/bin/env python3
"""PyTorch reference for `baka bench`: training-step throughput of the BakaLLM 001_pristine shape.

Why this exists: the Rust trainer (burn 0.21) needs a yardstick. This script trains the *same*
model shape with the *same* step (AdamW, grad clipping, bf16 autocast over f32 master weights)
in PyTorch eager and under torch.compile, on the same GPU, and prints one JSON line per
configuration with the same keys and the same MFU formula as `baka bench`, so `compare.py`
can put them side by side.

Model (GPT-NeoX-style parallel residual with ONE shared pre-norm, BakaLLM "pristine"):

    h = LayerNorm(x)                                   # with bias, eps 1e-5
    x = x + o(attn(h)) + down(up(h) * silu(gate(h)))   # all Linear without bias

with causal multi-head attention, RoPE (rotate-half layout, base 10000, positions 0..T-1 within
the window) on q and k, via `scaled_dot_product_attention(is_causal=True)`. Embedding and LM head
are untied. Defaults are Pythia-160m dims: V=50304, d=768, 12 layers, 12 heads, d_ff=3072, T=512,
which gives 190,533,120 parameters.

stdout carries only JSON lines; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# H100/H200 SXM dense bf16 tensor-core peak; `baka bench` uses the same default.
DEFAULT_PEAK_TFLOPS = 989.0


def log(*a) -> None:
    """Progress goes to stderr so stdout stays machine-readable (one JSON line per run)."""
    print(*a, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    """Model shape; defaults mirror `branches/001_pristine.toml` + `ModelConfig::default()`."""

    vocab: int = 50304
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072
    seq: int = 512
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} does not divide d_model={self.d_model}")
        if self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def param_count(self) -> int:
        """Closed form, identical to Rust's `param_count` (no allocation needed).

        2·V·d (embedding + untied head) + per layer 4d² (q,k,v,o) + 3·d·d_ff (gate,up,down)
        + 2d (shared LayerNorm weight+bias), + 2d for the final LayerNorm.
        """
        d = self.d_model
        layer = 4 * d * d + 3 * d * self.d_ff + 2 * d
        return 2 * self.vocab * d + self.n_layers * layer + 2 * d

    def flops_per_token(self) -> int:
        """Training FLOPs per token, the formula `baka bench` uses (keep them identical).

        6·(N − V·d): forward+backward of every matmul weight; the embedding lookup is a gather,
        not a matmul, so its V·d parameters are excluded, while the LM head is counted.
        12·L·d·T: attention scores and values, forward+backward, not halved for causality
        (the PaLM / nanoGPT convention).
        """
        n = self.param_count()
        return 6 * (n - self.vocab * self.d_model) + 12 * self.n_layers * self.d_model * self.seq


# ---------------------------------------------------------------------------------------------
# RoPE helpers (rotate-half / GPT-NeoX layout)
# ---------------------------------------------------------------------------------------------


def rope_tables(seq: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables `[seq, head_dim]` in f32, computed in f64 like the Rust side.

    Frequency i (0 ≤ i < hd/2) has angle p·base^(−2i/hd) and drives dims i and i + hd/2.
    """
    half = head_dim // 2
    inv_freq = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] → [−x2, x1] over the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin; x is `[B, H, T, hd]`, cos/sin `[T, hd]`.

    The tables are cast to x's dtype (bf16 under autocast) so SDPA sees matching dtypes and no
    f32 copy of q/k is made, as HF's GPT-NeoX does.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Causal MHA with separate bias-free q/k/v/o projections (same matmuls as the Rust model)."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        d = c.d_model
        self.n_heads, self.head_dim = c.n_heads, c.head_dim
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

        q = apply_rope(heads(self.q(h)), cos, sin)
        k = apply_rope(heads(self.k(h)), cos, sin)
        v = heads(self.v(h))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """Gated SiLU MLP: down(up(h) · silu(gate(h))), no biases."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.gate = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.up = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.down = nn.Linear(c.d_ff, c.d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(self.up(h) * F.silu(self.gate(h)))


class Block(nn.Module):
    """Parallel residual with one shared pre-norm: x + attn(LN(x)) + mlp(LN(x))."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)  # weight 1, bias 0
        self.attn = Attention(c)
        self.mlp = Mlp(c)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.attn(h, cos, sin) + self.mlp(h)


class Model(nn.Module):
    """Embedding → blocks → final LayerNorm → untied LM head.

    `forward(idx, targets)` returns the mean next-token cross-entropy so that, under
    torch.compile, the loss is part of the compiled graph (as the Rust step computes the loss
    inside the same autodiff graph); without targets it returns the logits.
    """

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.cfg = c
        self.embed = nn.Embedding(c.vocab, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab, bias=False)
        cos, sin = rope_tables(c.seq, c.head_dim, c.rope_base)
        # Non-persistent buffers: follow .to(device), are not parameters, not in state_dict.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BakaLLM/GPT-2 init: N(0, 0.02) for every matrix, N(0, 0.02/√(2L)) for the output
        projections o and down (they add into the residual stream once per layer each)."""
        c = self.cfg
        out_std = c.init_std / math.sqrt(2 * c.n_layers)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, c.init_std)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            nn.init.normal_(blk.attn.o.weight, 0.0, out_std)
            nn.init.normal_(blk.mlp.down.weight, 0.0, out_std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        t = idx.shape[1]
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.embed(idx)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        if targets is None:
            return logits
        # Under autocast cross_entropy runs its log-softmax in f32 (autocast's f32 op list).
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


# ---------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    """Between configurations: drop cached blocks and compiled graphs so runs don't interact."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch._dynamo.reset()


def bench(model_cfg: Config, args: argparse.Namespace) -> dict:
    """Times `args.steps` training steps after `args.warmup` untimed ones; returns the JSON row.

    One fixed random batch (seeded) is reused every step, so no data loading is timed, as in
    `baka bench`. For `mode == "compile"` the compilation happens in the warm-up steps and is
    excluded from the timing. Peak memory is measured over the timed steps only (stats reset
    after warm-up), so it includes weights, AdamW state and the step's activations.
    `loss_first` is the loss of the very first step (before any update, ≈ ln V: a sanity check
    of the init), `loss_last` that of the last timed step.
    """
    device = torch.device(args.device)
    compiled = args.mode == "compile"
    torch.manual_seed(args.seed)

    model = Model(model_cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == model_cfg.param_count(), (n_params, model_cfg.param_count())
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.01,
        fused=device.type == "cuda",
    )
    step_model = torch.compile(model, mode=args.compile_mode) if compiled else model

    g = torch.Generator(device="cpu").manual_seed(args.seed)
    shape = (args.batch, model_cfg.seq)
    x = torch.randint(0, model_cfg.vocab, shape, generator=g).to(device)
    y = torch.randint(0, model_cfg.vocab, shape, generator=g).to(device)

    use_bf16 = args.dtype == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    def step() -> torch.Tensor:
        with autocast:
            loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    system = "torch-compile" if compiled else "torch-eager"
    log(
        f"[{system}] params {n_params:,} ({n_params / 1e6:.1f}M), batch {args.batch}, seq {model_cfg.seq}, "
        f"dtype {args.dtype}{' +tf32' if args.tf32 else ''}, device {device}"
    )
    if compiled and args.warmup < 1:
        log(f"[{system}] warning: --warmup 0 puts compilation inside the timed steps")

    loss_first = None
    t0 = time.perf_counter()
    for i in range(args.warmup):
        loss = step().item()  # syncs; fine outside the timed loop
        if loss_first is None:
            loss_first = loss
        log(f"[{system}] warm-up {i + 1}/{args.warmup}: loss {loss:.4f} ({time.perf_counter() - t0:.1f}s)")

    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses = []
    start = time.perf_counter()
    for _ in range(args.steps):
        losses.append(step())  # no .item(): keep the GPU queue full
    _sync(device)
    elapsed = time.perf_counter() - start

    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    # the caching allocator's peak, to compare with baka's peak_mem_gib (cubecl's pool, reserved)
    peak_reserved = torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None
    losses = [v.item() for v in losses]
    if loss_first is None:
        loss_first = losses[0]
    ms_step = 1e3 * elapsed / args.steps
    tok_s = args.batch * model_cfg.seq * args.steps / elapsed
    mfu = tok_s * model_cfg.flops_per_token() / (args.peak_tflops * 1e12)
    log(
        f"[{system}] {args.steps} steps in {elapsed:.3f}s: {tok_s:,.0f} tok/s, {ms_step:.2f} ms/step, "
        f"MFU {100 * mfu:.3g}%, peak {'n/a' if peak_mem is None else f'{peak_mem:.2f} GiB'}"
    )

    row = {
        "system": system,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": args.batch,
        "seq": model_cfg.seq,
        "params": n_params,
        "dtype": args.dtype,
        "tok_s": round(tok_s, 1),
        "ms_step": round(ms_step, 3),
        "mfu": float(f"{mfu:.4g}"),  # 4 significant digits: tiny on CPU, ~0.x on GPU
        "peak_mem_gib": None if peak_mem is None else round(peak_mem, 3),
        "peak_reserved_gib": None if peak_reserved is None else round(peak_reserved, 3),
        "loss_first": round(loss_first, 5),
        "loss_last": round(losses[-1], 5),
    }
    return row  # model, optimizer and batch die with this frame; main() then frees the cache


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--mode",
        choices=["eager", "compile", "both"],
        default="both",
        help="both = eager then compile in one process (memory freed, peak stats reset between)",
    )
    p.add_argument("--batch", type=int, default=32, help="sequences per step (B)")
    p.add_argument("--seq", type=int, default=512, help="tokens per window (T)")
    p.add_argument("--vocab", type=int, default=50304, help="vocabulary rows (V), GPT-NeoX tokenizer padded to 64")
    p.add_argument("--d-model", type=int, default=768, help="hidden size (d)")
    p.add_argument("--layers", type=int, default=12, help="decoder blocks (L)")
    p.add_argument("--heads", type=int, default=12, help="attention heads; head dim = d/heads, must be even")
    p.add_argument("--d-ff", type=int, default=3072, help="MLP width of gate/up")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (include torch.compile time)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument(
        "--dtype",
        choices=["bf16", "f32"],
        default="bf16",
        help="bf16 = f32 master weights + bf16 autocast; f32 = no autocast",
    )
    p.add_argument(
        "--tf32", action="store_true", help="allow TF32 tensor cores for f32 matmuls (only matters with --dtype f32)"
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=DEFAULT_PEAK_TFLOPS,
        help="peak used for MFU (H100/H200 dense bf16); f32 runs are still reported against it",
    )
    p.add_argument(
        "--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune (None = torch's default)"
    )
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu is for smoke tests only")
    p.add_argument("--seed", type=int, default=0, help="seeds the init and the fixed random batch")
    p.add_argument(
        "--count-only",
        action="store_true",
        help="print the shape's parameter count and FLOPs/token as JSON and exit (no allocation)",
    )
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--batch and --steps must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(
        vocab=args.vocab, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, d_ff=args.d_ff, seq=args.seq
    )
    n = cfg.param_count()
    log(
        f"shape: V={cfg.vocab} d={cfg.d_model} L={cfg.n_layers} H={cfg.n_heads} d_ff={cfg.d_ff} T={cfg.seq}; "
        f"params {n:,} ({n / 1e6:.1f}M); flops/token {cfg.flops_per_token():,}"
    )
    if args.count_only:
        print(json.dumps({"params": n, "params_m": round(n / 1e6, 1), "flops_per_token": cfg.flops_per_token()}))
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        log("error: --device cuda but torch.cuda.is_available() is False (use --device cpu for a smoke test)")
        return 2
    if args.tf32:
        # "high" = TF32 tensor cores for f32 matmuls (the model has no convs); also seen by Inductor.
        torch.set_float32_matmul_precision("high")
    if args.device == "cpu":
        log("note: --device cpu is a smoke test; its numbers say nothing about GPU speed")

    modes = ["eager", "compile"] if args.mode == "both" else [args.mode]
    device = torch.device(args.device)
    failed = 0
    for m in modes:
        _free(device)
        try:
            row = bench(cfg, argparse.Namespace(**{**vars(args), "mode": m}))
        except torch.cuda.OutOfMemoryError as e:  # report and go on to the next mode
            log(f"[torch-{m}] out of memory: {str(e).splitlines()[0]}")
            failed += 1
            continue
        print(json.dumps(row), flush=True)
    _free(device)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
