//! `[train]`: optimisation, bookkeeping, the device and its kernels.

use crate::kernels::ops::{AttnKernel, Ce, Fusion, KernelSet, Kernels, Matmul};
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// Optimisation and bookkeeping. Defaults are BakaLLM's recipe: AdamW lr 1e-3, constant, clip 1.0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub seed: u64,
    pub steps: usize,
    /// Samples per step; each sample is `n_windows` consecutive windows of real text.
    pub batch: usize,
    pub n_windows: usize,
    pub lr: f64,
    /// "constant" or "cosine" (decays to `lr * min_lr_ratio` at the last step).
    pub schedule: Schedule,
    pub warmup_steps: usize,
    pub min_lr_ratio: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (as torch.nn.utils.clip_grad_norm_); 0 switches it off.
    pub clip: f64,
    /// Evaluate every this many steps (and at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Validation samples (each `n_windows` windows) in the fixed validation set.
    pub eval_samples: usize,
    /// Test samples (each `n_windows` windows), scored once when the run finishes.
    pub test_samples: usize,
    /// Write a resumable checkpoint every this many steps (and at the end); 0 = only at the end.
    pub checkpoint_every: usize,
    /// On a non-finite loss or gradient: false stops the run; true skips that step's update.
    pub skip_spikes: bool,
    /// "cpu" (burn-flex) or "cuda" (needs a binary built with `--features cuda`).
    pub device: Device,
    /// Processes training together (`baka train --gpus N`), each on its GPU (on the CPU: N
    /// processes sharing its cores, for tests) with `batch / gpus` of every step's samples; the
    /// gradients are averaged, so the run is the one-process run up to rounding.
    #[serde(skip_serializing_if = "is_one")]
    pub gpus: usize,
    /// "f32" or "bf16" (bf16 only on cuda): the activations' dtype; weights stay f32.
    pub dtype: Dtype,
    /// "fast": bakallm's kernels where the device has them (CUDA: cuBLAS linears, the whole
    /// parallel layer as one op, fused norm, gate, embedding, AdamW, and the LM head + loss in
    /// chunks; CPU: the linears' GEMMs called directly, the attention, gate, AdamW and the LM head
    /// + loss as one pass each); "reference": burn's ops everywhere.
    pub kernels: KernelSet,
    /// Rows of logits per chunk of the LM head's loss on CUDA: `ce_chunk × vocab` logits exist
    /// at a time.
    pub ce_chunk: usize,
    /// CUDA memory pools (set once per process, src/backend.rs): "shared" (tensors over 1 MiB
    /// sliced out of shared 1 GiB pages), "sliced" (cubecl's default: pages graded by slice size,
    /// up to a quarter of the GPU each) or "exclusive" (cubecl's: a page per tensor). CPU: unused.
    pub memory_pool: MemoryPool,
    /// Developer overrides of single kernels (unset: as `kernels` says), for tests and for
    /// benchmarking one kernel against burn's ops; documented in docs/kernels.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matmul: Option<Matmul>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttnKernel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layernorm: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adamw: Option<Fusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ce: Option<Ce>,
}

/// `train.schedule`: the learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Constant,
    /// Cosine decay to `lr · min_lr_ratio` at the last step.
    Cosine,
}

/// `train.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
    pub fn is_cuda(self) -> bool {
        self == Self::Cuda
    }
}

/// `train.dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    Bf16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }
    pub fn float(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
        }
    }
}

/// `train.memory_pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemoryPool {
    #[default]
    Shared,
    Sliced,
    Exclusive,
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl TrainConfig {
    /// The kernels this run uses: `kernels` with the developer overrides applied. On the CPU only
    /// the loss has a choice (the one-pass LM head + loss, or autodiff).
    pub fn kernels(&self) -> Kernels {
        let base = match self.kernels {
            KernelSet::Fast => Kernels::FAST,
            KernelSet::Reference => Kernels::REFERENCE,
        };
        Kernels {
            matmul: self.matmul.unwrap_or(base.matmul),
            attention: self.attention.unwrap_or(base.attention),
            embedding: self.embedding.unwrap_or(base.embedding),
            norm: self.layernorm.unwrap_or(base.norm),
            gate: self.gate.unwrap_or(base.gate),
            ce: self.ce.unwrap_or(base.ce),
            ce_chunk: self.ce_chunk,
        }
    }

    /// These settings without the per-kernel developer overrides (`matmul`, `attention`, …).
    pub fn without_overrides(&self) -> Self {
        Self { matmul: None, attention: None, embedding: None, layernorm: None, gate: None, adamw: None, ce: None, ..self.clone() }
    }

    /// Whether the optimizer step runs as bakallm's fused kernel (CUDA).
    pub fn fused_adamw(&self) -> bool {
        self.adamw.unwrap_or(if self.kernels == KernelSet::Fast { Fusion::Fused } else { Fusion::Burn }) == Fusion::Fused
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 1000,
            batch: 6,
            n_windows: 4,
            lr: 1e-3,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            clip: 1.0,
            eval_every: 100,
            eval_samples: 16,
            test_samples: 64,
            checkpoint_every: 0,
            skip_spikes: false,
            device: Device::Cpu,
            gpus: 1,
            dtype: Dtype::F32,
            kernels: KernelSet::Fast,
            ce_chunk: 4096,
            memory_pool: MemoryPool::Shared,
            matmul: None,
            attention: None,
            embedding: None,
            layernorm: None,
            gate: None,
            adamw: None,
            ce: None,
        }
    }
}
