//! One decoder layer: parallel residual with one shared pre-norm (GPT-NeoX, BakaLLM pristine)
//! `x + attn(norm(x)) + mlp(norm(x))`, or the sequential GPT-2 form with two norms.

use super::attention::Attention;
use super::init::Init;
use super::mlp::Mlp;
use super::norm::Norm;
use super::ModelConfig;
use crate::kernels::ops::{BakaOps, Kernels, Positions};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// The shared pre-norm (parallel) or the attention's pre-norm (sequential).
    pub attn_norm: Norm<B>,
    /// Only for `residual = "sequential"`.
    pub mlp_norm: Option<Norm<B>>,
    pub attn: Attention<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    pub fn new(c: &ModelConfig, init: &mut Init<B>) -> Self {
        let out_std = c.init_std / (2.0 * c.n_layers as f64).sqrt();
        let linspace = c.positions == super::PositionKind::Linspace;
        let norm = || Norm::new(c.norm, c.d_model, c.norm_eps, init.device);
        let attn_norm = norm();
        let mlp_norm = (c.residual == super::Residual::Sequential).then(norm);
        Self { attn_norm, mlp_norm, attn: Attention::new(c.d_model, c.n_heads, linspace, c.init_std, out_std, init), mlp: Mlp::new(c.d_model, c.d_ff, c.init_std, out_std, init) }
    }
}

impl<B: BakaOps> Block<B> {
    pub fn forward(&self, x: Tensor<B, 3>, pos: &Positions<B>, k: &Kernels) -> Tensor<B, 3> {
        // one op either way (on CUDA, one kernel sequence each way)
        let (n, a, m) = (self.attn_norm.weights(), self.attn.weights(), self.mlp.weights());
        match &self.mlp_norm {
            // x + attn(norm(x)) + mlp(norm(x))
            None => B::parallel_layer(x, &n, &a, &m, pos, k),
            // x' + mlp(norm'(x')), x' = x + attn(norm(x))
            Some(mlp_norm) => B::sequential_layer(x, &n, &a, &mlp_norm.weights(), &m, pos, k),
        }
    }
}
