//! The MLP's gated SiLU `silu(a) ⊙ u` on the CPU as one pass each way (`train.gate = "fused"`, the
//! default): the CPU counterpart of `super::gate`'s CUDA kernels, between burn's projections.
//!
//! Why: through burn's ops the gate is SiLU (a scalar `expf` per element), the product, and a
//! backward of about eight elementwise ops over the `[tokens, d_ff]` activations, each allocating
//! its result. Here the forward is one vectorised pass and the backward one pass for both
//! gradients, on chunks of a fixed size (elementwise: the result does not depend on the number
//! of threads). The reference is `silu(a) * u` in burn's ops (`reference::mlp`).

use super::binary::binary_ad;
use super::host::{tensor, values};
use super::host_loss::exp;
use super::ops::{BakaOps, Fusion, Kernels, MlpWeights};
use super::reference as r;
use crate::backend::{Cpu, CpuTrain};
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

/// Elements per task.
const CHUNK: usize = 8192;

/// [`BakaOps::mlp`] on either CPU backend: `down(gate(x·Wg, x·Wu))` with burn's projections and
/// `gate` (this op), or the reference where `k` asks for burn's gate or `x` is not f32.
pub fn mlp<B: BakaOps>(x: Tensor<B, 3>, w: &MlpWeights<B>, k: &Kernels, gate: fn(Tensor<B, 3>, Tensor<B, 3>) -> Tensor<B, 3>) -> Tensor<B, 3> {
    if k.gate == Fusion::Burn || x.dtype() != DType::F32 {
        return r::mlp(x, w, k);
    }
    let (up, a) = (B::dense(x.clone(), w.up.clone(), k), B::dense(x, w.gate.clone(), k));
    B::dense(gate(a, up), w.down.clone(), k)
}

/// `silu(a) ⊙ u` on the inference backend.
pub fn silu_mul(a: Tensor<Cpu, 3>, u: Tensor<Cpu, 3>) -> Tensor<Cpu, 3> {
    silu_mul_fwd(a, u, true)
}

/// `silu(a) ⊙ u` on the training backend, one node whose backward is one pass.
pub fn silu_mul_train(a: Tensor<CpuTrain, 3>, u: Tensor<CpuTrain, 3>) -> Tensor<CpuTrain, 3> {
    binary_ad::<Cpu, NoCheckpointing, 3, 3, 3>(a, u, silu_mul_fwd, silu_mul_bwd, true)
}

fn silu_mul_fwd(a: Tensor<Cpu, 3>, u: Tensor<Cpu, 3>, _: bool) -> Tensor<Cpu, 3> {
    let dims = a.dims();
    let (a, u) = (values(a), values(u));
    let mut z = vec![0f32; a.len()];
    z.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(u.par_chunks(CHUNK))).for_each(|(z, (a, u))| fwd(z, a, u));
    tensor(z, dims)
}

/// `(da, du)` from the output gradient `g`.
fn silu_mul_bwd(g: Tensor<Cpu, 3>, a: Tensor<Cpu, 3>, u: Tensor<Cpu, 3>, _: bool) -> (Tensor<Cpu, 3>, Tensor<Cpu, 3>) {
    let dims = a.dims();
    let (g, a, u) = (values(g), values(a), values(u));
    let (mut da, mut du) = (vec![0f32; a.len()], vec![0f32; a.len()]);
    let outs = da.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK));
    outs.zip(g.par_chunks(CHUNK).zip(a.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))).for_each(|((da, du), (g, (a, u)))| bwd(da, du, g, a, u));
    (tensor(da, dims), tensor(du, dims))
}

/// `σ(a)` from `e^(−|a|)` (which never overflows), branch-free.
#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    let e = exp(-a.abs());
    let s = 1.0 / (1.0 + e);
    if a >= 0.0 {
        s
    } else {
        e * s
    }
}

/// `z = a · σ(a) · u`.
#[inline(always)]
fn fwd_any(z: &mut [f32], a: &[f32], u: &[f32]) {
    for ((z, &a), &u) in z.iter_mut().zip(a).zip(u) {
        *z = a * sigmoid(a) * u;
    }
}

/// `du = g · a · σ(a)`, `da = g · u · σ(a) · (1 + a · (1 − σ(a)))`.
#[inline(always)]
fn bwd_any(da: &mut [f32], du: &mut [f32], g: &[f32], a: &[f32], u: &[f32]) {
    for ((((da, du), &g), &a), &u) in da.iter_mut().zip(du.iter_mut()).zip(g).zip(a).zip(u) {
        let s = sigmoid(a);
        *du = g * a * s;
        *da = g * u * s * ((1.0 - s) * a + 1.0);
    }
}

widest! {
    /// [`fwd_any`] at the CPU's widest vectors.
    fn fwd = fwd_any(z: &mut [f32], a: &[f32], u: &[f32])
}

widest! {
    /// [`bwd_any`] at the CPU's widest vectors.
    fn bwd = bwd_any(da: &mut [f32], du: &mut [f32], g: &[f32], a: &[f32], u: &[f32])
}

#[cfg(test)]
mod tests {
    use crate::backend::{Cpu, CpuTrain};
    use crate::ops::{BakaOps, Kernels, MlpWeights};
    use burn::prelude::*;

    /// `[y, dx, dwg, dwu, dwd]` of `Σ mlp(x) ⊙ u` through this op (`ours`) or the reference.
    fn run((b, l, d, f): (usize, usize, usize, usize), ours: bool) -> Vec<Vec<f32>> {
        let dev = Default::default();
        let t = |n: usize, seed: u64, shape: [usize; 2], s: f32| Tensor::<CpuTrain, 1>::from_data(crate::test_values(n, seed), &dev).reshape(shape).mul_scalar(s).detach().require_grad();
        let x = Tensor::<CpuTrain, 1>::from_data(crate::test_values(b * l * d, 1), &dev).reshape([b, l, d]).mul_scalar(3.0).detach().require_grad();
        let up = Tensor::<CpuTrain, 1>::from_data(crate::test_values(b * l * d, 2), &dev).reshape([b, l, d]);
        let w = MlpWeights { gate: t(d * f, 3, [d, f], 2.0), up: t(d * f, 4, [d, f], 1.0), down: t(f * d, 5, [f, d], 1.0) };
        let y = if ours { CpuTrain::mlp(x.clone(), &w, &Kernels::FAST) } else { crate::reference::mlp(x.clone(), &w, &Kernels::REFERENCE) };
        let g = (y.clone() * up).sum().backward();
        let v = |t: &Tensor<CpuTrain, 2>| t.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        vec![y.into_data().to_vec::<f32>().unwrap(), x.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap(), v(&w.gate), v(&w.up), v(&w.down)]
    }

    /// Output and the gradients of the input and the three weights against the reference, over
    /// gate inputs of both signs and beyond `exp`'s range, in chunks with a tail; the inference
    /// backend's forward is the training one's, bit for bit.
    #[test]
    fn mlp_matches_reference() {
        let _serial = crate::serial();
        let shape = (3, 7, 16, 400);
        let (want, got) = (run(shape, false), run(shape, true));
        for (what, (r, a)) in ["y", "dx", "dwg", "dwu", "dwd"].iter().zip(want.iter().zip(&got)) {
            let max = r.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(max > 1e-2, "{what} must not vanish");
            r.iter().zip(a).enumerate().for_each(|(i, (r, a))| assert!((a - r).abs() <= 1e-5 * max, "{what}[{i}]: {a} vs {r} (max {max})"));
        }
        let extreme: Vec<f32> = (0..200).map(|i| (i as f32 - 100.0) * 1.5).collect();
        let a = Tensor::<Cpu, 1>::from_data(TensorData::new(extreme.clone(), [200]), &Default::default()).reshape([1, 1, 200]);
        let ours = super::silu_mul(a.clone(), a.clone().ones_like()).into_data().to_vec::<f32>().unwrap();
        let theirs = burn::tensor::activation::silu(a).into_data().to_vec::<f32>().unwrap();
        ours.iter().zip(&theirs).zip(&extreme).for_each(|((o, t), x)| assert!((o - t).abs() <= 1e-6 * (1.0 + t.abs()), "silu({x}): {o} vs {t}"));
        assert_eq!(ours.iter().filter(|v| !v.is_finite()).count(), 0);
    }

    /// One thread or two: the same bits.
    #[test]
    fn mlp_is_bit_exact_across_thread_counts() {
        let _serial = crate::serial();
        let in_pool = |threads: usize| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| run((4, 33, 16, 520), true));
        let (one, two) = (in_pool(1), in_pool(2));
        for (a, b) in one.iter().zip(&two) {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
