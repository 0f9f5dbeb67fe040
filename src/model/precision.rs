//! Mixed precision: f32 master weights (what the optimizer updates and checkpoints store), with
//! activations and matmuls in the compute dtype (bf16 on CUDA). Weights are cast on use, so
//! gradients flow back to the f32 parameters; norms and the loss run in f32. The linear layers'
//! matmul can go to cuBLAS on CUDA (`train.matmul`), the attention and the embedding to fused
//! ops (`train.attention`, `train.embedding`; src/kernels/).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::FloatDType;

/// How activations are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// The activation dtype (F32 everywhere on the CPU).
    pub dtype: FloatDType,
    /// Linear layers on cuBLAS where the backend has it (`kernels::has_blas`).
    pub blas: bool,
    /// Attention as one op with fused kernels where the backend has them (`kernels::has_fused`).
    pub fused_attention: bool,
    /// With `fused_attention`: the flash kernels where they apply (`kernels::flash::supports`).
    pub flash: bool,
    /// With `flash` and `blas`: the whole attention sublayer as one op (`kernels::attention_block`).
    pub attention_block: bool,
    /// With `attention_block`, `fused_norm` and `fused_gate`: a parallel-residual layer as one op
    /// (`kernels::layer`).
    pub fused_layer: bool,
    /// The embedding's backward as one CUDA kernel, likewise.
    pub fused_embedding: bool,
    /// LayerNorm/RMSNorm as one op with its kernels, likewise.
    pub fused_norm: bool,
    /// The MLP's gated SiLU as one op with its kernels, likewise.
    pub fused_gate: bool,
    /// The LM head and the loss as one CPU pass (`train.ce = "chunked"` on the CPU,
    /// src/model/host_loss.rs) for training and evaluation.
    pub host_head: bool,
}

impl Default for Compute {
    fn default() -> Self {
        Self {
            dtype: FloatDType::F32,
            blas: false,
            fused_attention: false,
            flash: false,
            attention_block: false,
            fused_layer: false,
            fused_embedding: false,
            fused_norm: false,
            fused_gate: false,
            host_head: false,
        }
    }
}

/// Casts to `dt` unless the tensor already has it (no extra graph node in the f32 path).
pub fn to<B: Backend, const D: usize>(x: Tensor<B, D>, dt: FloatDType) -> Tensor<B, D> {
    if x.dtype() == burn::tensor::DType::from(dt) {
        x
    } else {
        x.cast(dt)
    }
}

impl Compute {
    /// From `train.dtype`, `train.matmul`, `train.attention`, `train.embedding`, `train.layernorm`
    /// and `train.gate`.
    pub fn from_train(t: &crate::config::TrainConfig) -> Self {
        Self {
            dtype: if t.dtype == "bf16" { FloatDType::BF16 } else { FloatDType::F32 },
            blas: t.matmul == "cublas",
            fused_attention: t.attention != "burn",
            flash: ["flash", "block", "layer"].contains(&t.attention.as_str()),
            attention_block: t.attention == "block" || t.attention == "layer",
            fused_layer: t.attention == "layer",
            fused_embedding: t.embedding == "fused",
            fused_norm: t.layernorm == "fused",
            fused_gate: t.gate == "fused",
            host_head: t.device == "cpu" && t.ce == "chunked",
        }
    }

    pub fn is_f32(self) -> bool {
        self.dtype == FloatDType::F32
    }

    pub fn cast<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        to(x, self.dtype)
    }

    /// `x · W` with the (f32) weight cast to the compute dtype.
    pub fn linear<B: Backend>(self, l: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.blas && crate::kernels::has_fused::<B>() {
            return crate::kernels::linear_train(x, l.weight.val());
        }
        if self.blas && crate::kernels::has_blas::<B>() {
            return crate::kernels::linear(x, self.cast(l.weight.val()));
        }
        // one [b·T, d] × [d, n] product: one GEMM each way and a weight gradient without a
        // per-batch copy to sum (burn's 3-D linear runs b small GEMMs)
        let [b, t, d] = x.dims();
        let w = self.cast(l.weight.val());
        let n = w.dims()[1];
        x.reshape([b * t, d]).matmul(w).reshape([b, t, n])
    }

    /// The embedding rows of `ids` (f32, the weight's dtype).
    pub fn embed<B: Backend>(self, e: &burn::nn::Embedding<B>, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        if self.fused_embedding && crate::kernels::has_fused::<B>() {
            return crate::kernels::embedding(e.weight.val(), ids);
        }
        e.forward(ids)
    }
}
