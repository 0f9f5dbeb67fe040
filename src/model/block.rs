//! One decoder layer: parallel residual with one shared pre-norm (GPT-NeoX, BakaLLM pristine)
//! `x + attn(norm(x)) + mlp(norm(x))`, or the sequential GPT-2 form with two norms.

use super::attention::Attention;
use super::init::Init;
use super::mlp::Mlp;
use super::norm::Norm;
use super::positions::PosTables;
use super::ModelConfig;
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
        let norm = || Norm::new(&c.norm, c.d_model, c.norm_eps, init.device);
        let attn_norm = norm();
        let mlp_norm = (c.residual == "sequential").then(norm);
        Self { attn_norm, mlp_norm, attn: Attention::new(c.d_model, c.n_heads, linspace, c.init_std, out_std, init), mlp: Mlp::new(c.d_model, c.d_ff, c.init_std, out_std, init) }
    }

    pub fn forward(&self, x: Tensor<B, 3>, t: &PosTables<B>) -> Tensor<B, 3> {
        match &self.mlp_norm {
            None => {
                if let Some(y) = self.fused(x.clone(), t) {
                    return y;
                }
                let h = self.attn_norm.forward(x.clone());
                // both sublayers before the two adds, so that fusion makes them one kernel
                let (a, m) = (self.attn.forward(h.clone(), t), self.mlp.forward(h));
                x + a + m
            }
            Some(mlp_norm) => {
                let x = x.clone() + self.attn.forward(self.attn_norm.forward(x), t);
                x.clone() + self.mlp.forward(mlp_norm.forward(x))
            }
        }
    }

    /// The parallel layer as one op (`train.attention = "layer"`, CUDA): `None` where it does not
    /// apply (linspace adds to k before the head split; burn's norm or gate; the flash kernels'
    /// dtype and head dims).
    fn fused(&self, x: Tensor<B, 3>, t: &PosTables<B>) -> Option<Tensor<B, 3>> {
        let (a, c) = (&self.attn, self.attn.compute);
        let on = c.fused_layer && c.attention_block && c.blas && c.fused_gate && self.attn_norm.fused && a.pos.is_none();
        if !on || !crate::kernels::has_fused::<B>() {
            return None;
        }
        let norm = match (&self.attn_norm.layer, &self.attn_norm.rms) {
            (Some(ln), _) => (ln.gamma.val(), ln.beta.as_ref().map(|b| b.val())),
            (None, rms) => (rms.as_ref()?.gamma.val(), None),
        };
        let m = &self.mlp;
        let w = crate::kernels::layer::Weights { norm, attn: [&a.q, &a.k, &a.v, &a.o].map(|l| l.weight.val()), mlp: [&m.gate, &m.up, &m.down].map(|l| l.weight.val()) };
        crate::kernels::layer(x.clone(), w, &t.rot_q, &t.rot_k, t.biased().then(|| t.bias.clone()), a.n_heads, a.scale(x.dims()[2]), self.attn_norm.eps)
    }
}
