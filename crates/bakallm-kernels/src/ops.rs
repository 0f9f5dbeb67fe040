//! The seam between the model and the kernels, burn's own pattern for custom kernels: [`BakaOps`]
//! lists the few operations the model runs, each with a default body in plain burn ops
//! ([`super::reference`]) that *is* the reference and the CPU path. A backend with kernels
//! overrides what it has (CUDA training: `super::cuda_ops`); [`Kernels`] says which of them a run
//! uses (`train.kernels`, and the developer overrides of `[train]`).

use super::prims::Alibi;
use super::reference as r;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Cos and sin tables `[1, 1, L, hd]` that rotate q or k (RoPE, xPos); `None`: no rotation.
pub type Rot<B> = Option<(Tensor<B, 4>, Tensor<B, 4>)>;

/// What one window's position scheme does to the attention, described once by the model
/// (`model::positions`) and consumed alike by the reference and the kernels.
#[derive(Debug, Clone)]
pub struct Positions<B: Backend> {
    /// Rotations of q and of k after the head split (RoPE, xPos).
    pub rot_q: Rot<B>,
    pub rot_k: Rot<B>,
    /// Added to the attention logits, `[1, 1 or H, L, L]`: the causal mask (−∞ above the diagonal),
    /// plus ALiBi's distance penalty.
    pub bias: Tensor<B, 4>,
    /// ALiBi's `[H + L]` f32, the heads' slopes and then each slot's position (NaN where it has
    /// none), from which the flash kernels compute the penalty (`prims::Alibi`); `None`: `bias` is
    /// the causal mask alone.
    pub slopes_pos: Option<Tensor<B, 1>>,
    /// Added to k before the head split, `[1, L, 1]`, times the layer's learned scale (linspace).
    pub k_ramp: Option<Tensor<B, 3>>,
}

impl<B: Backend> Positions<B> {
    /// ALiBi in both its forms, if the scheme has it.
    pub fn alibi(&self) -> Option<Alibi<B>> {
        self.slopes_pos.as_ref().map(|v| Alibi { table: self.bias.clone(), slopes_pos: v.clone() })
    }
}

/// A norm's weights: LayerNorm (`bias` given) or RMSNorm, f32.
#[derive(Debug, Clone)]
pub struct NormWeights<B: Backend> {
    pub weight: Tensor<B, 1>,
    pub bias: Option<Tensor<B, 1>>,
    pub eps: f64,
}

/// The attention sublayer's weights `[d, d]` (f32, `x · W` layout) and, for linspace, the
/// per-layer scale `[1, d]` of k's ramp.
#[derive(Debug, Clone)]
pub struct AttnWeights<B: Backend> {
    pub q: Tensor<B, 2>,
    pub k: Tensor<B, 2>,
    pub v: Tensor<B, 2>,
    pub o: Tensor<B, 2>,
    pub k_scale: Option<Tensor<B, 2>>,
    pub heads: usize,
}

impl<B: Backend> AttnWeights<B> {
    /// The softmax scale `1/√head_dim`.
    pub fn scale(&self) -> f32 {
        let d = self.q.dims()[0];
        (1.0 / ((d / self.heads) as f64).sqrt()) as f32
    }
}

/// The gated SiLU MLP's weights `down(up(x) ⊙ silu(gate(x)))`, f32.
#[derive(Debug, Clone)]
pub struct MlpWeights<B: Backend> {
    pub gate: Tensor<B, 2>,
    pub up: Tensor<B, 2>,
    pub down: Tensor<B, 2>,
}

/// `train.kernels`: bakallm's kernels where the backend has them, or the reference everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KernelSet {
    #[default]
    Fast,
    Reference,
}

/// `train.matmul` (CUDA): the linear layers' GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matmul {
    /// cuBLAS(Lt) in cubecl's stream order.
    Cublas,
    /// burn's autotuned matmul.
    Burn,
}

/// `train.attention` (CUDA): how much of the layer runs as one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttnKernel {
    /// The whole parallel-residual layer (norm, attention, MLP, adds) as one op each way.
    Layer,
    /// The attention sublayer (projections, rotation, flash attention, output) as one op.
    Block,
    /// Flash attention kernels between the projections.
    Flash,
    /// One autodiff op of cuBLAS GEMMs and softmax kernels.
    Fused,
    /// burn's ops (the reference).
    Burn,
}

/// `train.embedding`, `train.layernorm`, `train.gate`, `train.adamw` (CUDA): one fused op each
/// way, or burn's ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    Fused,
    Burn,
}

/// `train.ce`: how the LM head's loss and its gradient are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ce {
    /// The LM head and the loss as one op over row chunks, gradients formed in the forward: the
    /// full logits never exist (CUDA: `cuda/tokens.cu`; CPU: `super::host_loss`).
    Chunked,
    /// The closed-form softmax − onehot backward as one CUDA kernel each way.
    Fused,
    /// The same closed form in burn's ops (CUDA).
    ClosedForm,
    /// burn's `log_softmax` + gather, differentiated by autodiff (the reference).
    Autodiff,
}

/// Which kernels a run uses, resolved from `[train]` (see `config::TrainConfig::kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    pub matmul: Matmul,
    pub attention: AttnKernel,
    pub embedding: Fusion,
    pub norm: Fusion,
    pub gate: Fusion,
    pub ce: Ce,
    /// Rows of logits per chunk of `Ce::Chunked` on CUDA.
    pub ce_chunk: usize,
}

impl Kernels {
    /// burn's ops everywhere.
    pub const REFERENCE: Self = Self { matmul: Matmul::Burn, attention: AttnKernel::Burn, embedding: Fusion::Burn, norm: Fusion::Burn, gate: Fusion::Burn, ce: Ce::Autodiff, ce_chunk: 8192 };
    /// bakallm's kernels everywhere.
    pub const FAST: Self = Self { matmul: Matmul::Cublas, attention: AttnKernel::Layer, embedding: Fusion::Fused, norm: Fusion::Fused, gate: Fusion::Fused, ce: Ce::Chunked, ce_chunk: 8192 };
}

/// The fused operations the model needs. Every default body is the reference in burn's ops; the
/// CUDA training backend overrides them with its kernels where `k` asks for them.
pub trait BakaOps: Backend {
    /// `x [b, l, d] · w [d, n]`, the f32 weight cast to `x`'s dtype.
    fn dense(x: Tensor<Self, 3>, w: Tensor<Self, 2>, k: &Kernels) -> Tensor<Self, 3> {
        let _ = k;
        r::linear(x, w)
    }

    /// The rows of `weight [vocab, d]` at `ids [b, l]`.
    fn embed(weight: Tensor<Self, 2>, ids: Tensor<Self, 2, Int>, k: &Kernels) -> Tensor<Self, 3> {
        let _ = k;
        burn::tensor::module::embedding(weight, ids)
    }

    /// LayerNorm or RMSNorm over the last dim, computed in f32, returned in `x`'s dtype.
    fn norm(x: Tensor<Self, 3>, w: &NormWeights<Self>, k: &Kernels) -> Tensor<Self, 3> {
        let _ = k;
        r::norm(x, w)
    }

    /// Causal multi-head self-attention of `h [b, L, d]` with the window's positions.
    fn self_attention(h: Tensor<Self, 3>, w: &AttnWeights<Self>, pos: &Positions<Self>, k: &Kernels) -> Tensor<Self, 3> {
        r::attention(h, w, pos, k)
    }

    /// The gated SiLU MLP.
    fn mlp(x: Tensor<Self, 3>, w: &MlpWeights<Self>, k: &Kernels) -> Tensor<Self, 3> {
        r::mlp(x, w, k)
    }

    /// One parallel-residual layer `x + attn(norm(x)) + mlp(norm(x))` (GPT-NeoX, BakaLLM pristine).
    fn parallel_layer(x: Tensor<Self, 3>, n: &NormWeights<Self>, a: &AttnWeights<Self>, m: &MlpWeights<Self>, pos: &Positions<Self>, k: &Kernels) -> Tensor<Self, 3> {
        r::parallel_layer(x, n, a, m, pos, k)
    }

    /// One sequential-residual layer `x' + mlp(norm'(x'))`, `x' = x + attn(norm(x))` (GPT-2).
    #[allow(clippy::too_many_arguments)]
    fn sequential_layer(x: Tensor<Self, 3>, n: &NormWeights<Self>, a: &AttnWeights<Self>, n2: &NormWeights<Self>, m: &MlpWeights<Self>, pos: &Positions<Self>, k: &Kernels) -> Tensor<Self, 3> {
        r::sequential_layer(x, n, a, n2, m, pos, k)
    }

    /// Mean cross-entropy `[1]` of the LM head `h [b, n, d] · w [d, V]` against `targets [b, n]`.
    fn head_loss(h: Tensor<Self, 3>, w: Tensor<Self, 2>, targets: Tensor<Self, 2, Int>, k: &Kernels) -> Tensor<Self, 1> {
        r::head_token_losses(h, w, targets, k).mean()
    }

    /// Per-token cross-entropy `[b, n]` (nats) of the LM head, for evaluation.
    fn head_token_losses(h: Tensor<Self, 3>, w: Tensor<Self, 2>, targets: Tensor<Self, 2, Int>, k: &Kernels) -> Tensor<Self, 2> {
        r::head_token_losses(h, w, targets, k)
    }
}

/// A training backend with the ops, whose inner (inference) backend has them too: what the
/// trainer is generic over.
pub trait TrainOps: burn::tensor::backend::AutodiffBackend<InnerBackend: BakaOps + crate::inner::Prims> + BakaOps {}

impl<B: burn::tensor::backend::AutodiffBackend<InnerBackend: BakaOps + crate::inner::Prims> + BakaOps> TrainOps for B {}
