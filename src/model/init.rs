//! Deterministic, device-independent parameter initialisation.
//!
//! Values are drawn on the host from a seeded RNG in a fixed order, so the same seed gives the
//! same initial weights on the CPU and CUDA, in any thread, whatever else runs in the process.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub struct Init<'a, B: Backend> {
    rng: StdRng,
    pub device: &'a B::Device,
}

impl<'a, B: Backend> Init<'a, B> {
    pub fn new(seed: u64, device: &'a B::Device) -> Self {
        Self { rng: StdRng::seed_from_u64(seed ^ 0x0BAC_A11A), device }
    }

    /// N(0, std²) samples (Box–Muller), as a tensor of the given shape.
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Tensor<B, D> {
        let n: usize = shape.iter().product();
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            let u1: f64 = 1.0 - self.rng.random::<f64>();
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = std::f64::consts::TAU * u2;
            v.push((r * a.cos()) as f32);
            v.push((r * a.sin()) as f32);
        }
        v.truncate(n);
        Tensor::from_data(TensorData::new(v, shape), self.device)
    }

    pub fn param<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Param<Tensor<B, D>> {
        Param::from_tensor(self.normal(shape, std))
    }

    /// A bias-free linear `d_in -> d_out` (burn layout `[d_in, d_out]`), weights N(0, std²).
    pub fn linear(&mut self, d_in: usize, d_out: usize, std: f64) -> Linear<B> {
        Linear { weight: self.param([d_in, d_out], std), bias: None }
    }
}
