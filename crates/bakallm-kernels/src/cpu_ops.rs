//! [`BakaOps`] on the CPU: the reference, with the LM head and its loss as one CPU pass
//! ([`super::host_loss`]) where `train.ce = "chunked"` (the default), the attention as one op each
//! way ([`super::cpu_attention`]) unless `train.attention = "burn"`, the MLP's gate as one pass
//! each way ([`super::cpu_gate`]) unless `train.gate = "burn"`, and the linear layers' GEMMs
//! called directly ([`super::cpu_linear`]) unless `train.matmul = "burn"`.

use super::cpu_attention;
use super::cpu_gate;
use super::cpu_linear;
use super::host_loss;
use super::ops::{AttnWeights, BakaOps, Ce, Kernels, Matmul, MlpWeights, Positions};
use super::reference as r;
use crate::backend::{Cpu, CpuTrain};
use burn::prelude::*;

/// Per-token losses of the LM head on either CPU backend: one pass with `Ce::Chunked`, else the
/// reference.
fn token_losses<B: BakaOps>(h: Tensor<B, 3>, w: Tensor<B, 2>, targets: Tensor<B, 2, Int>, k: &Kernels) -> Tensor<B, 2> {
    match k.ce {
        Ce::Chunked => host_loss::head_token_losses(h, w, targets),
        _ => r::head_token_losses(h, w, targets, k),
    }
}

impl BakaOps for Cpu {
    fn dense(x: Tensor<Cpu, 3>, w: Tensor<Cpu, 2>, k: &Kernels) -> Tensor<Cpu, 3> {
        match k.matmul {
            Matmul::Burn => r::linear(x, w),
            Matmul::Cublas => cpu_linear::dense(x, w),
        }
    }

    fn self_attention(h: Tensor<Cpu, 3>, w: &AttnWeights<Cpu>, pos: &Positions<Cpu>, k: &Kernels) -> Tensor<Cpu, 3> {
        cpu_attention::self_attention(h, w, pos, k, cpu_attention::core_fwd)
    }

    fn mlp(x: Tensor<Cpu, 3>, w: &MlpWeights<Cpu>, k: &Kernels) -> Tensor<Cpu, 3> {
        cpu_gate::mlp(x, w, k, cpu_gate::silu_mul)
    }

    fn head_token_losses(h: Tensor<Cpu, 3>, w: Tensor<Cpu, 2>, targets: Tensor<Cpu, 2, Int>, k: &Kernels) -> Tensor<Cpu, 2> {
        token_losses(h, w, targets, k)
    }
}

impl BakaOps for CpuTrain {
    fn dense(x: Tensor<CpuTrain, 3>, w: Tensor<CpuTrain, 2>, k: &Kernels) -> Tensor<CpuTrain, 3> {
        match k.matmul {
            Matmul::Burn => r::linear(x, w),
            Matmul::Cublas => cpu_linear::dense_train(x, w),
        }
    }

    fn self_attention(h: Tensor<CpuTrain, 3>, w: &AttnWeights<CpuTrain>, pos: &Positions<CpuTrain>, k: &Kernels) -> Tensor<CpuTrain, 3> {
        cpu_attention::self_attention(h, w, pos, k, cpu_attention::core_train)
    }

    fn mlp(x: Tensor<CpuTrain, 3>, w: &MlpWeights<CpuTrain>, k: &Kernels) -> Tensor<CpuTrain, 3> {
        cpu_gate::mlp(x, w, k, cpu_gate::silu_mul_train)
    }

    fn head_loss(h: Tensor<CpuTrain, 3>, w: Tensor<CpuTrain, 2>, targets: Tensor<CpuTrain, 2, Int>, k: &Kernels) -> Tensor<CpuTrain, 1> {
        match k.ce {
            Ce::Chunked => host_loss::head_loss(h, w, targets),
            _ => r::head_token_losses(h, w, targets, k).mean(),
        }
    }

    fn head_token_losses(h: Tensor<CpuTrain, 3>, w: Tensor<CpuTrain, 2>, targets: Tensor<CpuTrain, 2, Int>, k: &Kernels) -> Tensor<CpuTrain, 2> {
        token_losses(h, w, targets, k)
    }
}
