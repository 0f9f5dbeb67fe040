//! Hand-picked ops outside burn's own, for speed on CUDA: cuBLAS for the linear layers
//! (`train.matmul`), and autodiff ops with their own backward for the attention
//! (`train.attention`), the cross-entropy (`train.ce`) and the embedding (`train.embedding`), whose
//! steps (`prims`) run bakallm's CUDA kernels (`cuda/*.cu`) or, as the reference, burn's ops.
//!
//! The model stays generic over `B: Backend`. Rust has no specialisation, so these pick their path
//! by the backend's `TypeId` (the CUDA backends of `crate::backend`) and hand the tensor primitives
//! over by `Any` downcast ([`retype`]); the CPU keeps burn's ops, so its runs stay bit-exact.

pub mod attention;
pub mod attention_block;
pub mod binary;
pub mod cross_entropy;
#[cfg(feature = "cuda")]
pub mod cublas;
#[cfg(feature = "cuda")]
mod cublaslt;
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
pub mod layer;
pub mod linear;
pub mod mlp;
pub mod norm;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod prims;
pub mod staged;

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

/// `len` fixed pseudo-random values in [−1, 1) (a multiplicative hash of the index and `seed`):
/// the inputs of the ops' CPU tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64) -> TensorData {
    TensorData::new((0..len).map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>(), [len])
}

/// `t` as the type it is (`T` and `U` are the same type, checked by `TypeId` by the caller).
#[cfg(feature = "cuda")]
pub(crate) fn retype<T: 'static, U: 'static>(t: T) -> U {
    *(Box::new(t) as Box<dyn std::any::Any>).downcast::<U>().unwrap_or_else(|_| panic!("retype: {} is not {}", std::any::type_name::<T>(), std::any::type_name::<U>()))
}

/// `train.ce`: how the token cross-entropy and its gradient are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ce {
    /// burn's `log_softmax` + gather, differentiated by autodiff (the reference).
    Autodiff,
    /// [`cross_entropy::token_losses`] with burn's ops: the same values, a closed-form backward.
    ClosedForm,
    /// The closed form as one CUDA kernel each way (`cuda/tokens.cu`).
    Fused,
    /// The LM head and the loss as one op over row chunks, its gradients formed in the forward
    /// (`head::head_ce`): the full logits never exist. Takes `Fused` where only logits are given.
    Chunked,
}

impl Ce {
    pub fn from_name(name: &str) -> Self {
        match name {
            "fused" => Self::Fused,
            "chunked" => Self::Chunked,
            "closed-form" => Self::ClosedForm,
            _ => Self::Autodiff,
        }
    }
}

/// Whether `B` is the CUDA training backend (where the ops below have their kernels).
#[cfg(feature = "cuda")]
fn is_gpu_train<B: Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::GpuTrain>()
}

#[cfg(feature = "cuda")]
mod gt {
    //! `Tensor<B>` ⇄ `Tensor<GpuTrain>` when `B` is `GpuTrain` (checked by `is_gpu_train`).
    use super::retype;
    use crate::backend::{Gpu, GpuTrain};
    use burn::prelude::*;

    pub fn up<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<GpuTrain, D> {
        Tensor::from_primitive(retype(t.into_primitive()))
    }
    /// The untracked inner tensor (constants: masks, tables, ids).
    pub fn inner<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<Gpu, D> {
        up(t).inner()
    }
    pub fn inner_int<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Tensor<Gpu, D, Int> {
        Tensor::<GpuTrain, D, Int>::from_primitive(retype(t.into_primitive())).inner()
    }
    pub fn down<B: Backend, const D: usize>(t: Tensor<GpuTrain, D>) -> Tensor<B, D> {
        Tensor::from_primitive(retype(t.into_primitive()))
    }
}

/// Per-token cross-entropy `[b, n]` of `logits [b, n, v]`: burn's `log_softmax` + gather, or on the
/// CUDA training backend the closed form of [`cross_entropy::token_losses`] (same values, a
/// cheaper backward), in burn's ops or fused kernels.
pub fn token_losses<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>, ce: Ce) -> Tensor<B, 2> {
    #[cfg(feature = "cuda")]
    if ce != Ce::Autodiff && is_gpu_train::<B>() {
        let [b, n, v] = logits.dims();
        let l = cross_entropy::token_losses(gt::up(logits).reshape([b * n, v]), gt::inner_int(targets).reshape([b * n]), ce != Ce::ClosedForm);
        return gt::down(l.reshape([b, n]));
    }
    let _ = ce;
    crate::model::token_losses(logits, targets)
}

/// Mean cross-entropy `[1]` of the LM head `h [b, n, d] · w [d, V]` against `targets [b, n]` as
/// one op ([`cross_entropy::head_ce_mean`], `chunk` rows of logits at a time). Panics unless
/// [`has_fused::<B>()`](has_fused).
pub fn head_loss<B: Backend>(h: Tensor<B, 3>, w: Tensor<B, 2>, targets: Tensor<B, 2, Int>, chunk: usize) -> Tensor<B, 1> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        let [b, n, d] = h.dims();
        return gt::down(cross_entropy::head_ce_mean(gt::up(h).reshape([b * n, d]), gt::up(w), gt::inner_int(targets).reshape([b * n]), chunk, true));
    }
    let _ = (h, w, targets, chunk);
    panic!("kernels::head_loss: {} has no fused path", std::any::type_name::<B>())
}

/// Whether [`attention`] and [`embedding`] have their fused path for backend `B` (CUDA training).
pub fn has_fused<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    return is_gpu_train::<B>();
    #[cfg(not(feature = "cuda"))]
    false
}

/// Whether the flash kernels take a model's attention: bf16 activations and head dim 32 or 64
/// (and, on the device, sm_80 or newer: [`flash::supports`]).
pub fn flash_fits(bf16: bool, head_dim: usize) -> bool {
    bf16 && (head_dim == 32 || head_dim == 64)
}

/// [`attention::attention_ad`] with fused kernels: `q, k, v [b·heads, L, hd]`, `bias [1|b, 1|heads,
/// L, L]` (`biased`: more than the causal mask); `flash`: the flash kernels where they apply
/// ([`flash::supports`]). Panics unless [`has_fused::<B>()`](has_fused).
#[allow(clippy::too_many_arguments)]
pub fn attention<B: Backend>(q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>, bias: Tensor<B, 4>, biased: bool, heads: usize, scale: f32, flash: bool) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        let path = if flash && flash::supports(q.dtype(), q.dims()) { attention::Path::Flash { biased } } else { attention::Path::Gemm };
        return gt::down(attention::attention_ad(gt::up(q), gt::up(k), gt::up(v), gt::inner(bias), heads, scale, true, path));
    }
    let _ = (q, k, v, bias, biased, heads, scale, flash);
    panic!("kernels::attention: {} has no fused path", std::any::type_name::<B>())
}

/// [`heads::split_heads_ad`] with its kernels: `x [b, L, heads·hd]` → `[b·heads, L, hd]`, rotated by
/// `rot` if given. Panics unless [`has_fused::<B>()`](has_fused).
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, rot: &prims::Rot<B>, heads: usize) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        let rot = rot.as_ref().map(|(c, s)| (gt::inner(c.clone()), gt::inner(s.clone())));
        return gt::down(heads::split_heads_ad(gt::up(x), &rot, heads, true));
    }
    let _ = (x, rot, heads);
    panic!("kernels::split_heads: {} has no fused path", std::any::type_name::<B>())
}

/// [`heads::merge_heads_ad`] with its kernels: `y [b·heads, L, hd]` → `[b, L, heads·hd]`.
/// Panics unless [`has_fused::<B>()`](has_fused).
pub fn merge_heads<B: Backend>(y: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        return gt::down(heads::merge_heads_ad(gt::up(y), heads, true));
    }
    let _ = (y, heads);
    panic!("kernels::merge_heads: {} has no fused path", std::any::type_name::<B>())
}

/// [`norm::norm_ad`] with its kernels: LayerNorm (`b` given) or RMSNorm over the last dim of `x`
/// (output in `x`'s dtype) with f32 `w`, `b`. Panics unless [`has_fused::<B>()`](has_fused).
pub fn norm<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 1>, b: Option<Tensor<B, 1>>, eps: f64) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        let dims = x.dims();
        let d = dims[D - 1];
        let y = norm::norm_ad(gt::up(x).reshape([dims.iter().product::<usize>() / d, d]), gt::up(w), b.map(gt::up), eps as f32, true);
        return gt::down(y.reshape(dims));
    }
    let _ = (x, w, b, eps);
    panic!("kernels::norm: {} has no fused path", std::any::type_name::<B>())
}

/// [`embedding::embedding_ad`] with the fused backward: `weight [vocab, d]` at `ids [b, l]`.
/// Panics unless [`has_fused::<B>()`](has_fused).
pub fn embedding<B: Backend>(weight: Tensor<B, 2>, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        return gt::down(embedding::embedding_ad(gt::up(weight), gt::inner_int(ids), true));
    }
    let _ = (weight, ids);
    panic!("kernels::embedding: {} has no fused path", std::any::type_name::<B>())
}

/// [`gate::silu_mul_ad`] with its kernels: the MLP gate `silu(a) ⊙ u`. Panics unless
/// [`has_fused::<B>()`](has_fused).
pub fn silu_mul<B: Backend, const D: usize>(a: Tensor<B, D>, u: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        return gt::down(gate::silu_mul_ad(gt::up(a), gt::up(u), true));
    }
    let _ = (a, u);
    panic!("kernels::silu_mul: {} has no fused path", std::any::type_name::<B>())
}

/// Whether [`sum_squares`] and [`adamw`] have their kernels for the (inner, non-autodiff) backend
/// `B`: CUDA.
pub fn has_optim_kernels<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    return std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::Gpu>();
    #[cfg(not(feature = "cuda"))]
    false
}

/// `Σ x²` over all elements of all `tensors` (f32 gradients, any shapes) as `[1]`, in one
/// multi-tensor kernel per 64 tensors instead of a reduction each (`cuda/optim.cu`).
/// Panics unless [`has_optim_kernels::<B>()`](has_optim_kernels).
pub fn sum_squares<B: Backend>(tensors: Vec<FloatTensor<B>>) -> Tensor<B, 1> {
    #[cfg(feature = "cuda")]
    if has_optim_kernels::<B>() {
        use fused::FusedBackend;
        let s = crate::backend::Gpu::sum_squares(tensors.into_iter().map(retype).collect());
        return Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(retype(s)));
    }
    let _ = tensors;
    panic!("kernels::sum_squares: {} has no kernel", std::any::type_name::<B>())
}

/// One AdamW step of each f32 parameter `ps[i]` with gradient `gs[i]` and moments `mvs[i]`
/// (`None` on the first step), one kernel per 32 parameters (`cuda/optim.cu`); returns `[p, m, v]`
/// of each. `h`: see `fused::AdamScalars` (`[f32; 11]`); `stats` (`[loss, norm]`): clip on the
/// device, skip the step if either is not finite. Panics unless
/// [`has_optim_kernels::<B>()`](has_optim_kernels).
pub fn adamw<B: Backend>(ps: Vec<FloatTensor<B>>, gs: Vec<FloatTensor<B>>, mvs: Option<Vec<[FloatTensor<B>; 2]>>, stats: Option<Tensor<B, 1>>, h: [f32; 11]) -> Vec<[FloatTensor<B>; 3]> {
    #[cfg(feature = "cuda")]
    if has_optim_kernels::<B>() {
        use fused::FusedBackend;
        let all = |v: Vec<FloatTensor<B>>| v.into_iter().map(retype).collect();
        let stats = stats.map(|s| retype(s.into_primitive().tensor()));
        let out = crate::backend::Gpu::adamw(all(ps), all(gs), mvs.map(|mvs| mvs.into_iter().map(|mv| mv.map(retype)).collect()), stats, h);
        return out.into_iter().map(|t| t.map(retype)).collect();
    }
    let _ = (ps, gs, mvs, stats, h);
    panic!("kernels::adamw: {} has no kernel", std::any::type_name::<B>())
}

/// [`linear::linear_ad`] on cuBLAS: `x [b, l, d] · w [d, n]` with the f32 weight cast to `x`'s
/// dtype inside the op. Panics unless [`has_fused::<B>()`](has_fused).
pub fn linear_train<B: Backend>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        return gt::down(linear::linear_ad(gt::up(x), gt::up(w), true));
    }
    let _ = (x, w);
    panic!("kernels::linear_train: {} has no fused path", std::any::type_name::<B>())
}

/// [`attention_block::attention_block_ad`] with its CUDA steps where they apply (the CUDA training
/// backend, and the flash kernels take `h [b, L, d]`'s dtype and head dim): the whole attention
/// sublayer of `h` with f32 weights `[wq, wk, wv, wo]`, q and k rotated by their tables, `bias`
/// added if given. `None` where they do not apply.
#[allow(clippy::too_many_arguments)]
pub fn attention_block<B: Backend>(h: Tensor<B, 3>, ws: [Tensor<B, 2>; 4], rot_q: &prims::Rot<B>, rot_k: &prims::Rot<B>, bias: Option<Tensor<B, 4>>, heads: usize, scale: f32) -> Option<Tensor<B, 3>> {
    #[cfg(feature = "cuda")]
    if let Some(c) = block_consts(&h, rot_q, rot_k, bias.clone(), heads, scale) {
        return Some(gt::down(attention_block::attention_block_ad(gt::up(h), ws.map(gt::up), c, true)));
    }
    let _ = (h, ws, rot_q, rot_k, bias, heads, scale);
    None
}

/// The attention sublayer's constants on the CUDA training backend, where the flash kernels take
/// `x [b, L, d]`'s dtype and head dim; `None` elsewhere.
#[cfg(feature = "cuda")]
fn block_consts<B: Backend>(
    x: &Tensor<B, 3>,
    rot_q: &prims::Rot<B>,
    rot_k: &prims::Rot<B>,
    bias: Option<Tensor<B, 4>>,
    heads: usize,
    scale: f32,
) -> Option<attention_block::Consts<crate::backend::Gpu>> {
    let [b, l, d] = x.dims();
    if !is_gpu_train::<B>() || !flash::supports(x.dtype(), [b * heads, l, d / heads]) {
        return None;
    }
    let rot = |r: &prims::Rot<B>| r.as_ref().map(|(c, s)| (gt::inner(c.clone()), gt::inner(s.clone())));
    Some(attention_block::Consts { rot: [rot(rot_q), rot(rot_k)], bias: bias.map(gt::inner), heads, scale })
}

/// [`layer::layer_ad`] with its CUDA steps where they apply (as [`attention_block`]): the whole
/// parallel-residual layer `x + attn(norm(x)) + mlp(norm(x))` of `x [b, L, d]` and its f32 weights.
/// `None` where they do not apply.
#[allow(clippy::too_many_arguments)]
pub fn layer<B: Backend>(x: Tensor<B, 3>, w: layer::Weights<B>, rot_q: &prims::Rot<B>, rot_k: &prims::Rot<B>, bias: Option<Tensor<B, 4>>, heads: usize, scale: f32, eps: f64) -> Option<Tensor<B, 3>> {
    #[cfg(feature = "cuda")]
    if let Some(attn) = block_consts(&x, rot_q, rot_k, bias.clone(), heads, scale) {
        let w = layer::Weights { norm: (gt::up(w.norm.0), w.norm.1.map(gt::up)), attn: w.attn.map(gt::up), mlp: w.mlp.map(gt::up) };
        return Some(gt::down(layer::layer_ad(gt::up(x), w, layer::Consts { attn, eps: eps as f32 }, true)));
    }
    let _ = (x, w, rot_q, rot_k, bias, heads, scale, eps);
    None
}

/// [`mlp::mlp_ad`] with its CUDA steps: `down(silu(x·wg) ⊙ (x·wu))` for `x [b, l, d]` and the f32
/// weights. Panics unless [`has_fused::<B>()`](has_fused).
pub fn mlp<B: Backend>(x: Tensor<B, 3>, wg: Tensor<B, 2>, wu: Tensor<B, 2>, wd: Tensor<B, 2>) -> Tensor<B, 3> {
    #[cfg(feature = "cuda")]
    if is_gpu_train::<B>() {
        return gt::down(mlp::mlp_ad(gt::up(x), gt::up(wg), gt::up(wu), gt::up(wd), true));
    }
    let _ = (x, wg, wu, wd);
    panic!("kernels::mlp: {} has no fused path", std::any::type_name::<B>())
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
