//! AdamW (burn's), the learning-rate schedule, and global gradient-norm clipping.
//!
//! burn's own `GradientClipping::Norm` clips each tensor separately; PyTorch's
//! `clip_grad_norm_` (BakaLLM's recipe) clips the norm of all gradients together, so we do that.

use crate::config::TrainConfig;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

pub fn adamw(t: &TrainConfig) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(t.beta1 as f32)
        .with_beta_2(t.beta2 as f32)
        .with_epsilon(t.eps as f32)
        .with_weight_decay(t.weight_decay as f32)
}

/// Learning rate at a 1-based `step`: linear warmup, then constant or cosine to `lr·min_lr_ratio`.
pub fn lr_at(t: &TrainConfig, step: usize) -> f64 {
    if t.warmup_steps > 0 && step <= t.warmup_steps {
        return t.lr * step as f64 / t.warmup_steps as f64;
    }
    match t.schedule.as_str() {
        "cosine" => {
            let span = t.steps.saturating_sub(t.warmup_steps).max(1) as f64;
            let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
            let min = t.lr * t.min_lr_ratio;
            min + (t.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        _ => t.lr,
    }
}

/// Sums the squares of every parameter's gradient into one on-device scalar: one multi-tensor
/// kernel on CUDA (`kernels::sum_squares`, `fused`), else one reduction per tensor.
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
    fused: Option<Vec<burn::tensor::ops::FloatTensor<B::InnerBackend>>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            if let Some(all) = &mut self.fused {
                all.push(g.into_primitive().tensor());
                return;
            }
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies every gradient by a factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Global L2 norm of all gradients as an on-device scalar `[1]` (read it together with the loss).
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> Tensor<B::InnerBackend, 1> {
    let fused = crate::kernels::has_sum_squares::<B::InnerBackend>().then(Vec::new);
    let mut v = SquaredNorm::<B> { grads, total: None, fused };
    model.visit(&mut v);
    match v.fused {
        Some(all) => crate::kernels::sum_squares::<B::InnerBackend>(all).sqrt(),
        None => v.total.expect("model has gradients").sqrt(),
    }
}

/// Scales the gradients so their global norm is at most `max_norm` (no-op when `max_norm` is 0).
pub fn clip<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &mut GradientsParams, norm: f64, max_norm: f64) {
    if max_norm > 0.0 && norm > max_norm {
        // same epsilon as torch.nn.utils.clip_grad_norm_
        let factor = max_norm / (norm + 1e-6);
        model.visit(&mut Scale { grads, factor });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warmup_then_cosine() {
        let t = TrainConfig { lr: 1.0, steps: 110, warmup_steps: 10, schedule: "cosine".into(), min_lr_ratio: 0.1, ..Default::default() };
        assert_eq!(lr_at(&t, 1), 0.1);
        assert_eq!(lr_at(&t, 10), 1.0);
        assert!((lr_at(&t, 60) - 0.55).abs() < 1e-12);
        assert!((lr_at(&t, 110) - 0.1).abs() < 1e-12);
        let c = TrainConfig { lr: 1e-3, ..Default::default() };
        assert_eq!(lr_at(&c, 1), 1e-3);
        assert_eq!(lr_at(&c, 999), 1e-3);
    }
}
