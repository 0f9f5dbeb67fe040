//! Tests of `cpu_attention`: values and gradients against the reference for every position
//! scheme, and the same bits with one thread or two.

use crate::backend::{Cpu, CpuTrain};
use crate::ops::{AttnWeights, BakaOps, Kernels};
use crate::test_positions::{positions, Scheme};
use burn::prelude::*;
use burn::tensor::FloatDType;

/// Linspace: no rotation, k's ramp `[1, L, 1]` times a learned scale `[1, d]`.
const LINSPACE: Option<Scheme> = None;

/// `[y, dh, dwq, dwk, dwv, dwo, dk_scale]` of `Σ attention(h) ⊙ u` under `scheme`, through this
/// op (`ours`) or the reference.
fn run(scheme: Option<Scheme>, (b, l, heads, hd): (usize, usize, usize, usize), ours: bool) -> Vec<Vec<f32>> {
    let dev = Default::default();
    let d = heads * hd;
    let t = |n: usize, seed: u64, shape: [usize; 2], s: f32| Tensor::<CpuTrain, 1>::from_data(crate::test_values(n, seed), &dev).reshape(shape).mul_scalar(s).detach().require_grad();
    let h = Tensor::<CpuTrain, 1>::from_data(crate::test_values(b * l * d, 1), &dev).reshape([b, l, d]).require_grad();
    let u = Tensor::<CpuTrain, 1>::from_data(crate::test_values(b * l * d, 2), &dev).reshape([b, l, d]);
    let mut pos = positions::<CpuTrain>(scheme.unwrap_or(Scheme::Nope), l, 3, heads, hd, 10.0, 8.0, FloatDType::F32, &dev);
    let k_scale = scheme.is_none().then(|| t(d, 7, [1, d], 1.0));
    if scheme.is_none() {
        pos.k_ramp = Some(Tensor::from_data(TensorData::new((0..l).map(|i| i as f32 * 0.1).collect::<Vec<f32>>(), [1, l, 1]), &dev));
    }
    let w = AttnWeights { q: t(d * d, 3, [d, d], 0.6), k: t(d * d, 4, [d, d], 0.6), v: t(d * d, 5, [d, d], 0.6), o: t(d * d, 6, [d, d], 0.6), k_scale: k_scale.clone(), heads };
    assert!(super::Consts::new(&h, &w, &pos).is_some(), "{scheme:?}: the op must take this attention");
    let y = if ours { CpuTrain::self_attention(h.clone(), &w, &pos, &Kernels::FAST) } else { crate::reference::attention(h.clone(), &w, &pos, &Kernels::REFERENCE) };
    let g = (y.clone() * u).sum().backward();
    let v = |t: &Tensor<CpuTrain, 2>| t.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
    let mut out = vec![y.into_data().to_vec::<f32>().unwrap(), h.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap(), v(&w.q), v(&w.k), v(&w.v), v(&w.o)];
    out.extend(k_scale.as_ref().map(v));
    out
}

/// Output and the gradients of the input and of every weight against the reference, for
/// every position scheme, on shapes that leave vector tails; the inference backend's forward
/// is the training one's, bit for bit.
#[test]
fn attention_matches_reference_for_every_scheme() {
    let _serial = crate::serial();
    let shape = (2, 21, 2, 8);
    for scheme in [Some(Scheme::Nope), Some(Scheme::Rope), Some(Scheme::Xpos), Some(Scheme::Alibi), LINSPACE] {
        let (want, got) = (run(scheme, shape, false), run(scheme, shape, true));
        assert_eq!(want.len(), got.len());
        for (what, (r, a)) in ["y", "dh", "dwq", "dwk", "dwv", "dwo", "dk_scale"].iter().zip(want.iter().zip(&got)) {
            let max = r.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(max > 1e-2, "{scheme:?} {what} must not vanish");
            r.iter().zip(a).enumerate().for_each(|(i, (r, a))| assert!((a - r).abs() <= 1e-5 * max, "{scheme:?} {what}[{i}]: {a} vs {r} (max {max})"));
        }
        // the same forward on the inference backend
        let (b, l, heads, hd) = shape;
        let dev = Default::default();
        let d = heads * hd;
        let mut pos = positions::<Cpu>(scheme.unwrap_or(Scheme::Nope), l, 3, heads, hd, 10.0, 8.0, FloatDType::F32, &dev);
        let t = |n: usize, seed: u64, shape: [usize; 2]| Tensor::<Cpu, 1>::from_data(crate::test_values(n, seed), &dev).reshape(shape).mul_scalar(0.6);
        let k_scale = scheme.is_none().then(|| Tensor::<Cpu, 1>::from_data(crate::test_values(d, 7), &dev).reshape([1, d]));
        if scheme.is_none() {
            pos.k_ramp = Some(Tensor::from_data(TensorData::new((0..l).map(|i| i as f32 * 0.1).collect::<Vec<f32>>(), [1, l, 1]), &dev));
        }
        let w = AttnWeights { q: t(d * d, 3, [d, d]), k: t(d * d, 4, [d, d]), v: t(d * d, 5, [d, d]), o: t(d * d, 6, [d, d]), k_scale, heads };
        let h = Tensor::<Cpu, 1>::from_data(crate::test_values(b * l * d, 1), &dev).reshape([b, l, d]);
        let y = Cpu::self_attention(h, &w, &pos, &Kernels::FAST).into_data().to_vec::<f32>().unwrap();
        assert_eq!(y, got[0], "{scheme:?}: inference forward");
    }
}

/// One thread or two: the same bits (values and every gradient).
#[test]
fn attention_is_bit_exact_across_thread_counts() {
    let _serial = crate::serial();
    let in_pool = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| [Scheme::Rope, Scheme::Alibi].map(|s| run(Some(s), (4, 45, 3, 16), true)))
    };
    let (one, two) = (in_pool(1), in_pool(2));
    for (a, b) in one.iter().flatten().zip(two.iter().flatten()) {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
