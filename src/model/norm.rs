//! The pre-norm: LayerNorm (BakaLLM, GPT-NeoX) or RMSNorm, chosen by `model.norm`. The weights;
//! the computation is [`BakaOps::norm`] (reference: `kernels::reference::norm`).

use crate::kernels::ops::{BakaOps, Kernels, NormWeights};
use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;

/// One of the two norms; exactly one field is `Some`.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    pub layer: Option<LayerNorm<B>>,
    pub rms: Option<RmsNorm<B>>,
    pub eps: f64,
}

impl<B: Backend> Norm<B> {
    /// LayerNorm starts at weight 1 and bias 0, RMSNorm at weight 1.
    pub fn new(kind: super::NormKind, d: usize, eps: f64, device: &B::Device) -> Self {
        if kind == super::NormKind::Rmsnorm {
            Self { layer: None, rms: Some(RmsNormConfig::new(d).with_epsilon(eps).init(device)), eps }
        } else {
            Self { layer: Some(LayerNormConfig::new(d).with_epsilon(eps).init(device)), rms: None, eps }
        }
    }

    pub fn weights(&self) -> NormWeights<B> {
        match (&self.layer, &self.rms) {
            (Some(ln), _) => NormWeights { weight: ln.gamma.val(), bias: ln.beta.as_ref().map(|b| b.val()), eps: self.eps },
            (None, Some(rms)) => NormWeights { weight: rms.gamma.val(), bias: None, eps: self.eps },
            (None, None) => unreachable!("a norm has a layer or an rms"),
        }
    }
}

impl<B: BakaOps> Norm<B> {
    /// Normalises in f32 whatever the input dtype, and returns the input's dtype.
    pub fn forward(&self, x: Tensor<B, 3>, k: &Kernels) -> Tensor<B, 3> {
        B::norm(x, &self.weights(), k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

    #[test]
    fn layernorm_and_rmsnorm_formulas() {
        let dev = Default::default();
        let x = Tensor::<Cpu, 3>::from_data([[[1.0, 2.0, 3.0, 6.0]]], &dev);
        let ln: Vec<f32> = Norm::<Cpu>::new(super::super::NormKind::Layernorm, 4, 1e-12, &dev).forward(x.clone(), &Kernels::REFERENCE).into_data().to_vec().unwrap();
        // mean 3, var (4+1+0+9)/4 = 3.5
        let want: Vec<f32> = [-2.0f32, -1.0, 0.0, 3.0].iter().map(|v| v / 3.5f32.sqrt()).collect();
        ln.iter().zip(&want).for_each(|(a, b)| assert!((a - b).abs() < 1e-5, "{ln:?}"));
        let rms: Vec<f32> = Norm::<Cpu>::new(super::super::NormKind::Rmsnorm, 4, 1e-12, &dev).forward(x, &Kernels::REFERENCE).into_data().to_vec().unwrap();
        let r = (50.0f32 / 4.0).sqrt();
        [1.0f32, 2.0, 3.0, 6.0].iter().zip(&rms).for_each(|(a, b)| assert!((a / r - b).abs() < 1e-5, "{rms:?}"));
    }
}
