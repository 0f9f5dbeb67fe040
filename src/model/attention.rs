//! Causal multi-head self-attention over one window's sequence, with the branch's positions.

use super::init::Init;
use super::positions::{rotate, PosTables};
use super::precision::Compute;
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::softmax;

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
    pub compute: Compute,
}

impl<B: Backend> Attention<B> {
    pub fn new(d: usize, n_heads: usize, linspace: bool, std: f64, out_std: f64, init: &mut Init<B>) -> Self {
        let (q, k, v) = (init.linear(d, d, std), init.linear(d, d, std), init.linear(d, d, std));
        let o = init.linear(d, d, out_std);
        let pos = linspace.then(|| LinspaceScale { scale: Param::from_tensor(Tensor::ones([1, d], init.device)) });
        Self { q, k, v, o, pos, n_heads, compute: Compute::default() }
    }

    /// The key projection `[b, L, d]`, with the linspace ramp if any.
    fn k_proj(&self, h: Tensor<B, 3>, t: &PosTables<B>) -> Tensor<B, 3> {
        let c = self.compute;
        let k = c.linear(&self.k, h);
        match (&t.ramp, &self.pos) {
            // before the head split, as BakaLLM: K grows toward the end of the window
            (Some(ramp), Some(p)) => k + ramp.clone() * c.cast(p.scale.val()).unsqueeze::<3>(),
            _ => k,
        }
    }

    /// Projected, positioned q, k, v as `[b, H, L, hd]` (split out so tests can see them).
    pub fn qkv(&self, h: Tensor<B, 3>, t: &PosTables<B>) -> [Tensor<B, 4>; 3] {
        let [b, l, d] = h.dims();
        let c = self.compute;
        let k = self.k_proj(h.clone(), t);
        // rotated while still `[b, L, H, hd]` (contiguous; the tables as `[1, L, 1, hd]`), then
        // viewed as `[b, H, L, hd]`: elementwise ops on the swapped view are slow on the CPU
        let heads = |x: Tensor<B, 3>| x.reshape([b, l, self.n_heads, d / self.n_heads]);
        let by_token = |r: &Option<(Tensor<B, 4>, Tensor<B, 4>)>| r.as_ref().map(|(c, s)| (c.clone().swap_dims(1, 2), s.clone().swap_dims(1, 2)));
        let q = rotate(heads(c.linear(&self.q, h.clone())), &by_token(&t.rot_q)).swap_dims(1, 2);
        let k = rotate(heads(k), &by_token(&t.rot_k)).swap_dims(1, 2);
        [q, k, heads(c.linear(&self.v, h)).swap_dims(1, 2)]
    }

    /// The softmax scale `1/√head_dim` at width `d`.
    pub fn scale(&self, d: usize) -> f32 {
        (1.0 / ((d / self.n_heads) as f64).sqrt()) as f32
    }

    pub fn forward(&self, h: Tensor<B, 3>, t: &PosTables<B>) -> Tensor<B, 3> {
        let [b, l, d] = h.dims();
        let scale = self.scale(d);
        if self.compute.fused_attention && crate::kernels::has_fused::<B>() {
            return self.forward_fused(h, t, scale);
        }
        let [q, k, v] = self.qkv(h, t);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + t.bias.clone();
        let y = softmax(scores, 3).matmul(v);
        self.compute.linear(&self.o, y.swap_dims(1, 2).reshape([b, l, d]))
    }

    /// The same with the fused ops (`train.attention = "fused"`, CUDA): head split with the
    /// rotation, attention, head merge, one kernel or GEMM sequence each.
    fn forward_fused(&self, h: Tensor<B, 3>, t: &PosTables<B>, scale: f32) -> Tensor<B, 3> {
        use crate::kernels::{attention, attention_block, merge_heads, split_heads};
        let (c, n) = (self.compute, self.n_heads);
        // `train.attention = "block"` with the cuBLAS linears, and nothing added to k before the
        // split: the whole sublayer as one op each way
        if c.attention_block && c.blas && self.pos.is_none() {
            let ws = [&self.q, &self.k, &self.v, &self.o].map(|l| l.weight.val());
            if let Some(y) = attention_block(h.clone(), ws, &t.rot_q, &t.rot_k, t.biased().then(|| t.bias.clone()), n, scale) {
                return y;
            }
        }
        let q = split_heads(c.linear(&self.q, h.clone()), &t.rot_q, n);
        let k = split_heads(self.k_proj(h.clone(), t), &t.rot_k, n);
        let v = split_heads(c.linear(&self.v, h), &None, n);
        c.linear(&self.o, merge_heads(attention(q, k, v, t.bias.clone(), t.biased(), n, scale, c.flash), n))
    }
}

#[cfg(test)]
mod tests {
    use super::super::positions::{Layout, PosParams, PositionKind};
    use super::*;
    use crate::backend::Cpu;

    fn tables(kind: PositionKind, l: usize) -> PosTables<Cpu> {
        let p = PosParams { kind, n_heads: 2, head_dim: 4, rope_base: 1e4, xpos_gamma: 0.4, xpos_scale_base: 512.0, linspace_edge: 0.1 };
        PosTables::new(&Layout::plain(l, 0), &p, &Default::default(), burn::tensor::FloatDType::F32)
    }

    #[test]
    fn linspace_adds_ramp_times_scale_to_k_only() {
        let dev = Default::default();
        let mut init = Init::<Cpu>::new(1, &dev);
        let mut a = Attention::new(8, 2, true, 0.5, 0.5, &mut init);
        let scale: Vec<f32> = (0..8).map(|i| 0.5 + i as f32).collect();
        a.pos = Some(LinspaceScale { scale: Param::from_tensor(Tensor::from_data(TensorData::new(scale.clone(), [1, 8]), &dev)) });
        let h = init.normal([1, 5, 8], 1.0);
        let [q1, k1, v1] = a.qkv(h.clone(), &tables(PositionKind::Linspace, 5));
        let [q0, k0, v0] = a.qkv(h, &tables(PositionKind::Nope, 5));
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
            let y0: Vec<f32> = a.forward(x.clone(), &t).into_data().to_vec().unwrap();
            let y1: Vec<f32> = a.forward(x + bump, &t).into_data().to_vec().unwrap();
            assert_eq!(y0[..4 * 8], y1[..4 * 8], "{kind:?}: earlier outputs changed");
            assert_ne!(y0[4 * 8..5 * 8], y1[4 * 8..5 * 8], "{kind:?}: the changed position must change");
        }
    }
}
