//! The learning-rate schedule and global gradient-norm clipping (the optimizer is `super::adamw`).
//!
//! burn's own `GradientClipping::Norm` clips each tensor separately; PyTorch's
//! `clip_grad_norm_` (BakaLLM's recipe) clips the norm of all gradients together, so we do that.

use crate::config::TrainConfig;
use crate::kernels::inner::Prims;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Learning rate at a 1-based `step`: linear warmup, then constant or cosine to `lr·min_lr_ratio`.
pub fn lr_at(t: &TrainConfig, step: usize) -> f64 {
    if t.warmup_steps > 0 && step <= t.warmup_steps {
        return t.lr * step as f64 / t.warmup_steps as f64;
    }
    match t.schedule {
        crate::config::Schedule::Cosine => {
            let span = t.steps.saturating_sub(t.warmup_steps).max(1) as f64;
            let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
            let min = t.lr * t.min_lr_ratio;
            min + (t.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        crate::config::Schedule::Constant => t.lr,
    }
}

/// Sums the squares of every parameter's gradient into one on-device scalar: one multi-tensor
/// kernel on CUDA (`Prims::sum_squares`, `fused`), else one reduction per tensor.
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

/// Global L2 norm of all gradients as an on-device scalar `[1]` (read it together with the loss).
pub fn grad_norm<B: AutodiffBackend<InnerBackend: Prims>, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> Tensor<B::InnerBackend, 1> {
    let fused = <B::InnerBackend as Prims>::OPTIM_KERNELS.then(Vec::new);
    let mut v = SquaredNorm::<B> { grads, total: None, fused };
    model.visit(&mut v);
    match v.fused {
        Some(all) => <B::InnerBackend as Prims>::sum_squares(all).sqrt(),
        None => v.total.expect("model has gradients").sqrt(),
    }
}

/// The factor that scales the gradients to a global norm of at most `max_norm` (torch's
/// `clip_grad_norm_`, its epsilon included): 1 when `max_norm` is 0 or the norm is within it.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warmup_then_cosine() {
        let t = TrainConfig { lr: 1.0, steps: 110, warmup_steps: 10, schedule: crate::config::Schedule::Cosine, min_lr_ratio: 0.1, ..Default::default() };
        assert_eq!(lr_at(&t, 1), 0.1);
        assert_eq!(lr_at(&t, 10), 1.0);
        assert!((lr_at(&t, 60) - 0.55).abs() < 1e-12);
        assert!((lr_at(&t, 110) - 0.1).abs() < 1e-12);
        let c = TrainConfig { lr: 1e-3, ..Default::default() };
        assert_eq!(lr_at(&c, 1), 1e-3);
        assert_eq!(lr_at(&c, 999), 1e-3);
    }

    #[test]
    fn clip_factor_only_shrinks_norms_above_the_limit() {
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert_eq!(clip_factor(1.0, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) * 4.0 - 1.0).abs() < 1e-6);
        assert_eq!(clip_factor(1e9, 0.0), 1.0);
    }
}
