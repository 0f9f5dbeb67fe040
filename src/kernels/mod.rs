//! Hand-picked ops outside burn's own, for speed on CUDA: cuBLAS for the linear layers
//! (`train.matmul`) and a cross-entropy with a closed-form backward (`train.ce`).
//!
//! The model stays generic over `B: Backend`. Rust has no specialisation, so these pick their path
//! by the backend's `TypeId` (the CUDA backends of `crate::backend`) and hand the tensor primitives
//! over by `Any` downcast ([`retype`]); the CPU keeps burn's ops, so its runs stay bit-exact.

pub mod cross_entropy;
#[cfg(feature = "cuda")]
pub mod cublas;
pub mod gemm;

use burn::prelude::*;

/// `t` as the type it is (`T` and `U` are the same type, checked by `TypeId` by the caller).
#[cfg(feature = "cuda")]
pub(crate) fn retype<T: 'static, U: 'static>(t: T) -> U {
    *(Box::new(t) as Box<dyn std::any::Any>).downcast::<U>().unwrap_or_else(|_| panic!("retype: {} is not {}", std::any::type_name::<T>(), std::any::type_name::<U>()))
}

/// Per-token cross-entropy `[b, n]` of `logits [b, n, v]`: burn's `log_softmax` + gather, or on the
/// CUDA training backend with `closed_form`, [`cross_entropy::token_losses`] (same values, a
/// cheaper backward).
pub fn token_losses<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>, closed_form: bool) -> Tensor<B, 2> {
    #[cfg(feature = "cuda")]
    if closed_form && std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::GpuTrain>() {
        use crate::backend::GpuTrain;
        let [b, n, v] = logits.dims();
        let x = Tensor::<GpuTrain, 3>::from_primitive(retype(logits.into_primitive())).reshape([b * n, v]);
        let t = Tensor::<GpuTrain, 2, Int>::from_primitive(retype(targets.into_primitive())).reshape([b * n]);
        let l = cross_entropy::token_losses(x, t.inner()).reshape([b, n]);
        return Tensor::from_primitive(retype(l.into_primitive()));
    }
    let _ = closed_form;
    crate::model::token_losses(logits, targets)
}

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
    let ([b, l, d], n) = (x.dims(), w.dims()[1]);
    #[cfg(feature = "cuda")]
    return cublas::matmul(x.reshape([1, b * l, d]), w.unsqueeze::<3>()).reshape([b, l, n]);
    #[cfg(not(feature = "cuda"))]
    panic!("kernels::linear [{b}, {l}, {d}] · [{d}, {n}]: cuBLAS needs the cuda feature")
}
