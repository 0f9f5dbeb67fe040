//! Causal multi-head self-attention over one window's sequence, with the branch's positions:
//! the weights; the computation is [`crate::kernels::ops::BakaOps::self_attention`] (reference:
//! `kernels::reference::attention`).

use super::init::Init;
use crate::kernels::ops::AttnWeights;
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

/// BakaLLM's learnable per-layer scale of the linspace ramp (`[1, d]`, initialised to ones).
#[derive(Module, Debug)]
pub struct LinspaceScale<B: Backend> {
    pub scale: Param<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub o: Linear<B>,
    /// Only for `positions = "linspace"`.
    pub pos: Option<LinspaceScale<B>>,
    pub n_heads: usize,
}

impl<B: Backend> Attention<B> {
    pub fn new(d: usize, n_heads: usize, linspace: bool, std: f64, out_std: f64, init: &mut Init<B>) -> Self {
        let (q, k, v) = (init.linear(d, d, std), init.linear(d, d, std), init.linear(d, d, std));
        let o = init.linear(d, d, out_std);
        let pos = linspace.then(|| LinspaceScale { scale: Param::from_tensor(Tensor::ones([1, d], init.device)) });
        Self { q, k, v, o, pos, n_heads }
    }

    pub fn weights(&self) -> AttnWeights<B> {
        let [q, k, v, o] = [&self.q, &self.k, &self.v, &self.o].map(|l| l.weight.val());
        AttnWeights { q, k, v, o, k_scale: self.pos.as_ref().map(|p| p.scale.val()), heads: self.n_heads }
    }
}

#[cfg(test)]
mod tests {
    use super::super::positions::{Layout, PosParams, PositionKind};
    use super::*;
    use crate::backend::Cpu;
    use crate::kernels::ops::{BakaOps, Kernels, Positions};
    use crate::kernels::reference::qkv;

    fn tables(kind: PositionKind, l: usize) -> Positions<Cpu> {
        let p = PosParams { kind, n_heads: 2, head_dim: 4, rope_base: 1e4, xpos_gamma: 0.4, xpos_scale_base: 512.0, linspace_edge: 0.1 };
        super::super::positions::tables(&Layout::plain(l, 0), &p, &Default::default(), burn::tensor::FloatDType::F32)
    }
    const K: Kernels = Kernels::REFERENCE;

    #[test]
    fn linspace_adds_ramp_times_scale_to_k_only() {
        let dev = Default::default();
        let mut init = Init::<Cpu>::new(1, &dev);
        let mut a = Attention::new(8, 2, true, 0.5, 0.5, &mut init);
        let scale: Vec<f32> = (0..8).map(|i| 0.5 + i as f32).collect();
        a.pos = Some(LinspaceScale { scale: Param::from_tensor(Tensor::from_data(TensorData::new(scale.clone(), [1, 8]), &dev)) });
        let h = init.normal([1, 5, 8], 1.0);
        let [q1, k1, v1] = qkv(h.clone(), &a.weights(), &tables(PositionKind::Linspace, 5), &K);
        let [q0, k0, v0] = qkv(h, &a.weights(), &tables(PositionKind::Nope, 5), &K);
        assert_eq!(q1.into_data(), q0.into_data());
        assert_eq!(v1.into_data(), v0.into_data());
        // back to [L, d] layout: diff[t, c] must be linspace(0, 0.1, 5)[t] * scale[c]
        let diff: Vec<f32> = (k1 - k0).swap_dims(1, 2).reshape([5, 8]).into_data().to_vec().unwrap();
        for t in 0..5 {
            for c in 0..8 {
                let want = 0.025 * t as f32 * scale[c];
                assert!((diff[t * 8 + c] - want).abs() < 1e-5, "t{t} c{c}: {} vs {want}", diff[t * 8 + c]);
            }
        }
    }

    #[test]
    fn causal_changing_a_token_never_changes_earlier_outputs() {
        let dev = Default::default();
        for kind in [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos, PositionKind::Linspace, PositionKind::Alibi] {
            let mut init = Init::<Cpu>::new(2, &dev);
            let a = Attention::new(8, 2, kind == PositionKind::Linspace, 0.5, 0.5, &mut init);
            let x = init.normal([1, 7, 8], 1.0);
            let bump = Tensor::<Cpu, 3>::zeros([1, 7, 8], &dev).slice_assign([0..1, 4..5, 0..8], Tensor::ones([1, 1, 8], &dev));
            let t = tables(kind, 7);
            let y0: Vec<f32> = Cpu::self_attention(x.clone(), &a.weights(), &t, &K).into_data().to_vec().unwrap();
            let y1: Vec<f32> = Cpu::self_attention(x + bump, &a.weights(), &t, &K).into_data().to_vec().unwrap();
            assert_eq!(y0[..4 * 8], y1[..4 * 8], "{kind:?}: earlier outputs changed");
            assert_ne!(y0[4 * 8..5 * 8], y1[4 * 8..5 * 8], "{kind:?}: the changed position must change");
        }
    }
}
