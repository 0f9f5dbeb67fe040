//! CPU tensors as slices for the host ops (`host_loss`, `cpu_attention`, `cpu_gate`, `cpu_linear`):
//! burn-flex's contiguous f32 storage read in place, anything else copied once; and their GEMM.

use crate::backend::Cpu;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

/// The values of a CPU tensor, row-major f32.
pub enum Values {
    /// burn-flex's own buffer (contiguous f32, shared, not copied).
    Shared(FloatTensor<Cpu>),
    Owned(Vec<f32>),
}

impl std::ops::Deref for Values {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Values::Shared(t) => t.as_slice::<f32>().expect("checked contiguous f32"),
            Values::Owned(v) => v,
        }
    }
}

/// The values of `t`, in place where they are contiguous f32.
pub fn values<const D: usize>(t: Tensor<Cpu, D>) -> Values {
    primitive_values(t.into_primitive().tensor())
}

/// The values of a float primitive of the CPU backend, any rank (see [`values`]).
pub fn primitive_values(p: FloatTensor<Cpu>) -> Values {
    if p.as_slice::<f32>().is_some() {
        return Values::Shared(p);
    }
    Values::Owned(p.into_data().convert::<f32>().to_vec().expect("float values"))
}

/// `v` as a CPU tensor of `shape`, without a copy.
pub fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<Cpu, D> {
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

/// `dst [m, n] (+)= a [m, k] · b [k, n]` by the gemm crate on `parallelism`'s threads; `dst`
/// row-major with row stride `ld` (read only with `accumulate`), `a` and `b` given as (row stride,
/// column stride). The host ops' one way into it (`host_loss`, `cpu_linear`).
///
/// # Safety
/// `a`, `b` and `dst` must reach as far as their shapes and strides say.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_rm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ld: usize,
    accumulate: bool,
    a: *const f32,
    (a_rs, a_cs): (usize, usize),
    b: *const f32,
    (b_rs, b_cs): (usize, usize),
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(m, n, k, dst, 1, ld as isize, accumulate, a, a_cs as isize, a_rs as isize, b, b_cs as isize, b_rs as isize, 1.0, 1.0, false, false, false, parallelism);
}
