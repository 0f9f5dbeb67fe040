//! Gated SiLU MLP (BakaLLM): `down(up(x) * silu(gate(x)))`, no biases. The weights; the
//! computation is [`crate::kernels::ops::BakaOps::mlp`] (reference: `kernels::reference::mlp`).

use super::init::Init;
use crate::kernels::ops::MlpWeights;
use burn::nn::Linear;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate: Linear<B>,
    pub up: Linear<B>,
    pub down: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// `out_std` is the (depth-scaled) std of the output projection, as in GPT-2.
    pub fn new(d: usize, d_ff: usize, std: f64, out_std: f64, init: &mut Init<B>) -> Self {
        Self { gate: init.linear(d, d_ff, std), up: init.linear(d, d_ff, std), down: init.linear(d_ff, d, out_std) }
    }

    pub fn weights(&self) -> MlpWeights<B> {
        MlpWeights { gate: self.gate.weight.val(), up: self.up.weight.val(), down: self.down.weight.val() }
    }
}
