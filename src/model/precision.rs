//! Mixed precision: f32 master weights (what the optimizer updates and checkpoints store), with
//! activations and matmuls in the compute dtype (bf16 on CUDA). Weights are cast on use, so
//! gradients flow back to the f32 parameters; norms and the loss run in f32.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::FloatDType;

/// The dtype activations are computed in (F32 everywhere on the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute(pub FloatDType);

impl Default for Compute {
    fn default() -> Self {
        Self(FloatDType::F32)
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
    pub fn from_name(name: &str) -> Self {
        Self(if name == "bf16" { FloatDType::BF16 } else { FloatDType::F32 })
    }

    pub fn is_f32(self) -> bool {
        self.0 == FloatDType::F32
    }

    pub fn cast<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        to(x, self.0)
    }

    /// `x · W` with the (f32) weight cast to the compute dtype.
    pub fn linear<B: Backend>(self, l: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.is_f32() {
            return l.forward(x);
        }
        x.matmul(self.cast(l.weight.val()).unsqueeze::<3>())
    }
}
