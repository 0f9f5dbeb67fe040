"""Independent numpy reference of the bakallm forward pass.

Written from the documented safetensors name map and forward-pass description only; it shares
no code with the Rust side. Everything is computed in float64, so a difference from `baka logits`
is Rust's f32 rounding (plus any real disagreement, which is what the parity test looks for).

    from reference import logits
    out = logits("weights/x.safetensors", [5, 17, 300, 9], window=2)   # -> np.ndarray [n, V]
"""

import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


# --------------------------------------------------------------------------- loading


def load(path):
    """(config dict, {name: float64 array}) of an exported safetensors file."""
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "bakallm-1":
        raise ValueError(f"{path}: metadata format is {meta.get('format')!r}, expected 'bakallm-1'")
    cfg = json.loads(meta["config"])
    weights = {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}
    return cfg, weights


# --------------------------------------------------------------------------- building blocks


def norm(h, w, b, kind, eps):
    if kind == "layernorm":
        mean = h.mean(-1, keepdims=True)
        var = ((h - mean) ** 2).mean(-1, keepdims=True)  # biased (population) variance
        return (h - mean) / np.sqrt(var + eps) * w + b
    if kind == "rmsnorm":
        return h / np.sqrt((h**2).mean(-1, keepdims=True) + eps) * w
    raise ValueError(f"unknown norm {kind!r}")


def linear(x, w):
    """y = x @ W.T with W stored as [out, in]; no bias."""
    return x @ w.T


def silu(z):
    return z / (1.0 + np.exp(-z))


def softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def alibi_slopes(h):
    def pow2(n):
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]

    c = 1
    while c * 2 <= h:
        c *= 2
    if c == h:
        return np.array(pow2(h))
    return np.array(pow2(c) + pow2(2 * c)[0::2][: h - c])


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


# --------------------------------------------------------------------------- model


class Model:
    def __init__(self, path, overrides=None):
        """overrides: {"section.key": value} applied to the file's config (for ablations)."""
        self.cfg, self.w = load(path)
        for key, value in (overrides or {}).items():
            section, name = key.split(".")
            if name not in self.cfg[section]:
                raise KeyError(f"override of unknown setting {key!r}")
            self.cfg[section][name] = value
        m = self.cfg["model"]
        self.d, self.H, self.n_layers = m["d_model"], m["n_heads"], m["n_layers"]
        self.hd = self.d // self.H
        self.M = self.cfg["memory"]["tokens"]

    def _norm(self, name, h):
        m = self.cfg["model"]
        b = self.w.get(f"{name}.bias") if m["norm"] == "layernorm" else None
        if m["norm"] == "layernorm" and b is None:
            raise KeyError(f"{name}.bias missing for layernorm")
        return norm(h, self.w[f"{name}.weight"], b, m["norm"], m["norm_eps"])

    def _mlp(self, i, a):
        p = f"layers.{i}.mlp"
        return linear(linear(a, self.w[f"{p}.up.weight"]) * silu(linear(a, self.w[f"{p}.gate.weight"])), self.w[f"{p}.down.weight"])

    def _attn(self, i, a, pos, k_index):
        """a [L, d]; pos [L] float positions with NaN for unpositioned slots."""
        m = self.cfg["model"]
        scheme = m["positions"]
        L, H, hd = a.shape[0], self.H, self.hd
        p = f"layers.{i}.attn"
        q = linear(a, self.w[f"{p}.q.weight"])
        k = linear(a, self.w[f"{p}.k.weight"])
        v = linear(a, self.w[f"{p}.v.weight"])
        has = ~np.isnan(pos)
        n_pos = int(has.sum())
        base = np.nanmin(pos) if n_pos else 0.0

        if scheme == "linspace":
            edge = m["linspace_edge"]
            start = edge * k_index if m["global_positions"] else 0.0
            ramp = np.zeros(L)
            j = np.arange(n_pos)
            ramp[has] = start + (edge * j / (n_pos - 1) if n_pos > 1 else 0.0)
            k = k + ramp[:, None] * self.w[f"layers.{i}.pos.scale"]  # scale [1, d]

        # [H, L, hd]
        q = q.reshape(L, H, hd).transpose(1, 0, 2)
        k = k.reshape(L, H, hd).transpose(1, 0, 2)
        v = v.reshape(L, H, hd).transpose(1, 0, 2)

        if scheme in ("rope", "xpos"):
            half = hd // 2
            inv = m["rope_base"] ** (-2.0 * np.arange(half) / hd)  # [half]
            pz = np.where(has, pos, 0.0)
            ang = pz[:, None] * inv[None, :]  # [L, half]
            cos = np.where(has[:, None], np.cos(ang), 1.0)
            sin = np.where(has[:, None], np.sin(ang), 0.0)
            cos = np.concatenate([cos, cos], -1)  # dims i and i + hd/2 share pair i
            sin = np.concatenate([sin, sin], -1)
            qr = q * cos + rotate_half(q) * sin
            kr = k * cos + rotate_half(k) * sin
            if scheme == "xpos":
                gamma, sb = m["xpos_gamma"], m["xpos_scale_base"]
                centre = base + n_pos // 2
                zeta = (2.0 * np.arange(half) / hd + gamma) / (1.0 + gamma)  # [half]
                expo = np.where(has, (pz - centre) / sb, 0.0)  # [L]
                fq = zeta[None, :] ** expo[:, None]  # [L, half]
                fk = zeta[None, :] ** (-expo[:, None])
                qr = qr * np.concatenate([fq, fq], -1)
                kr = kr * np.concatenate([fk, fk], -1)
            q, k = qr, kr

        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)  # [H, L, L]
        if scheme == "alibi":
            slopes = alibi_slopes(H)
            both = has[:, None] & has[None, :]
            dist = np.where(both, np.where(has, pos, 0.0)[:, None] - np.where(has, pos, 0.0)[None, :], 0.0)
            scores = scores - slopes[:, None, None] * dist[None]
        causal = np.triu(np.ones((L, L), dtype=bool), 1)
        scores = np.where(causal[None], -np.inf, scores)
        y = softmax(scores) @ v  # [H, L, hd]
        y = y.transpose(1, 0, 2).reshape(L, self.d)
        return linear(y, self.w[f"{p}.o.weight"])

    def window(self, ids, state):
        """One window; state = (offset, window_index, memory or None). Returns (logits [n, V], new state)."""
        cfg_m, cfg_mem = self.cfg["model"], self.cfg["memory"]
        offset, k_index, memory = state
        n, M = len(ids), self.M
        x = self.w["embed.weight"][np.asarray(ids, dtype=np.int64)]

        read_len = 0
        if M > 0:
            if cfg_mem["write_init"] == "previous" and k_index > 0 and memory is not None:
                write = memory
            elif cfg_mem["write_init"] in ("learned", "previous"):
                write = self.w["memory.init"]
            else:
                raise ValueError(f"unknown memory.write_init {cfg_mem['write_init']!r}")
            if k_index > 0 and memory is not None:
                seq = np.concatenate([memory, x, write], 0)
                read_len = M
            else:
                seq = np.concatenate([x, write], 0)
        else:
            seq = x
        L = seq.shape[0]

        base = float(offset) if cfg_m["global_positions"] else 0.0
        pos = np.full(L, np.nan)
        mode = cfg_mem["positions"]
        if M == 0 or mode == "none":
            pos[read_len : read_len + n] = base + np.arange(n)
        elif mode == "window":
            pos[:] = base + np.arange(L)
        else:
            raise ValueError(f"unknown memory.positions {mode!r}")

        h = seq
        for i in range(self.n_layers):
            if cfg_m["residual"] == "parallel":
                a = self._norm(f"layers.{i}.attn_norm", h)
                h = h + self._attn(i, a, pos, k_index) + self._mlp(i, a)
            elif cfg_m["residual"] == "sequential":
                h = h + self._attn(i, self._norm(f"layers.{i}.attn_norm", h), pos, k_index)
                h = h + self._mlp(i, self._norm(f"layers.{i}.mlp_norm", h))
            else:
                raise ValueError(f"unknown residual {cfg_m['residual']!r}")

        new_memory = h[L - M :] if M > 0 else None
        tokens = h[read_len : read_len + n]
        out = linear(self._norm("norm", tokens), self.w["lm_head.weight"])
        return out, (offset + n, k_index + 1, new_memory)


def logits(path, tokens, window, carry_state=True, overrides=None):
    """Logits [n, V] (float64) for `tokens` read in consecutive windows of `window` tokens,
    carrying (offset, window index, memory) between windows (or not, with carry_state=False).
    `overrides` changes config settings, e.g. {"model.positions": "nope"} (for ablations)."""
    model = Model(path, overrides)
    state = (0, 0, None)
    outs = []
    for s in range(0, len(tokens), window):
        out, new_state = model.window(tokens[s : s + window], state)
        outs.append(out)
        if carry_state:
            state = new_state
    return np.concatenate(outs, 0)
