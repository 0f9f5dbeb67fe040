//! The LM head and the token cross-entropy as one pass on the CPU (`train.ce = "chunked"`, the
//! default): the CPU counterpart of the CUDA head + CE op.
//!
//! Why: through burn's ops the loss of `[n, V]` logits is ~15 passes over them (log_softmax's
//! reduce, subtract, scalar `exp`, log; the gather and its zeros + scatter backward; the copies of
//! non-contiguous views), and at the quick start's vocabulary they took most of a CPU step. Here
//! each task takes `ROWS` rows: one GEMM for their logits, one pass for the losses that turns the
//! logits into their gradient `(softmax − onehot) / n` in place (a vectorised `exp`), one GEMM for
//! their rows of `dx`; `dw = xᵀ · dlogits` is one GEMM per block of columns. Every task writes its
//! own part of the output and sums in a fixed order, so the result does not depend on the number
//! of threads: CPU runs stay bit-exact, also one run per core (`experiment --jobs`).
//!
//! The gradients reach autodiff through the op the CUDA head uses too
//! (`cross_entropy::loss_with_grads`: its backward hands over `dx` and `dw` times the upstream
//! gradient); the reference is `token_losses(x · w, targets).mean()` (`train.ce = "autodiff"`),
//! against which the tests check the values and both gradients.

use super::host::gemm_rm;
use super::staged::read_now;
use crate::backend::{Cpu, CpuTrain};
use burn::prelude::*;
use rayon::prelude::*;

/// Each task's GEMMs run on its own thread (the tasks are the parallelism).
const ONE_THREAD: gemm::Parallelism = gemm::Parallelism::None;
/// Rows of logits per task.
const ROWS: usize = 256;
/// Columns of `dw` per task.
const COLS: usize = 256;
/// Logits (bytes) held at once: rows are taken in groups of at most this many logits.
const GROUP_BYTES: usize = 64 << 20;

/// Per-token losses (nats) of `x [n, d] · w [d, v]` against `t [n]`, and with `grads` the
/// gradients of their mean: `(losses, dx [n, d], dw [d, v])`, all row-major f32.
pub fn head_ce(x: &[f32], w: &[f32], t: &[usize], d: usize, grads: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    head_ce_in(x, w, t, d, grads, GROUP_BYTES)
}

/// [`head_ce`] holding at most `group_bytes` of logits at once.
fn head_ce_in(x: &[f32], w: &[f32], t: &[usize], d: usize, grads: bool, group_bytes: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = t.len();
    let v = w.len() / d.max(1);
    assert!(x.len() == n * d && w.len() == d * v && n > 0 && v > 0, "head_ce: x {} values, w {} values, {n} targets, d {d}", x.len(), w.len());
    if let Some(bad) = t.iter().find(|&&k| k >= v) {
        panic!("head_ce: target {bad} is outside the vocabulary of {v}");
    }
    let mut losses = vec![0f32; n];
    let (mut dx, mut dw) = if grads { (vec![0f32; n * d], vec![0f32; d * v]) } else { (Vec::new(), Vec::new()) };
    let group = (group_bytes / (4 * v)).max(ROWS).next_multiple_of(ROWS).min(n.next_multiple_of(ROWS));
    // the logits' buffer is kept from call to call (every element is written before it is read)
    let mut logits = LOGITS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if logits.len() < group * v {
        logits = vec![0f32; group * v];
    }
    let scale = 1.0 / n as f32;
    for (gi, start) in (0..n).step_by(group).enumerate() {
        let rows = group.min(n - start);
        let xg = &x[start * d..(start + rows) * d];
        let lg = &mut logits[..rows * v];
        let dxg: &mut [f32] = if grads { &mut dx[start * d..(start + rows) * d] } else { &mut [] };
        let tasks = lg.par_chunks_mut(ROWS * v).zip(losses[start..start + rows].par_chunks_mut(ROWS)).enumerate();
        let dx_ptr = SendPtr(dxg.as_mut_ptr());
        tasks.for_each(|(i, (l, out))| {
            let r = out.len();
            let xr = &xg[i * ROWS * d..(i * ROWS + r) * d];
            // logits [r, v] = x_r [r, d] · w [d, v]
            unsafe { gemm_rm(r, v, d, l.as_mut_ptr(), v, false, xr.as_ptr(), (d, 1), w.as_ptr(), (v, 1), ONE_THREAD) };
            for (j, (row, loss)) in l.chunks_exact_mut(v).zip(out.iter_mut()).enumerate() {
                let k = t[start + i * ROWS + j];
                let target = row[k];
                let (m, s) = exp_shifted(row);
                *loss = m + s.ln() - target;
                if grads {
                    let c = scale / s;
                    row.iter_mut().for_each(|e| *e *= c);
                    row[k] -= scale;
                }
            }
            if grads {
                // dx_r [r, d] = dlogits [r, v] · wᵀ [v, d]
                let dst = unsafe { dx_ptr.get().add(i * ROWS * d) };
                unsafe { gemm_rm(r, d, v, dst, d, false, l.as_ptr(), (v, 1), w.as_ptr(), (1, v), ONE_THREAD) };
            }
        });
        if grads {
            // dw [d, v] (+)= x_gᵀ [d, rows] · dlogits [rows, v], one block of columns per task
            let (dw_ptr, lg) = (SendPtr(dw.as_mut_ptr()), &logits[..rows * v]);
            (0..v.div_ceil(COLS)).into_par_iter().for_each(|b| {
                let (c0, cols) = (b * COLS, COLS.min(v - b * COLS));
                unsafe { gemm_rm(d, cols, rows, dw_ptr.get().add(c0), v, gi > 0, xg.as_ptr(), (1, d), lg.as_ptr().add(c0), (v, 1), ONE_THREAD) };
            });
        }
    }
    LOGITS.with(|b| *b.borrow_mut() = logits);
    (losses, dx, dw)
}

thread_local! {
    /// [`head_ce_in`]'s logits, kept for the next call on this thread.
    static LOGITS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A pointer shared by tasks that each write their own disjoint part of one buffer.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

widest! {
    /// Replaces `row` by `exp(row − max)` and returns `(max, Σ exp(row − max))`.
    fn exp_shifted = exp_shifted_any(row: &mut [f32]) -> (f32, f32)
}

/// Sixteen lanes each for the max and the sum, combined in a fixed order: the same result
/// whatever the vector width the compiler picks (Rust never fuses a multiply and an add).
#[inline(always)]
pub(crate) fn exp_shifted_any(row: &mut [f32]) -> (f32, f32) {
    const LANES: usize = 16;
    let mut mx = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            mx[j] = if c[j] > mx[j] { c[j] } else { mx[j] };
        }
    }
    let m = tail.iter().chain(&mx).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            c[j] = exp(c[j] - m);
            acc[j] += c[j];
        }
    }
    let tail = chunks.into_remainder();
    tail.iter_mut().for_each(|e| *e = exp(*e - m));
    let s = acc.iter().chain(tail.iter()).fold(0f32, |a, &b| a + b);
    (m, s)
}

/// `eˣ` for `x ≤ 0` (the shifted logits), within 2 ulp: Cody–Waite reduction `x = k·ln2 + r`
/// and Cephes' degree-6 polynomial for `eʳ`, then `2ᵏ` put into the exponent bits. Branch-free
/// arithmetic without a float-to-int cast (Rust's saturating `as` does not vectorise: `k` is
/// read from the low bits of `x·log₂e + 1.5·2²³`), so the loops that call it vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * LOG2E + ROUND;
    let k = shifted - ROUND;
    let r = (x - k * 0.693_359_4) - k * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * (r * r) + r + 1.0;
    // the bits of `shifted` are those of ROUND plus k (an integer in [−126, 0])
    er * f32::from_bits(shifted.to_bits().wrapping_sub(ROUND.to_bits() - 127) << 23)
}

/// Mean token cross-entropy `[1]` of the LM head `h [b, n, d] · w [d, V]` against `targets [b, n]`
/// with [`head_ce`], for training on the CPU: the mean (summed in f64) and its gradients `dx`,
/// `dw` as one autodiff op.
pub fn head_loss(h: Tensor<CpuTrain, 3>, w: Tensor<CpuTrain, 2>, targets: Tensor<CpuTrain, 2, Int>) -> Tensor<CpuTrain, 1> {
    let [b, n, d] = h.dims();
    let dev = h.device();
    let h = h.reshape([b * n, d]);
    let (losses, dx, dw) = head_ce(&read_now(h.clone().inner()), &read_now(w.clone().inner()), &ids(targets.inner()), d, true);
    let mean = losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64;
    let constant = |v: Vec<f32>, shape: [usize; 2]| Tensor::<Cpu, 2>::from_data(TensorData::new(v, shape), &dev);
    let (dx, dw) = (constant(dx, [b * n, d]), constant(dw, w.dims()));
    super::cross_entropy::loss_with_grads(h, w, Tensor::from_data(TensorData::new(vec![mean as f32], [1]), &dev), dx, dw, true)
}

/// Per-token losses `[b, n]` (nats) of the LM head `h [b, n, d] · w [d, V]` against `targets`,
/// without gradients (evaluation on the CPU).
pub fn head_token_losses<B: Backend>(h: Tensor<B, 3>, w: Tensor<B, 2>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [b, n, d] = h.dims();
    let dev = h.device();
    let (losses, _, _) = head_ce(&read_now(h.reshape([b * n, d])), &read_now(w), &ids(targets), d, false);
    Tensor::from_data(TensorData::new(losses, [b, n]), &dev)
}

/// Token ids as indices.
fn ids<B: Backend>(t: Tensor<B, 2, Int>) -> Vec<usize> {
    t.into_data().convert::<i64>().into_vec::<i64>().expect("int data").into_iter().map(|k| k as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuTrain};

    fn inputs(n: usize, d: usize, v: usize) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
        // deterministic, irregular values: a fixed LCG
        let mut s = 12345u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let x = (0..n * d).map(|_| 2.0 * next()).collect();
        let w = (0..d * v).map(|_| next()).collect();
        let t = (0..n).map(|i| (i * 7919 + 3) % v).collect();
        (x, w, t)
    }

    #[test]
    fn exp_within_two_ulp_of_std() {
        let _serial = crate::serial();
        for i in 0..20000 {
            let x = -87.0 * i as f32 / 20000.0;
            let (a, b) = (exp(x), x.exp());
            assert!((a - b).abs() <= 2.0 * f32::EPSILON * b, "exp({x}) = {a}, std {b}");
        }
        assert_eq!(exp(0.0), 1.0);
    }

    /// Loss, dx and dw against burn's autodiff through `log_softmax` (`train.ce = "autodiff"`), on
    /// shapes that leave partial row tasks and column blocks, in several row groups.
    #[test]
    fn head_ce_matches_autodiff_reference() {
        let _serial = crate::serial();
        let dev = Default::default();
        for (b, l, d, v) in [(2, 19, 8, 300), (3, 40, 16, 1000)] {
            let (x, w, t) = inputs(b * l, d, v);
            let xt = Tensor::<CpuTrain, 3>::from_data(TensorData::new(x.clone(), [b, l, d]), &dev).require_grad();
            let wt = Tensor::<CpuTrain, 2>::from_data(TensorData::new(w.clone(), [d, v]), &dev).require_grad();
            let tt = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(t.iter().map(|&k| k as i64).collect::<Vec<_>>(), [b, l]), &dev);
            let reference = crate::reference::token_losses(xt.clone().matmul(wt.clone().unsqueeze::<3>()), tt.clone()).mean();
            let g = reference.backward();
            let (rx, rw) = (xt.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap(), wt.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap());
            let ref_loss = reference.into_scalar();

            let loss = head_loss(xt.clone(), wt.clone(), tt);
            let g = loss.backward();
            let (hx, hw) = (xt.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap(), wt.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap());
            let loss = loss.into_scalar();
            assert!((loss - ref_loss).abs() < 1e-5 * ref_loss.abs(), "loss {loss} vs {ref_loss}");
            let close = |a: &[f32], r: &[f32], what: &str| {
                let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
                a.iter().zip(r).enumerate().for_each(|(i, (a, r))| assert!((a - r).abs() <= 1e-4 * scale, "{what}[{i}]: {a} vs {r} (max {scale})"));
            };
            close(&hx, &rx, "dx");
            close(&hw, &rw, "dw");
        }
    }

    /// Row groups (forced here by a small budget: 16 rows) sum `dw` over the groups; the
    /// forward-only losses equal the training losses and burn's.
    #[test]
    fn row_groups_and_losses_without_grads_match() {
        let _serial = crate::serial();
        let (n, d, v) = (37, 4, 64);
        let (x, w, t) = inputs(n, d, v);
        let (l1, dx1, dw1) = head_ce(&x, &w, &t, d, true);
        let (l2, dx2, dw2) = head_ce_in(&x, &w, &t, d, true, 16 * 4 * v);
        assert_eq!((&l1, &dx1), (&l2, &dx2));
        dw1.iter().zip(&dw2).for_each(|(a, b)| assert!((a - b).abs() < 1e-6, "dw {a} vs {b}"));
        let (l0, dx, dw) = head_ce(&x, &w, &t, d, false);
        assert_eq!(l0, l1);
        assert!(dx.is_empty() && dw.is_empty());
        let dev = Default::default();
        let h = Tensor::<Cpu, 3>::from_data(TensorData::new(x, [1, n, d]), &dev);
        let tt = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(t.iter().map(|&k| k as i64).collect::<Vec<_>>(), [1, n]), &dev);
        let wt = Tensor::<Cpu, 2>::from_data(TensorData::new(w.clone(), [d, v]), &dev);
        let reference: Vec<f32> = crate::reference::token_losses(h.clone().matmul(wt.clone().unsqueeze::<3>()), tt.clone()).into_data().to_vec().unwrap();
        let ours: Vec<f32> = head_token_losses(h, wt, tt).into_data().to_vec().unwrap();
        ours.iter().zip(&reference).for_each(|(a, r)| assert!((a - r).abs() < 1e-5 * r.abs().max(1.0), "{a} vs {r}"));
        let bad = std::panic::catch_unwind(|| head_ce(&[0.0; 4], &w, &[v], d, false));
        assert!(bad.is_err());
    }
}
