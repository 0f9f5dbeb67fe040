//! CPU tensors as slices for the host ops (`host_loss`, `cpu_attention`, `cpu_gate`): burn-flex's
//! contiguous f32 storage read in place, anything else copied once.

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
