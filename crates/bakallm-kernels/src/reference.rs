//! The reference of every [`BakaOps`] operation in burn's ops, read top to bottom: what the model
//! computes, on any backend. The CPU runs exactly this (plus its one-pass LM head loss); the CUDA
//! kernels are tested against it.

use super::ops::{AttnWeights, BakaOps, Kernels, MlpWeights, NormWeights, Positions, Rot};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::{DType, FloatDType, TensorPrimitive};

/// Casts to `dt` unless the tensor already has it (no extra graph node in the f32 path).
pub fn to<B: Backend, const D: usize>(x: Tensor<B, D>, dt: FloatDType) -> Tensor<B, D> {
    if x.dtype() == DType::from(dt) {
        x
    } else {
        x.cast(dt)
    }
}

/// `x [b, l, d] · w [d, n]` as one `[b·l, d] × [d, n]` product: one GEMM each way and a weight
/// gradient without a per-batch copy to sum (burn's 3-D linear runs b small GEMMs).
pub fn linear<B: Backend>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, t, d] = x.dims();
    let w = to(w, x.dtype().into());
    let n = w.dims()[1];
    x.reshape([b * t, d]).matmul(w).reshape([b, t, n])
}

/// LayerNorm (burn's) or RMSNorm over the last dim in f32, back in `x`'s dtype.
pub fn norm<B: Backend>(x: Tensor<B, 3>, w: &NormWeights<B>) -> Tensor<B, 3> {
    let dt = x.dtype();
    let x = to(x, FloatDType::F32);
    let y = match &w.bias {
        Some(b) => {
            Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(x.into_primitive().tensor(), w.weight.clone().into_primitive().tensor(), Some(b.clone().into_primitive().tensor()), w.eps)))
        }
        // burn's RmsNorm
        None => {
            let rms = (x.clone().square().mean_dim(2) + w.eps).sqrt();
            (x / rms) * w.weight.clone().unsqueeze()
        }
    };
    if dt == DType::F32 {
        y
    } else {
        y.cast(dt)
    }
}

/// Rotate-half: `[x1, x2] -> [-x2, x1]` along the last dim.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, hd / 2);
    let x2 = x.narrow(3, hd / 2, hd / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// Applies rotation tables (RoPE, or xPos with its decay folded in) to `x [·, ·, L, hd]`, the
/// tables broadcasting over the first two dims.
pub fn rotate<B: Backend>(x: Tensor<B, 4>, rot: &Rot<B>) -> Tensor<B, 4> {
    match rot {
        None => x,
        Some((c, s)) => x.clone() * c.clone() + rotate_half(x) * s.clone(),
    }
}

/// The key projection `[b, L, d]`, with the linspace ramp if any (before the head split, as
/// BakaLLM: k grows toward the end of the window).
pub fn k_proj<B: BakaOps>(h: Tensor<B, 3>, w: &AttnWeights<B>, pos: &Positions<B>, k: &Kernels) -> Tensor<B, 3> {
    let key = B::dense(h, w.k.clone(), k);
    match key_term(pos, w, key.dtype().into()) {
        Some(term) => key + term,
        None => key,
    }
}

/// What linspace adds to k, `[1, L, d]` in `dtype`: its ramp times the layer's scale (`None` for
/// the other schemes).
pub fn key_term<B: Backend>(pos: &Positions<B>, w: &AttnWeights<B>, dtype: FloatDType) -> Option<Tensor<B, 3>> {
    match (&pos.k_ramp, &w.k_scale) {
        (Some(ramp), Some(scale)) => Some(ramp.clone() * to(scale.clone(), dtype).unsqueeze::<3>()),
        _ => None,
    }
}

/// Projected, positioned q, k, v as `[b, H, L, hd]`.
pub fn qkv<B: BakaOps>(h: Tensor<B, 3>, w: &AttnWeights<B>, pos: &Positions<B>, k: &Kernels) -> [Tensor<B, 4>; 3] {
    let [b, l, d] = h.dims();
    let key = k_proj(h.clone(), w, pos, k);
    // rotated while still `[b, L, H, hd]` (contiguous; the tables as `[1, L, 1, hd]`), then viewed
    // as `[b, H, L, hd]`: elementwise ops on the swapped view are slow on the CPU
    let heads = |x: Tensor<B, 3>| x.reshape([b, l, w.heads, d / w.heads]);
    let by_token = |r: &Rot<B>| r.as_ref().map(|(c, s)| (c.clone().swap_dims(1, 2), s.clone().swap_dims(1, 2)));
    let q = rotate(heads(B::dense(h.clone(), w.q.clone(), k)), &by_token(&pos.rot_q)).swap_dims(1, 2);
    let key = rotate(heads(key), &by_token(&pos.rot_k)).swap_dims(1, 2);
    [q, key, heads(B::dense(h, w.v.clone(), k)).swap_dims(1, 2)]
}

/// Causal self-attention: `softmax(q·kᵀ/√hd + bias) · v`, heads merged, output projection.
pub fn attention<B: BakaOps>(h: Tensor<B, 3>, w: &AttnWeights<B>, pos: &Positions<B>, k: &Kernels) -> Tensor<B, 3> {
    let [b, l, d] = h.dims();
    let [q, key, v] = qkv(h, w, pos, k);
    let scores = q.matmul(key.swap_dims(2, 3)).mul_scalar(w.scale()) + pos.bias.clone();
    let y = softmax(scores, 3).matmul(v);
    B::dense(y.swap_dims(1, 2).reshape([b, l, d]), w.o.clone(), k)
}

/// `down(up(x) ⊙ silu(gate(x)))`.
pub fn mlp<B: BakaOps>(x: Tensor<B, 3>, w: &MlpWeights<B>, k: &Kernels) -> Tensor<B, 3> {
    let (up, gate) = (B::dense(x.clone(), w.up.clone(), k), B::dense(x, w.gate.clone(), k));
    B::dense(up * silu(gate), w.down.clone(), k)
}

/// `x + attn(norm(x)) + mlp(norm(x))` with one shared norm.
pub fn parallel_layer<B: BakaOps>(x: Tensor<B, 3>, n: &NormWeights<B>, a: &AttnWeights<B>, m: &MlpWeights<B>, pos: &Positions<B>, k: &Kernels) -> Tensor<B, 3> {
    let h = B::norm(x.clone(), n, k);
    // both sublayers before the two adds, so that fusion makes them one kernel
    let (att, mlp) = (B::self_attention(h.clone(), a, pos, k), B::mlp(h, m, k));
    x + att + mlp
}

/// `x' + mlp(norm'(x'))` with `x' = x + attn(norm(x))`: the sequential residual (GPT-2), two norms.
#[allow(clippy::too_many_arguments)]
pub fn sequential_layer<B: BakaOps>(x: Tensor<B, 3>, n: &NormWeights<B>, a: &AttnWeights<B>, n2: &NormWeights<B>, m: &MlpWeights<B>, pos: &Positions<B>, k: &Kernels) -> Tensor<B, 3> {
    let x = x.clone() + B::self_attention(B::norm(x, n, k), a, pos, k);
    x.clone() + B::mlp(B::norm(x, n2, k), m, k)
}

/// Per-token cross-entropy `[b, N]` (nats) of the LM head `h [b, N, d] · w [d, V]` against
/// `targets [b, N]`: the logits in full, then [`token_losses`].
pub fn head_token_losses<B: BakaOps>(h: Tensor<B, 3>, w: Tensor<B, 2>, targets: Tensor<B, 2, Int>, k: &Kernels) -> Tensor<B, 2> {
    token_losses(B::dense(h, w, k), targets)
}

/// Per-token cross-entropy `[b, N]` (nats) of logits `[b, N, V]` against targets `[b, N]`.
pub fn token_losses<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, n, _] = logits.dims();
    log_softmax(to(logits, FloatDType::F32), 2).gather(2, targets.reshape([b, n, 1])).reshape([b, n]).neg()
}
