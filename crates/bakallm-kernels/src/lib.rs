//! The operations the model runs ([`ops::BakaOps`], with their reference in burn's ops:
//! [`reference`]) and the kernels that override them: on CUDA (`cuda_ops`) cuBLAS linears and
//! autodiff ops with their own backward (attention, layer, MLP, norm, embedding, LM head + loss)
//! whose steps (`prims`) run bakallm's CUDA kernels (`cuda/*.cu`); on the CPU the LM head + loss as
//! one pass (`host_loss`), the attention (`cpu_attention`) and the MLP's gate (`cpu_gate`) as one op
//! each way. What the autodiff ops and the optimizer need of the inner backend is one more
//! trait, [`inner::Prims`], with the same pattern.

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
mod cpu_linear;
mod cpu_ops;
mod cpu_optim;
pub mod cross_entropy;
#[cfg(feature = "cuda")]
pub mod cublas;
#[cfg(feature = "cuda")]
mod cublaslt;
#[cfg(feature = "cuda")]
mod cuda_ops;
#[cfg(feature = "cuda")]
mod cuda_optim;
#[cfg(feature = "cuda")]
mod cuda_prims;
pub mod embedding;
pub mod env;
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
pub mod inner;
pub mod layer;
pub mod linear;
pub mod mlp;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod norm;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod ops;
pub mod prims;
pub mod reference;
pub mod staged;
#[cfg(test)]
mod test_positions;
pub mod trace;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod weight_copies;

#[cfg(test)]
use burn::prelude::*;

/// Widest `model.d_model` the fused norm kernel takes (`train.layernorm`): its backward keeps two
/// sums per column in shared memory.
pub const MAX_FUSED_NORM_D: usize = 6144;

/// `len` fixed pseudo-random values in [−1, 1) (a multiplicative hash of the index and `seed`):
/// the inputs of the ops' CPU tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64) -> TensorData {
    TensorData::new((0..len).map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>(), [len])
}

/// Whether the flash kernels take a model's attention: bf16 activations and head dim 32 or 64
/// (and, on the device, sm_80 or newer: `flash::supports`).
pub fn flash_fits(bf16: bool, head_dim: usize) -> bool {
    bf16 && (head_dim == 32 || head_dim == 64)
}

/// Holds the tests that build or differentiate autodiff graphs one at a time: burn-autodiff 0.21's
/// `backward()` sweeps every graph in the process and can free steps another thread is still
/// building, losing a gradient (tracel-ai/burn#5573). Training runs one graph at a time (each
/// experiment job is its own process); only tests run side by side in one process.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
