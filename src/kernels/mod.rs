//! Hand-picked kernels outside burn's own: today, cuBLAS for the linear layers on CUDA.
//!
//! The model stays generic over `B: Backend`. Rust has no specialisation, so [`linear`] picks the
//! cuBLAS path by the backend's `TypeId` (the CUDA training and inference backends of
//! `crate::backend`) and hands the tensor primitives over by `Any` downcast; every other backend
//! (the CPU) never reaches it ([`has_blas`] is false there).

#[cfg(feature = "cuda")]
pub mod cublas;

use burn::prelude::*;

/// Whether [`linear`] has a cuBLAS path for backend `B`.
pub fn has_blas<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    {
        use crate::backend::{Gpu, GpuTrain};
        use std::any::TypeId;
        let b = TypeId::of::<B>();
        b == TypeId::of::<GpuTrain>() || b == TypeId::of::<Gpu>()
    }
    #[cfg(not(feature = "cuda"))]
    false
}

/// `x [b, l, d] · w [d, n]` as one `[b·l, d] × [d, n]` cuBLAS GEMM (and two in the backward).
/// Both operands must have the same dtype. Panics unless [`has_blas::<B>()`](has_blas).
pub fn linear<B: Backend>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let n = w.dims()[1];
    let (x, w) = (x.reshape([1, b * l, d]), w.unsqueeze::<3>());
    assert!(has_blas::<B>(), "kernels::linear on a backend without cuBLAS; check has_blas first");
    #[cfg(feature = "cuda")]
    return cublas::matmul(x, w).reshape([b, l, n]);
    #[cfg(not(feature = "cuda"))]
    unreachable!("{x:?} {w:?} {n}")
}
