//! The linear layers on the CPU (`BakaOps::dense` on `Cpu` and `CpuTrain` unless `train.matmul =
//! "burn"`): one GEMM each way, called as burn-flex calls it (the same strides and parallelism,
//! so the same bits), into a buffer that is written once.
//!
//! Why: burn-flex's matmul allocates its output as zeroed bytes and then copies them into an
//! aligned buffer, a memset and a memmove per product before the GEMM writes it (~5% of the CPU
//! bench's step, perf, 2026-12-04).

use super::binary::binary_ad;
use super::host::{gemm_rm, tensor, values};
use crate::backend::{Cpu, CpuTrain};
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::prelude::*;

/// burn-flex's threshold on m·n·k from which a product runs on rayon's threads.
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// A matrix operand: its values with their row and column strides.
type Operand<'a> = (&'a [f32], usize, usize);

/// `[m, n]` (row-major) = `lhs [m, k] · rhs [k, n]`.
fn product(m: usize, n: usize, k: usize, (lhs, lhs_rs, lhs_cs): Operand, (rhs, rhs_rs, rhs_cs): Operand) -> Vec<f32> {
    let reach = |v: &[f32], rows: usize, cols: usize, rs: usize, cs: usize| rows == 0 || cols == 0 || ((rows - 1) * rs + (cols - 1) * cs) < v.len();
    assert!(reach(lhs, m, k, lhs_rs, lhs_cs) && reach(rhs, k, n, rhs_rs, rhs_cs), "cpu linear: operands shorter than [{m}, {k}] · [{k}, {n}]");
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    let mut out = Vec::<f32>::with_capacity(m * n);
    // SAFETY: the operands reach as far as their shapes and strides (asserted); without
    // `accumulate` the GEMM writes all m·n outputs without reading them, and only then is the length set
    unsafe {
        gemm_rm(m, n, k, out.as_mut_ptr(), n, false, lhs.as_ptr(), (lhs_rs, lhs_cs), rhs.as_ptr(), (rhs_rs, rhs_cs), parallelism);
        out.set_len(m * n);
    }
    out
}

/// `x [b, l, d] · w [d, n]` (f32).
fn fwd(x: Tensor<Cpu, 3>, w: Tensor<Cpu, 2>, _: bool) -> Tensor<Cpu, 3> {
    let ([b, l, d], n) = (x.dims(), w.dims()[1]);
    let (xv, wv) = (values(x), values(w));
    tensor(product(b * l, n, d, (&xv, d, 1), (&wv, n, 1)), [b, l, n])
}

/// `(dx, dw)` from `g [b, l, n]`: `dx = g · wᵀ`, `dw = xᵀ · g` (autodiff's matmul backward, the
/// transposes as strided views).
fn bwd(g: Tensor<Cpu, 3>, x: Tensor<Cpu, 3>, w: Tensor<Cpu, 2>, _: bool) -> (Tensor<Cpu, 3>, Tensor<Cpu, 2>) {
    let ([b, l, d], n) = (x.dims(), w.dims()[1]);
    let (gv, xv, wv) = (values(g), values(x), values(w));
    let m = b * l;
    let dx = product(m, d, n, (&gv, n, 1), (&wv, 1, n));
    let dw = product(d, n, m, (&xv, 1, d), (&gv, n, 1));
    (tensor(dx, [b, l, d]), tensor(dw, [d, n]))
}

/// The inference backend's linear layer.
pub fn dense(x: Tensor<Cpu, 3>, w: Tensor<Cpu, 2>) -> Tensor<Cpu, 3> {
    fwd(x, w, true)
}

/// The training backend's linear layer: one node whose backward is two GEMMs.
pub fn dense_train(x: Tensor<CpuTrain, 3>, w: Tensor<CpuTrain, 2>) -> Tensor<CpuTrain, 3> {
    binary_ad::<Cpu, NoCheckpointing, 3, 2, 3>(x, w, fwd, bwd, true)
}

#[cfg(test)]
mod tests {
    use crate::backend::CpuTrain;
    use burn::prelude::*;

    /// The op equals `reference::linear` through autodiff bit for bit: the output and both
    /// gradients, at a shape above burn-flex's parallel threshold and one below it.
    #[test]
    fn dense_equals_burns_matmul_bit_for_bit() {
        let _serial = crate::serial();
        let dev = Default::default();
        for (b, l, d, n) in [(2, 300, 96, 200), (1, 5, 7, 3)] {
            let xs = crate::test_values(b * l * d, 1);
            let ws = crate::test_values(d * n, 2);
            let us = crate::test_values(b * l * n, 3);
            let run = |ours: bool| {
                let x = Tensor::<CpuTrain, 1>::from_data(xs.clone(), &dev).reshape([b, l, d]).require_grad();
                let w = Tensor::<CpuTrain, 1>::from_data(ws.clone(), &dev).reshape([d, n]).require_grad();
                let y = if ours { super::dense_train(x.clone(), w.clone()) } else { crate::reference::linear(x.clone(), w.clone()) };
                let u = Tensor::<CpuTrain, 1>::from_data(us.clone(), &dev).reshape([b, l, n]);
                let g = (y.clone() * u).sum().backward();
                let v = |t: Vec<f32>| t.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
                [v(y.into_data().to_vec().unwrap()), v(x.grad(&g).unwrap().into_data().to_vec().unwrap()), v(w.grad(&g).unwrap().into_data().to_vec().unwrap())]
            };
            let (want, got) = (run(false), run(true));
            for (what, (a, g)) in ["y", "dx", "dw"].iter().zip(want.iter().zip(&got)) {
                assert!(a == g, "[{b}, {l}, {d}] · [{d}, {n}] {what}: not the same bits");
            }
        }
    }
}
