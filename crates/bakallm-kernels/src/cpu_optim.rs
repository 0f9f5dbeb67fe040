//! The optimizer step's kernels on the CPU (`train.adamw = "fused"`, the default): the global
//! gradient norm and AdamW as one pass over each parameter, the counterparts of `cuda/optim.cu`.
//!
//! Why: burn's AdamW is ~12 elementwise ops per parameter, each allocating its result: ~14 ms of
//! a 130 ms step at the CPU bench's shape (2.6M parameters). Here one vectorised pass reads p, g,
//! m, v and writes p, m, v, in burn's order of operations (one rounding each, no fused multiply-add),
//! so the values are burn's bit for bit; the clip and the skip of a non-finite step happen here
//! too, as on CUDA. Elementwise on chunks of a fixed size, and the norm sums chunk by chunk in a
//! fixed order: the result does not depend on the number of threads.

use super::host::{primitive_values, values};
use crate::backend::Cpu;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::TensorMetadata;
use rayon::prelude::*;

/// Elements per task.
const CHUNK: usize = 1 << 14;

/// `Σ x²` over all elements of all `tensors`, as `[1]`: per chunk in sixteen f32 lanes, the chunks
/// and tensors summed in order in f64.
pub fn sum_squares(tensors: Vec<FloatTensor<Cpu>>) -> Tensor<Cpu, 1> {
    let total: f64 = tensors.into_iter().map(|t| primitive_values(t).par_chunks(CHUNK).map(sum_sq).collect::<Vec<f64>>().into_iter().sum::<f64>()).sum();
    Tensor::from_data(TensorData::new(vec![total as f32], [1]), &Default::default())
}

/// One AdamW step of each parameter (see `kernels::adamw` for the arguments): `[p, m, v]` after it.
pub fn adamw(ps: Vec<FloatTensor<Cpu>>, gs: Vec<FloatTensor<Cpu>>, mvs: Option<Vec<[FloatTensor<Cpu>; 2]>>, stats: Option<Tensor<Cpu, 1>>, h: [f32; 11]) -> Vec<[FloatTensor<Cpu>; 3]> {
    let mut a = Adam { lr: h[0], b1: h[1], c1: h[2], b2: h[3], c2: h[4], eps: h[5], decay: h[6], bc1: h[7], bc2: h[8], clip: h[9] };
    let (max_norm, mut skip) = (h[10], false);
    if let Some(stats) = stats {
        let s = values(stats);
        let (loss, norm) = (s[0], s[1]);
        skip = !(loss.is_finite() && norm.is_finite());
        a.clip = if max_norm > 0.0 && norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 };
    }
    let mut mvs = mvs.map(|v| v.into_iter());
    ps.into_iter()
        .zip(gs)
        .map(|(p, g)| {
            let shape = p.shape();
            let mv = mvs.as_mut().map(|it| it.next().expect("moments for every parameter"));
            let out = |v: Vec<f32>| Cpu::float_from_data(TensorData::new(v, shape.clone()), &Default::default());
            if skip {
                let zeros = || out(vec![0.0; shape.num_elements()]);
                return match mv {
                    Some([m, v]) => [p, m, v],
                    None => [p, zeros(), zeros()],
                };
            }
            let (pv, gv) = (primitive_values(p), primitive_values(g));
            let n = pv.len();
            // the outputs are written whole below: no zeroing first (a memset of 3·4 bytes per parameter)
            let (mut po, mut mo, mut vo) = (Vec::<f32>::with_capacity(n), Vec::<f32>::with_capacity(n), Vec::<f32>::with_capacity(n));
            let (pw, mw, vw) = (&mut po.spare_capacity_mut()[..n], &mut mo.spare_capacity_mut()[..n], &mut vo.spare_capacity_mut()[..n]);
            let outs = pw.par_chunks_mut(CHUNK).zip(mw.par_chunks_mut(CHUNK)).zip(vw.par_chunks_mut(CHUNK));
            let ins = pv.par_chunks(CHUNK).zip(gv.par_chunks(CHUNK));
            match mv {
                None => outs.zip(ins).for_each(|(((po, mo), vo), (p, g))| first(po, mo, vo, p, g, &a)),
                Some([m, v]) => {
                    let (mv_, vv) = (primitive_values(m), primitive_values(v));
                    outs.zip(ins.zip(mv_.par_chunks(CHUNK).zip(vv.par_chunks(CHUNK)))).for_each(|(((po, mo), vo), ((p, g), (m, v)))| next(po, mo, vo, p, g, m, v, &a))
                }
            }
            // SAFETY: every one of the n elements was written (the chunks cover them, and each
            // kernel writes every index of its chunk: p, g, m, v are as long as the outputs)
            unsafe { (po.set_len(n), mo.set_len(n), vo.set_len(n)) };
            [out(po), out(mo), out(vo)]
        })
        .collect()
}

/// The step's scalars, as `cuda/optim.cu`'s `Adam` (`c = 1 − β`, `bc = 1 − βᵗ`, `decay = 1 − lr·wd`).
#[derive(Debug, Clone, Copy)]
struct Adam {
    lr: f32,
    b1: f32,
    c1: f32,
    b2: f32,
    c2: f32,
    eps: f32,
    decay: f32,
    bc1: f32,
    bc2: f32,
    clip: f32,
}

/// `p` after the step with the moments `(m, v)`, in burn's order of operations.
#[inline(always)]
fn update(p: f32, m: f32, v: f32, a: &Adam) -> f32 {
    let step = (m / a.bc1) / ((v / a.bc2).sqrt() + a.eps);
    let p = if a.decay == 1.0 { p } else { p * a.decay };
    p - step * a.lr
}

/// The first step: `m = (1 − β1)·g`, `v = (1 − β2)·g²` (burn's first step).
#[inline(always)]
fn first_any(po: &mut [Out], mo: &mut [Out], vo: &mut [Out], p: &[f32], g: &[f32], a: &Adam) {
    let n = po.len();
    assert!(p.len() == n && g.len() == n && mo.len() == n && vo.len() == n, "adamw: chunk lengths");
    for i in 0..n {
        let gi = if a.clip == 1.0 { g[i] } else { g[i] * a.clip };
        let (m, v) = (gi * a.c1, (gi * gi) * a.c2);
        po[i].write(update(p[i], m, v, a));
        mo[i].write(m);
        vo[i].write(v);
    }
}

/// Later steps: `m = β1·m + (1 − β1)·g`, `v = β2·v + (1 − β2)·g²`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn next_any(po: &mut [Out], mo: &mut [Out], vo: &mut [Out], p: &[f32], g: &[f32], m: &[f32], v: &[f32], a: &Adam) {
    let n = po.len();
    assert!(p.len() == n && g.len() == n && m.len() == n && v.len() == n && mo.len() == n && vo.len() == n, "adamw: chunk lengths");
    for i in 0..n {
        let gi = if a.clip == 1.0 { g[i] } else { g[i] * a.clip };
        let (mi, vi) = (m[i] * a.b1 + gi * a.c1, v[i] * a.b2 + (gi * gi) * a.c2);
        po[i].write(update(p[i], mi, vi, a));
        mo[i].write(mi);
        vo[i].write(vi);
    }
}

/// An output element, written once (the outputs are not zeroed first).
type Out = std::mem::MaybeUninit<f32>;

/// `Σ x²` of a chunk in sixteen lanes, combined in order.
#[inline(always)]
fn sum_sq_any(x: &[f32]) -> f64 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..16 {
            acc[j] += c[j] * c[j];
        }
    }
    let s = acc.iter().fold(0f64, |s, &v| s + v as f64);
    tail.iter().fold(s, |s, &v| s + (v * v) as f64)
}

widest! {
    /// [`first_any`] at the CPU's widest vectors.
    fn first = first_any(po: &mut [Out], mo: &mut [Out], vo: &mut [Out], p: &[f32], g: &[f32], a: &Adam)
}

widest! {
    /// [`next_any`] at the CPU's widest vectors.
    #[allow(clippy::too_many_arguments)]
    fn next = next_any(po: &mut [Out], mo: &mut [Out], vo: &mut [Out], p: &[f32], g: &[f32], m: &[f32], v: &[f32], a: &Adam)
}

widest! {
    /// [`sum_sq_any`] at the CPU's widest vectors.
    fn sum_sq = sum_sq_any(x: &[f32]) -> f64
}

#[cfg(test)]
mod tests {
    use crate::backend::Cpu;
    use burn::optim::{AdamWConfig, SimpleOptimizer};
    use burn::prelude::*;

    fn t(n: usize, seed: u64) -> Tensor<Cpu, 2> {
        Tensor::<Cpu, 1>::from_data(crate::test_values(n, seed), &Default::default()).reshape([n / 50, 50])
    }
    fn prim(t: Tensor<Cpu, 2>) -> burn::tensor::ops::FloatTensor<Cpu> {
        t.into_primitive().tensor()
    }
    fn vals(t: burn::tensor::ops::FloatTensor<Cpu>) -> Vec<f32> {
        super::primitive_values(t).to_vec()
    }

    /// Two steps equal burn's AdamW bit for bit (the gradient scaled by the clip of `stats`, as
    /// burn's ops would scale it); a non-finite loss leaves everything as it was; the norm equals
    /// burn's sum of squares; one thread or two give the same bits.
    #[test]
    fn adamw_is_burns_and_sum_squares_is_exact() {
        let (lr, wd, n) = (1e-2, 0.1, 50 * 400);
        let burn = AdamWConfig::new().with_weight_decay(wd as f32).with_epsilon(1e-8).build();
        let same = |a: Vec<f32>, b: Vec<f32>, what: &str| {
            assert_eq!(a.len(), b.len());
            let bad = a.iter().zip(&b).position(|(x, y)| x.to_bits() != y.to_bits());
            assert!(bad.is_none(), "{what}: [{}] {} vs {}", bad.unwrap(), a[bad.unwrap()], b[bad.unwrap()]);
        };
        let (p0, g1, g2) = (t(n, 1), t(n, 2).mul_scalar(3.0), t(n, 3));
        let h = |time: i32, clip: f32, max_norm: f32| {
            let (b1, b2) = (0.9f32, 0.999f32);
            [lr as f32, b1, 1.0 - b1, b2, 1.0 - b2, 1e-8, (1.0 - lr * wd) as f32, 1.0 - b1.powi(time), 1.0 - b2.powi(time), clip, max_norm]
        };
        // the norm of g1 is far above 1: the stats clip it to 1
        let norm = g1.clone().square().sum().sqrt().into_scalar();
        let ours_norm = super::sum_squares(vec![prim(g1.clone())]).sqrt().into_scalar();
        assert!((ours_norm - norm).abs() <= 1e-6 * norm, "norm {ours_norm} vs {norm}");
        let stats = |loss: f32| Tensor::<Cpu, 1>::from_data(TensorData::new(vec![loss, norm], [2]), &Default::default());
        let step1 = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| super::adamw(vec![prim(p0.clone())], vec![prim(g1.clone())], None, Some(stats(2.0)), h(1, 1.0, 1.0)).pop().unwrap())
        };
        let [p1, m1, v1] = step1(2);
        let [p1b, ..] = step1(1);
        same(vals(p1.clone()), vals(p1b), "one thread or two");
        let clip = 1.0 / (norm + 1e-6);
        let (bp1, s1) = burn.step(lr, p0.clone(), g1.clone().mul_scalar(clip), None);
        same(vals(p1.clone()), vals(prim(bp1.clone())), "first step");
        let [p2, m2, v2] = super::adamw(vec![p1.clone()], vec![prim(g2.clone())], Some(vec![[m1, v1]]), None, h(2, 1.0, 0.0)).pop().unwrap();
        let (bp2, s2) = burn.step(lr, bp1, g2.clone(), s1);
        let s2 = s2.unwrap().momentum;
        same(vals(p2.clone()), vals(prim(bp2)), "second step");
        same(vals(m2.clone()), vals(prim(s2.moment_1)), "m");
        same(vals(v2.clone()), vals(prim(s2.moment_2)), "v");
        // a non-finite loss: nothing moves
        let [p3, m3, v3] = super::adamw(vec![p2.clone()], vec![prim(g2)], Some(vec![[m2.clone(), v2.clone()]]), Some(stats(f32::NAN)), h(3, 1.0, 1.0)).pop().unwrap();
        same(vals(p3), vals(p2), "skipped p");
        same(vals(m3), vals(m2), "skipped m");
        same(vals(v3), vals(v2), "skipped v");
    }
}
