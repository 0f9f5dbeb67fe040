//! Gated SiLU MLP (BakaLLM): `down(up(x) * silu(gate(x)))`, no biases.

use super::init::Init;
use super::precision::Compute;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::silu;

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate: Linear<B>,
    pub up: Linear<B>,
    pub down: Linear<B>,
    pub compute: Compute,
}

impl<B: Backend> Mlp<B> {
    /// `out_std` is the (depth-scaled) std of the output projection, as in GPT-2.
    pub fn new(d: usize, d_ff: usize, std: f64, out_std: f64, init: &mut Init<B>) -> Self {
        Self { gate: init.linear(d, d_ff, std), up: init.linear(d, d_ff, std), down: init.linear(d_ff, d, out_std), compute: Compute::default() }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let c = self.compute;
        // on CUDA with the cuBLAS linears and the fused gate: the whole MLP as one op each way
        if c.blas && c.fused_gate && crate::kernels::has_fused::<B>() {
            return crate::kernels::mlp(x, self.gate.weight.val(), self.up.weight.val(), self.down.weight.val());
        }
        let (up, gate) = (c.linear(&self.up, x.clone()), c.linear(&self.gate, x));
        if c.fused_gate && crate::kernels::has_fused::<B>() {
            return c.linear(&self.down, crate::kernels::silu_mul(gate, up));
        }
        c.linear(&self.down, up * silu(gate))
    }
}
