//! The operations the model runs ([`ops::BakaOps`], with their reference in burn's ops:
//! [`reference`]) and the kernels that override them: on CUDA (`cuda_ops`) cuBLAS linears and
//! autodiff ops with their own backward (attention, layer, MLP, norm, embedding, LM head + loss)
//! whose steps (`prims`) run bakallm's CUDA kernels (`cuda/*.cu`); on the CPU the LM head + loss as
//! one pass (`host_loss`), the attention (`cpu_attention`) and the MLP's gate (`cpu_gate`) as one op
//! each way. The optimizer's multi-tensor kernels are below.

/// `fn $name(args) -> R` that runs `$any(args)` (an `#[inline(always)]` function) compiled for
/// AVX-512 or AVX2 where the CPU has them. The arithmetic is the same, only in wider vectors, and
/// Rust never fuses a multiply and an add, so the result is too; reductions in `$any` keep a fixed
/// number of lanes for that.
macro_rules! widest {
    ($(#[$doc:meta])* $vis:vis fn $name:ident = $any:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                // SAFETY: the CPU has the feature (checked at run time)
                if std::is_x86_feature_detected!("avx512f") {
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    return unsafe { v3($($arg),*) };
                }
            }
            $any($($arg),*)
        }
    };
}

pub mod attention;
pub mod attention_block;
pub mod backend;
pub mod binary;
mod cpu_attention;
mod cpu_gate;
mod cpu_ops;
mod cpu_optim;
pub mod cross_entropy;
#[cfg(feature = "cuda")]
pub mod cublas;
#[cfg(feature = "cuda")]
mod cublaslt;
#[cfg(feature = "cuda")]
mod cuda_ops;
pub mod embedding;
#[cfg(feature = "cuda")]
pub mod flash;
#[cfg(feature = "cuda")]
pub mod fused;
#[cfg(feature = "cuda")]
mod fusion;
pub mod gate;
pub mod gemm;
#[cfg(all(test, feature = "cuda"))]
mod gpu_tests;
#[cfg(feature = "cuda")]
mod head;
pub mod heads;
pub mod host;
pub mod host_loss;
pub mod layer;
pub mod linear;
pub mod mlp;
pub mod norm;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod ops;
pub mod prims;
pub mod reference;
pub mod staged;
#[cfg(test)]
mod test_positions;

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

/// Widest `model.d_model` the fused norm kernel takes (`train.layernorm`): its backward keeps two
/// sums per column in shared memory.
pub const MAX_FUSED_NORM_D: usize = 6144;

/// `len` fixed pseudo-random values in [−1, 1) (a multiplicative hash of the index and `seed`):
/// the inputs of the ops' CPU tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64) -> TensorData {
    TensorData::new((0..len).map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>(), [len])
}

/// `t` as the type it is (`T` and `U` are the same type, checked by `TypeId` by the caller).
pub(crate) fn retype<T: 'static, U: 'static>(t: T) -> U {
    *(Box::new(t) as Box<dyn std::any::Any>).downcast::<U>().unwrap_or_else(|_| panic!("retype: {} is not {}", std::any::type_name::<T>(), std::any::type_name::<U>()))
}

/// Whether the flash kernels take a model's attention: bf16 activations and head dim 32 or 64
/// (and, on the device, sm_80 or newer: `flash::supports`).
pub fn flash_fits(bf16: bool, head_dim: usize) -> bool {
    bf16 && (head_dim == 32 || head_dim == 64)
}

/// Whether `B` is `T`.
fn is<B: 'static, T: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<T>()
}

/// Whether [`sum_squares`] and [`adamw`] have their kernels for the (inner, non-autodiff) backend
/// `B`: CUDA, and the CPU (`cpu_optim`).
pub fn has_optim_kernels<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    if is::<B, crate::backend::Gpu>() {
        return true;
    }
    is::<B, crate::backend::Cpu>()
}

/// `Σ x²` over all elements of all `tensors` (f32 gradients, any shapes) as `[1]`, in one
/// multi-tensor kernel per 64 tensors instead of a reduction each (`cuda/optim.cu`; on the CPU
/// one pass, `cpu_optim`). Panics unless [`has_optim_kernels::<B>()`](has_optim_kernels).
pub fn sum_squares<B: Backend>(tensors: Vec<FloatTensor<B>>) -> Tensor<B, 1> {
    if is::<B, crate::backend::Cpu>() {
        let s = cpu_optim::sum_squares(tensors.into_iter().map(retype).collect());
        return Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(retype(s.into_primitive().tensor())));
    }
    #[cfg(feature = "cuda")]
    if is::<B, crate::backend::Gpu>() {
        use fused::FusedBackend;
        let s = crate::backend::Gpu::sum_squares(tensors.into_iter().map(retype).collect());
        return Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(retype(s)));
    }
    let _ = tensors;
    panic!("kernels::sum_squares: {} has no kernel", std::any::type_name::<B>())
}

/// One AdamW step of each f32 parameter `ps[i]` with gradient `gs[i]` and moments `mvs[i]`
/// (`None` on the first step), one kernel per 32 parameters (`cuda/optim.cu`; on the CPU one pass
/// per parameter, `cpu_optim`); returns `[p, m, v]` of each. `h`: see `fused::AdamScalars`
/// (`[f32; 11]`); `stats` (`[loss, norm]`): clip on the device, skip the step if either is not
/// finite. Panics unless [`has_optim_kernels::<B>()`](has_optim_kernels).
pub fn adamw<B: Backend>(ps: Vec<FloatTensor<B>>, gs: Vec<FloatTensor<B>>, mvs: Option<Vec<[FloatTensor<B>; 2]>>, stats: Option<Tensor<B, 1>>, h: [f32; 11]) -> Vec<[FloatTensor<B>; 3]> {
    if is::<B, crate::backend::Cpu>() {
        let all = |v: Vec<FloatTensor<B>>| v.into_iter().map(retype).collect();
        let stats = stats.map(|s| Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(retype(s.into_primitive().tensor()))));
        let out = cpu_optim::adamw(all(ps), all(gs), mvs.map(|mvs| mvs.into_iter().map(|mv| mv.map(retype)).collect()), stats, h);
        return out.into_iter().map(|t| t.map(retype)).collect();
    }
    #[cfg(feature = "cuda")]
    if is::<B, crate::backend::Gpu>() {
        use fused::FusedBackend;
        let all = |v: Vec<FloatTensor<B>>| v.into_iter().map(retype).collect();
        let stats = stats.map(|s| retype(s.into_primitive().tensor()));
        let out = crate::backend::Gpu::adamw(all(ps), all(gs), mvs.map(|mvs| mvs.into_iter().map(|mv| mv.map(retype)).collect()), stats, h);
        return out.into_iter().map(|t| t.map(retype)).collect();
    }
    let _ = (ps, gs, mvs, stats, h);
    panic!("kernels::adamw: {} has no kernel", std::any::type_name::<B>())
}
