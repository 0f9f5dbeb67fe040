#!/usr/bin/env python3
"""PyTorch reference for `baka bench`: training-step throughput of the BakaLLM model shape, per branch.

Why this exists: the Rust trainer (burn 0.21) needs a yardstick. This script trains the *same*
model shape with the *same* step (AdamW, grad clipping, bf16 autocast over f32 master weights)
in PyTorch eager and under torch.compile, on the same GPU, and prints one JSON line per
configuration with the same keys and the same MFU formula as `baka bench`, so `compare.py`
can put them side by side.

Model (GPT-NeoX-style parallel residual with ONE shared pre-norm, BakaLLM "pristine"):

    h = LayerNorm(x)                                   # with bias, eps 1e-5
    x = x + o(attn(h)) + down(up(h) * silu(gate(h)))   # all Linear without bias

with causal multi-head attention via `scaled_dot_product_attention`. Embedding and LM head are
untied. Defaults are Pythia-160m dims: V=50304, d=768, 12 layers, 12 heads, d_ff=3072, T=512,
which gives 190,533,120 parameters (+ d per layer for 004_linspace).

`--branch` picks the position scheme of that baka branch (`branches/*.toml`, `model.positions`),
with the constants of `src/model/positions.rs` (positions p = 0..T-1 within the window):
  001_pristine  RoPE: rotate-half (GPT-NeoX) layout, angle p·10000^(−2i/hd) on dims i and i+hd/2.
  002_nope      nothing; the causal mask is the only source of order.
  003_xpos      RoPE with q scaled by ζ_i^((p−T//2)/512) and k by its inverse,
                ζ_i = (2i/hd + 0.4)/1.4 (x-transformers' constants).
  004_linspace  k += linspace(0, 0.1, T)[p] · scale before the head split; scale is a learned
                `[1, d]` per-layer parameter (`pos.scale`) initialised to ones. No rotation.
  005_alibi     logits of head h get −m_h·(i−j), slopes from the ALiBi paper (non-powers of two
                interleave the next power's slopes); SDPA with a float `[H, T, T]` mask that also
                holds the −inf above the diagonal. No rotation.
`--self-test` checks these schemes on the CPU at tiny shapes and exits.

stdout carries only JSON lines; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# H100/H200 SXM dense bf16 tensor-core peak; `baka bench` uses the same default.
DEFAULT_PEAK_TFLOPS = 989.0

# baka branch -> its `model.positions` (branches/*.toml); all else is 001_pristine's shape.
BRANCH_POSITIONS = {
    "001_pristine": "rope",
    "002_nope": "nope",
    "003_xpos": "xpos",
    "004_linspace": "linspace",
    "005_alibi": "alibi",
}
POSITIONS = ("nope", "rope", "xpos", "linspace", "alibi")


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
    positions: str = "rope"  # nope | rope | xpos | linspace | alibi (BRANCH_POSITIONS)
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    xpos_gamma: float = 0.4
    xpos_scale_base: float = 512.0
    linspace_edge: float = 0.1
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise ValueError(f"positions={self.positions!r}: expected one of {', '.join(POSITIONS)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} does not divide d_model={self.d_model}")
        if self.rotates and self.head_dim % 2:
            raise ValueError(f"{self.positions} needs an even head dim, got {self.head_dim}")

    @property
    def rotates(self) -> bool:
        return self.positions in ("rope", "xpos")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def param_count(self) -> int:
        """Closed form, identical to Rust's `param_count` (no allocation needed).

        2·V·d (embedding + untied head) + per layer 4d² (q,k,v,o) + 3·d·d_ff (gate,up,down)
        + 2d (shared LayerNorm weight+bias) [+ d for linspace's pos.scale], + 2d for the final LayerNorm.
        """
        d = self.d_model
        linspace = d if self.positions == "linspace" else 0
        layer = 4 * d * d + 3 * d * self.d_ff + 2 * d + linspace
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
# Position schemes (src/model/positions.rs): one small table builder per scheme, computed in f64
# and stored in f32 like the Rust side. RoPE and xPos use the rotate-half / GPT-NeoX layout.
# ---------------------------------------------------------------------------------------------


def rope_angles(seq: int, head_dim: int, base: float) -> torch.Tensor:
    """Angles `[seq, head_dim]` in f64: frequency i (0 ≤ i < hd/2) has angle p·base^(−2i/hd) and
    drives dims i and i + hd/2."""
    half = head_dim // 2
    inv_freq = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cat([ang, ang], dim=-1)


def rope_tables(seq: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE (001_pristine): cos/sin tables `[seq, head_dim]` in f32, computed in f64."""
    ang = rope_angles(seq, head_dim, base)
    return ang.cos().float(), ang.sin().float()


def xpos_tables(
    seq: int, head_dim: int, base: float, gamma: float, scale_base: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """xPos (003_xpos): RoPE's tables with the decay folded in, `(cos_q, sin_q, cos_k, sin_k)`.

    Pair i decays by ζ_i = (2i/hd + γ)/(1 + γ); q is scaled by ζ_i^((p − c)/scale_base) and k by
    ζ_i^(−(p − c)/scale_base), with the centre c = seq // 2 (x-transformers; Rust's
    `Layout::centre`). A q·k score thus decays as ζ_i^((m − n)/scale_base).
    """
    half = head_dim // 2
    zeta = (2.0 * torch.arange(half, dtype=torch.float64) / head_dim + gamma) / (1.0 + gamma)
    power = (torch.arange(seq, dtype=torch.float64) - seq // 2)[:, None] / scale_base
    ang = rope_angles(seq, head_dim, base)
    out = []
    for sign in (1.0, -1.0):
        decay = zeta[None, :] ** (sign * power)
        decay = torch.cat([decay, decay], dim=-1)
        out += [(ang.cos() * decay).float(), (ang.sin() * decay).float()]
    return out[0], out[1], out[2], out[3]


def linspace_ramp(seq: int, edge: float) -> torch.Tensor:
    """linspace (004_linspace): `linspace(0, edge, seq)` as `[seq, 1]`, step edge/(seq−1) in f64."""
    step = edge / (seq - 1) if seq > 1 else 0.0
    return (torch.arange(seq, dtype=torch.float64) * step).float()[:, None]


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi slopes m_k = 2^(−8k/H), k = 1..H; for H not a power of two, the slopes of the closest
    lower power of two, then every other slope of the next power (Press et al.'s reference code)."""

    def pow2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]

    if n_heads & (n_heads - 1) == 0:
        return pow2(n_heads)
    closest = 1 << (n_heads.bit_length() - 1)
    return pow2(closest) + pow2(2 * closest)[0::2][: n_heads - closest]


def alibi_bias(seq: int, n_heads: int) -> torch.Tensor:
    """ALiBi (005_alibi): the logits' additive mask `[H, seq, seq]` in f32: −m_h·(i − j) for key
    j ≤ query i and −inf above the diagonal, so it is the causal mask too."""
    slopes = torch.tensor(alibi_slopes(n_heads), dtype=torch.float64)
    p = torch.arange(seq)
    dist = (p[:, None] - p[None, :]).to(torch.float64)
    bias = -slopes[:, None, None] * dist[None]
    return bias.masked_fill(p[None, :] > p[:, None], float("-inf")).float()


class Pos(NamedTuple):
    """What every layer of a window shares: q/k rotation tables `(cos, sin)` (RoPE, xPos), the
    logits' float mask with the causal −inf (ALiBi; None = `is_causal=True`) and k's ramp
    (linspace). None = the scheme has no such part."""

    rot_q: tuple[torch.Tensor, torch.Tensor] | None = None
    rot_k: tuple[torch.Tensor, torch.Tensor] | None = None
    bias: torch.Tensor | None = None
    ramp: torch.Tensor | None = None


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


def add_linspace(k: torch.Tensor, ramp: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """k `[B, T, d]` + ramp `[T, 1]` · scale `[1, d]`, before the head split, in k's dtype (as
    Rust's `k_proj`: the ramp and the scale are cast to the key's dtype first)."""
    return k + ramp.to(k.dtype) * scale.to(k.dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal SDPA; with a bias (ALiBi) as a float `attn_mask` holding the causal −inf itself
    (`is_causal` cannot be combined with a mask), cast to q's dtype as Rust casts its bias."""
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class LinspaceScale(nn.Module):
    """BakaLLM's learnable per-layer scale of the linspace ramp (`[1, d]`, initialised to ones)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, d))


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
        # parameter `...attn.pos.scale`; Rust exports it as `layers.{i}.pos.scale`
        self.pos = LinspaceScale(d) if c.positions == "linspace" else None

    def qkv(self, h: torch.Tensor, pos: Pos) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected, positioned q, k, v as `[B, H, T, hd]`."""
        b, t, d = h.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

        def rotate(x: torch.Tensor, rot: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
            return x if rot is None else apply_rope(x, *rot)

        key = self.k(h)
        if pos.ramp is not None:
            key = add_linspace(key, pos.ramp, self.pos.scale)
        q = rotate(heads(self.q(h)), pos.rot_q)
        k = rotate(heads(key), pos.rot_k)
        return q, k, heads(self.v(h))

    def forward(self, h: torch.Tensor, pos: Pos) -> torch.Tensor:
        b, t, d = h.shape
        y = attend(*self.qkv(h, pos), pos.bias)
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

    def forward(self, x: torch.Tensor, pos: Pos) -> torch.Tensor:
        h = self.norm(x)
        return x + self.attn(h, pos) + self.mlp(h)


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
        # The scheme's tables, for windows of c.seq tokens. Non-persistent buffers: follow
        # .to(device), are not parameters, not in state_dict.
        buffers: dict[str, torch.Tensor] = {}
        if c.positions == "rope":
            buffers["rope_cos"], buffers["rope_sin"] = rope_tables(c.seq, c.head_dim, c.rope_base)
        elif c.positions == "xpos":
            tables = xpos_tables(c.seq, c.head_dim, c.rope_base, c.xpos_gamma, c.xpos_scale_base)
            for name, t in zip(("xpos_cos_q", "xpos_sin_q", "xpos_cos_k", "xpos_sin_k"), tables):
                buffers[name] = t
        elif c.positions == "linspace":
            buffers["linspace_ramp"] = linspace_ramp(c.seq, c.linspace_edge)
        elif c.positions == "alibi":
            buffers["alibi_bias"] = alibi_bias(c.seq, c.n_heads)
        for name, t in buffers.items():
            self.register_buffer(name, t, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BakaLLM/GPT-2 init: N(0, 0.02) for every matrix, N(0, 0.02/√(2L)) for the output
        projections o and down (they add into the residual stream once per layer each).
        linspace's pos.scale keeps its ones."""
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

    def positions(self, t: int) -> Pos:
        """The tables of a window of t tokens. xPos's centre and linspace's ramp depend on the
        window's length, so those two need t == cfg.seq (as in the benchmark)."""
        kind = self.cfg.positions
        if kind in ("xpos", "linspace") and t != self.cfg.seq:
            raise ValueError(f"{kind} tables are built for windows of {self.cfg.seq} tokens, got {t}")
        if kind == "rope":
            rot = (self.rope_cos[:t], self.rope_sin[:t])
            return Pos(rot_q=rot, rot_k=rot)
        if kind == "xpos":
            return Pos(rot_q=(self.xpos_cos_q, self.xpos_sin_q), rot_k=(self.xpos_cos_k, self.xpos_sin_k))
        if kind == "linspace":
            return Pos(ramp=self.linspace_ramp)
        if kind == "alibi":
            return Pos(bias=self.alibi_bias[:, :t, :t])
        return Pos()  # nope

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        pos = self.positions(idx.shape[1])
        x = self.embed(idx)
        for blk in self.blocks:
            x = blk(x, pos)
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


def _world() -> tuple[int, int]:
    """(WORLD_SIZE, RANK) as torchrun sets them; (1, 0) alone."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


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
    world, rank = _world()

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
    # under torchrun: DistributedDataParallel (gradients all-reduced in buckets during the
    # backward), each rank with args.batch / WORLD_SIZE sequences of the global batch
    wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    step_model = torch.compile(wrapped, mode=args.compile_mode) if compiled else wrapped

    if args.batch % world:
        raise SystemExit(f"--batch {args.batch}: expected a multiple of WORLD_SIZE={world}")
    share = args.batch // world
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    shape = (args.batch, model_cfg.seq)
    x = torch.randint(0, model_cfg.vocab, shape, generator=g)[rank * share : (rank + 1) * share].to(device)
    y = torch.randint(0, model_cfg.vocab, shape, generator=g)[rank * share : (rank + 1) * share].to(device)

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

    system = ("torch-compile" if compiled else "torch-eager") + ("-ddp" if world > 1 else "")
    log(
        f"[{system}] {args.branch}: params {n_params:,} ({n_params / 1e6:.1f}M), "
        f"batch {args.batch}, seq {model_cfg.seq}, "
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
    mfu = tok_s * model_cfg.flops_per_token() / (args.peak_tflops * 1e12 * world)  # per GPU
    log(
        f"[{system}] {args.steps} steps in {elapsed:.3f}s: {tok_s:,.0f} tok/s, {ms_step:.2f} ms/step, "
        f"MFU {100 * mfu:.3g}%, peak {'n/a' if peak_mem is None else f'{peak_mem:.2f} GiB'}"
    )

    trace = trace_steps(step, args.trace, system, device) if args.trace else None
    row = {
        "system": system,
        "branch": args.branch,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": args.batch,
        "gpus": world,
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
    if trace is not None:
        row["trace"] = trace
    return row  # model, optimizer and batch die with this frame; main() then frees the cache


TRACE_STEPS = 5  # as `baka bench --trace`


def trace_steps(step, path: str, system: str, device: torch.device) -> dict:
    """Records TRACE_STEPS more steps with the PyTorch profiler (CUPTI, as `baka bench --trace`),
    after one recorded but dropped step (the profiler's start-up); writes the Chrome trace to
    `path` with the system's name before its extension and returns `trace_summary` of it."""
    from torch.profiler import ProfilerActivity, profile, schedule

    root, ext = os.path.splitext(path)
    out = f"{root}-{system}{ext or '.json'}"
    # one cycle (repeat=1), written when it ends: a later cycle would clear its events
    sched = schedule(wait=0, warmup=1, active=TRACE_STEPS, repeat=1)
    with profile(activities=[ProfilerActivity.CUDA], schedule=sched, on_trace_ready=lambda p: p.export_chrome_trace(out)) as prof:
        for _ in range(1 + TRACE_STEPS):
            step()
            _sync(device)  # each step whole inside its profiler step
            prof.step()
    with open(out) as f:
        events = json.load(f)["traceEvents"]
    summary = trace_summary(events, TRACE_STEPS)
    summary["file"] = out
    return summary


def trace_summary(events: list[dict], steps: int) -> dict:
    """Per step: span, busy and idle ms of the GPU's kernels, copies and memsets (the Chrome
    trace's "kernel", "gpu_memcpy", "gpu_memset" events, or "memcpy", "memset" in baka's), idle by
    gap length and the 15 kernels taking the most time; the definitions and rounding of
    `baka bench --trace` (src/timeline.rs), on whole ns as there."""
    r = lambda x, d: math.floor(x * d + 0.5) / d  # noqa: E731  (Rust's f64::round: half away from zero)
    ns = lambda us: int(r(us * 1e3, 1))  # noqa: E731
    acts = sorted(
        (ns(e["ts"]), ns(e["ts"]) + ns(e.get("dur", 0)), e["name"], e["cat"])
        for e in events
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset", "memcpy", "memset")
    )
    if not acts:
        return {"steps": steps, "activities": 0}
    per = lambda t: r(t / steps / 1e3, 1) / 1e3  # noqa: E731  (ns per step, then whole µs)
    busy, end, gaps = 0, acts[0][0], []
    for start, stop, _, _ in acts:
        if start > end:
            gaps.append(start - end)
            end = start
        if stop > end:
            busy += stop - end
            end = stop
    span = max(a[1] for a in acts) - acts[0][0]
    edges, labels = [5_000, 20_000, 100_000], ["under_5us", "5_to_20us", "20_to_100us", "100us_and_over"]
    idle = {lab: [0, 0] for lab in labels}
    for g in gaps:
        b = idle[labels[sum(g >= e for e in edges)]]
        b[0] += 1
        b[1] += g
    by: dict[str, list] = {}
    for start, stop, name, cat in acts:
        t = by.setdefault(name, [0, 0])
        t[0] += max(stop - start, 0)
        t[1] += 1
    total = sum(v[0] for v in by.values()) or 1
    top = sorted(by.items(), key=lambda kv: (-kv[1][0], kv[0]))[:15]
    return {
        "steps": steps,
        "span_ms": per(span),
        "busy_ms": per(busy),
        "idle_ms": per(span - busy),
        "kernels": sum(a[3] == "kernel" for a in acts) / steps,
        "idle_by_gap": {k: {"gaps": r(n / steps, 1e2), "ms": per(t)} for k, (n, t) in idle.items()},
        "top": [
            {"name": n if len(n) <= 80 else n[:80] + "…", "ms": per(v[0]), "launches": v[1] / steps, "share": r(v[0] / total, 1e3)}
            for n, v in top
        ],
    }


def self_test() -> int:
    """Checks of the position schemes on the CPU at tiny shapes, against hand-written formulas
    and the expectations of src/model/positions.rs's tests. Prints one line per check to stderr;
    returns 1 if any failed."""
    failures = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        log(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")
        if not ok:
            failures.append(name)

    def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> tuple[bool, str]:
        err = (a - b).abs().max().item()
        return err <= tol, f"max |diff| {err:.3g} > {tol:g}"

    g = torch.Generator().manual_seed(0)
    f64 = torch.float64

    # ALiBi slopes: Rust's alibi_slopes_match_the_paper, and H = 6 (4 + every other of 8's)
    check("alibi slopes H=8", alibi_slopes(8) == [2.0**-k for k in range(1, 9)], str(alibi_slopes(8)))
    want12 = [2.0**-k for k in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    check("alibi slopes H=12", len(alibi_slopes(12)) == 12 and all(
        abs(a - b) < 1e-12 for a, b in zip(alibi_slopes(12), want12)), str(alibi_slopes(12)))
    want6 = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    check("alibi slopes H=6", alibi_slopes(6) == want6, str(alibi_slopes(6)))
    # ALiBi bias: Rust's alibi_bias_is_minus_slope_times_distance_and_causal
    b = alibi_bias(4, 2)
    check("alibi bias shape", tuple(b.shape) == (2, 4, 4), str(tuple(b.shape)))
    check("alibi bias values", b[0, 3, 0].item() == -3 / 16 and b[1, 1, 0].item() == -1 / 256
          and b[0, 0, 1].item() == float("-inf") and b[1, 2, 2].item() == 0.0, str(b))
    # SDPA with the float mask == softmax(q·kᵀ/√hd + bias)·v written out, H = 6 heads
    heads, t, hd = 6, 7, 4
    q, k, v = (torch.randn(2, heads, t, hd, generator=g, dtype=f64) for _ in range(3))
    bias = alibi_bias(t, heads).to(f64)
    by_hand = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1) @ v
    check("alibi SDPA(attn_mask=bias) == hand-written softmax", *close(attend(q, k, v, bias), by_hand, 1e-12))
    check("alibi bias changes the attention", not close(attend(q, k, v, bias), attend(q, k, v, None), 1e-6)[0])

    # RoPE / xPos: the score of a query at m against a key at n, one head
    def score(tables: tuple, m: int, n: int, qv: list[float], kv: list[float]) -> float:
        cq, sq, ck, sk = tables
        qt, kt = torch.tensor(qv, dtype=f64), torch.tensor(kv, dtype=f64)
        qr = qt * cq[m].double() + rotate_half(qt) * sq[m].double()
        kr = kt * ck[n].double() + rotate_half(kt) * sk[n].double()
        return (qr * kr).sum().item()

    rope = rope_tables(512, 4, 10000.0) * 2
    xpos = xpos_tables(512, 4, 10000.0, 0.4, 512.0)
    check("xpos table shapes", all(tuple(x.shape) == (512, 4) for x in xpos), str([tuple(x.shape) for x in xpos]))
    qv, kv = [0.0, 1.0, 0.0, 0.5], [0.0, 0.8, 0.0, -0.3]
    ratio = score(xpos, 300, 200, qv, kv) / score(rope, 300, 200, qv, kv)
    # Rust's xpos_decays_by_zeta_to_the_relative_distance: ζ_1 = 0.9/1.4, ζ_1^(100/512) = 0.917323
    check("xpos decay ζ^((m−n)/512)", abs(ratio - 0.917323) < 1e-4, f"ratio {ratio} expected 0.917323")
    qv, kv = [0.3, -1.2, 0.7, 0.25], [-0.6, 0.2, 1.3, -0.8]
    s1, s2 = score(xpos, 5, 2, qv, kv), score(xpos, 105, 102, qv, kv)
    check("xpos score depends on m − n only", abs(s1 - s2) < 1e-5, f"{s1} vs {s2}")
    s1, s2 = score(rope, 5, 2, qv, kv), score(rope, 105, 102, qv, kv)
    check("rope score depends on m − n only", abs(s1 - s2) < 1e-5, f"{s1} vs {s2}")

    # linspace: Rust's linspace_ramp_is_exact and linspace_adds_ramp_times_scale_to_k_only
    ramp = linspace_ramp(5, 0.1)
    check("linspace ramp shape", tuple(ramp.shape) == (5, 1), str(tuple(ramp.shape)))
    check("linspace ramp values", *close(ramp[:, 0], torch.tensor([0.0, 0.025, 0.05, 0.075, 0.1]), 1e-7))
    c = Config(vocab=64, d_model=8, n_layers=1, n_heads=2, d_ff=16, seq=5, positions="linspace")
    attn = Attention(c).double()
    with torch.no_grad():
        attn.pos.scale.copy_(0.5 + torch.arange(8, dtype=f64)[None])
    h = torch.randn(1, 5, 8, generator=g, dtype=f64)
    q1, k1, v1 = attn.qkv(h, Pos(ramp=ramp.double()))
    q0, k0, v0 = attn.qkv(h, Pos())
    check("linspace leaves q and v alone", torch.equal(q1, q0) and torch.equal(v1, v0))
    diff = (k1 - k0).transpose(1, 2).reshape(5, 8)  # back to [T, d] before the head split
    want = 0.025 * torch.arange(5, dtype=f64)[:, None] * (0.5 + torch.arange(8, dtype=f64))[None]
    check("linspace adds ramp[t]·scale[c] to k", *close(diff, want, 1e-7))

    # Every branch: parameter count, a finite loss, causality, gradients into pos.scale
    for branch, kind in BRANCH_POSITIONS.items():
        c = Config(vocab=64, d_model=24, n_layers=2, n_heads=6, d_ff=32, seq=8, positions=kind)
        torch.manual_seed(0)
        model = Model(c).double()
        n = sum(p.numel() for p in model.parameters())
        check(f"{branch}: params == closed form", n == c.param_count(), f"{n} vs {c.param_count()}")
        idx = torch.randint(0, 64, (2, 8), generator=g)
        loss = model(idx, torch.randint(0, 64, (2, 8), generator=g))
        check(f"{branch}: loss finite", bool(torch.isfinite(loss)), str(loss.item()))
        loss.backward()
        if kind == "linspace":
            grads = [blk.attn.pos.scale.grad for blk in model.blocks]
            check(f"{branch}: pos.scale gets gradients", all(gr is not None and gr.abs().sum() > 0 for gr in grads))
        with torch.no_grad():
            bumped = idx.clone()
            bumped[:, 5] = (bumped[:, 5] + 1) % 64
            y0, y1 = model(idx), model(bumped)
        check(f"{branch}: causal", torch.equal(y0[:, :5], y1[:, :5]) and not torch.equal(y0[:, 5], y1[:, 5]))

    log(f"self-test: {len(failures)} failed" if failures else "self-test: all checks passed")
    return 1 if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--branch",
        choices=list(BRANCH_POSITIONS),
        default="001_pristine",
        help="the baka branch whose position scheme the model uses (see the module doc)",
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
        "--trace",
        metavar="FILE",
        help="record 5 more steps with the PyTorch profiler: Chrome trace to FILE (the system's name "
        "added before the extension), summary as the row's 'trace', as `baka bench --trace`",
    )
    p.add_argument(
        "--count-only",
        action="store_true",
        help="print the shape's parameter count and FLOPs/token as JSON and exit (no allocation)",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="check the position schemes on the CPU at tiny shapes (exit 1 on a failure) and exit",
    )
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--batch and --steps must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    cfg = Config(
        vocab=args.vocab,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        d_ff=args.d_ff,
        seq=args.seq,
        positions=BRANCH_POSITIONS[args.branch],
    )
    n = cfg.param_count()
    log(
        f"{args.branch} ({cfg.positions}) shape: "
        f"V={cfg.vocab} d={cfg.d_model} L={cfg.n_layers} H={cfg.n_heads} d_ff={cfg.d_ff} T={cfg.seq}; "
        f"params {n:,} ({n / 1e6:.1f}M); flops/token {cfg.flops_per_token():,}"
    )
    if args.count_only:
        counts = {"params": n, "params_m": round(n / 1e6, 1), "flops_per_token": cfg.flops_per_token()}
        print(json.dumps({"branch": args.branch, **counts}))
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
    world, rank = _world()
    if world > 1:
        # torchrun: one process per GPU, NCCL between them (gloo on the CPU), NVLink multicast off
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if args.device == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
            args.device = f"cuda:{local}"
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    failed = 0
    for m in modes:
        _free(device)
        try:
            row = bench(cfg, argparse.Namespace(**{**vars(args), "mode": m}))
        except torch.cuda.OutOfMemoryError as e:  # report and go on to the next mode
            log(f"[torch-{m}] out of memory: {str(e).splitlines()[0]}")
            failed += 1
            continue
        if rank == 0:
            print(json.dumps(row), flush=True)
    _free(device)
    if world > 1:
        torch.distributed.destroy_process_group()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
