//! What the autodiff ops and the optimizer ask of the inner (non-autodiff) backend, as one trait
//! in burn's custom-kernel pattern: every method's default body is the reference in burn's ops
//! ([`prims`], [`layer`], [`attention_block`]; `fused` is ignored), and the CUDA backend overrides
//! them with its kernels where `fused` is set (`cuda_prims.rs`). The CPU backend takes the
//! defaults, except the optimizer's one-pass AdamW (`cpu_optim`).

use crate::attention_block::{self, Consts as AttnConsts, Saved as AttnSaved};
use crate::layer::{self, Consts as LayerConsts, Saved as LayerSaved, Weights as LayerWeights};
use crate::prims::{self, Alibi, Rot};
use crate::staged::{read_now, Pending};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::DType;

pub trait Prims: Backend {
    /// [`prims::matmul`].
    fn matmul(a: Tensor<Self, 3>, b: Tensor<Self, 3>, _fused: bool) -> Tensor<Self, 3> {
        prims::matmul(a, b)
    }

    /// [`prims::softmax_fwd`].
    fn softmax_fwd(s: Tensor<Self, 3>, bias: Tensor<Self, 4>, scale: f32, heads: usize, _fused: bool) -> Tensor<Self, 3> {
        prims::softmax_fwd(s, bias, scale, heads)
    }

    /// [`prims::flash_fwd`], with ALiBi's table.
    fn flash_fwd(q: Tensor<Self, 3>, k: Tensor<Self, 3>, v: Tensor<Self, 3>, alibi: Option<Alibi<Self>>, scale: f32, heads: usize, _fused: bool) -> (Tensor<Self, 3>, Tensor<Self, 2>) {
        prims::flash_fwd(q, k, v, alibi.map(|a| a.table), scale, heads)
    }

    /// [`prims::flash_bwd`], with ALiBi's table.
    #[allow(clippy::too_many_arguments)]
    fn flash_bwd(
        q: Tensor<Self, 3>,
        k: Tensor<Self, 3>,
        v: Tensor<Self, 3>,
        o: Tensor<Self, 3>,
        lse: Tensor<Self, 2>,
        dout: Tensor<Self, 3>,
        alibi: Option<Alibi<Self>>,
        scale: f32,
        heads: usize,
        _fused: bool,
    ) -> [Tensor<Self, 3>; 3] {
        prims::flash_bwd(q, k, v, o, lse, dout, alibi.map(|a| a.table), scale, heads)
    }

    /// [`prims::softmax_bwd`].
    fn softmax_bwd(p: Tensor<Self, 3>, dp: Tensor<Self, 3>, scale: f32, _fused: bool) -> Tensor<Self, 3> {
        prims::softmax_bwd(p, dp, scale)
    }

    /// [`prims::ce_fwd`].
    fn ce_fwd(x: Tensor<Self, 2>, t: Tensor<Self, 1, Int>, _fused: bool) -> [Tensor<Self, 1>; 2] {
        prims::ce_fwd(x, t)
    }

    /// [`prims::ce_bwd`].
    fn ce_bwd(x: Tensor<Self, 2>, t: Tensor<Self, 1, Int>, lse: Tensor<Self, 1>, g: Tensor<Self, 1>, _fused: bool) -> Tensor<Self, 2> {
        prims::ce_bwd(x, t, lse, g)
    }

    /// [`prims::head_ce`].
    fn head_ce(x: Tensor<Self, 2>, w: Tensor<Self, 2>, t: Tensor<Self, 1, Int>, chunk: usize, _fused: bool) -> (Tensor<Self, 1>, Tensor<Self, 2>, Tensor<Self, 2>) {
        prims::head_ce(x, w, t, chunk)
    }

    /// [`prims::mlp_fwd`].
    fn mlp_fwd(x: Tensor<Self, 2>, wg: Tensor<Self, 2>, wu: Tensor<Self, 2>, wd: Tensor<Self, 2>, _fused: bool) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        prims::mlp_fwd(x, wg, wu, wd)
    }

    /// [`prims::mlp_bwd`].
    fn mlp_bwd(
        dy: Tensor<Self, 2>,
        x: Tensor<Self, 2>,
        h: Tensor<Self, 2>,
        wcat: Tensor<Self, 2>,
        wdc: Tensor<Self, 2>,
        w_dtype: DType,
        _fused: bool,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        prims::mlp_bwd(dy, x, h, wcat, wdc, w_dtype)
    }

    /// [`prims::scale_by`]: a gradient formed in the forward, times the upstream gradient `g [1]`.
    fn scale_by<const D: usize>(x: Tensor<Self, D>, g: Tensor<Self, 1>, _fused: bool) -> Tensor<Self, D> {
        prims::scale_by(x, g)
    }

    /// [`prims::embed_bwd`].
    fn embed_bwd(ids: Tensor<Self, 1, Int>, g: Tensor<Self, 2>, vocab: usize, _fused: bool) -> Tensor<Self, 2> {
        prims::embed_bwd(ids, g, vocab)
    }

    /// [`prims::heads_split`].
    fn heads_split(x: Tensor<Self, 3>, rot: &Rot<Self>, heads: usize, _fused: bool) -> Tensor<Self, 3> {
        prims::heads_split(x, rot, heads)
    }

    /// [`prims::heads_merge`].
    fn heads_merge(g: Tensor<Self, 3>, rot: &Rot<Self>, heads: usize, _fused: bool) -> Tensor<Self, 3> {
        prims::heads_merge(g, rot, heads)
    }

    /// [`prims::norm_fwd`].
    fn norm_fwd(x: Tensor<Self, 2>, w: Tensor<Self, 1>, b: Option<Tensor<Self, 1>>, eps: f32, _fused: bool) -> [Tensor<Self, 2>; 3] {
        prims::norm_fwd(x, w, b, eps)
    }

    /// [`prims::norm_bwd`].
    fn norm_bwd(g: Tensor<Self, 2>, x: Tensor<Self, 2>, w: Tensor<Self, 1>, mean: Tensor<Self, 2>, rstd: Tensor<Self, 2>, layer: bool, _fused: bool) -> Vec<Tensor<Self, 2>> {
        prims::norm_bwd(g, x, w, mean, rstd, layer)
    }

    /// [`prims::linear_fwd`].
    fn linear_fwd(x: Tensor<Self, 3>, w: Tensor<Self, 2>, _fused: bool) -> Tensor<Self, 3> {
        prims::linear_fwd(x, w)
    }

    /// [`prims::linear_bwd`].
    fn linear_bwd(g: Tensor<Self, 3>, x: Tensor<Self, 3>, w: Tensor<Self, 2>, w_dtype: DType, _fused: bool) -> (Tensor<Self, 3>, Tensor<Self, 2>) {
        prims::linear_bwd(g, x, w, w_dtype)
    }

    /// [`prims::silu_mul_fwd`].
    fn silu_mul_fwd<const D: usize>(a: Tensor<Self, D>, u: Tensor<Self, D>, _fused: bool) -> Tensor<Self, D> {
        prims::silu_mul_fwd::<Self, D>(a, u)
    }

    /// [`prims::silu_mul_bwd`].
    fn silu_mul_bwd<const D: usize>(g: Tensor<Self, D>, a: Tensor<Self, D>, u: Tensor<Self, D>, _fused: bool) -> (Tensor<Self, D>, Tensor<Self, D>) {
        prims::silu_mul_bwd::<Self, D>(g, a, u)
    }

    /// [`attention_block::block_fwd`]: the attention sublayer's forward as one op.
    fn block_fwd(h: Tensor<Self, 3>, ws: [Tensor<Self, 2>; 4], k_add: Option<Tensor<Self, 2>>, c: &AttnConsts<Self>, _fused: bool) -> (Tensor<Self, 3>, AttnSaved<Self>) {
        attention_block::block_fwd(h, ws, k_add, c)
    }

    /// [`attention_block::block_bwd`].
    #[allow(clippy::too_many_arguments)]
    fn block_bwd(
        dy: Tensor<Self, 3>,
        h: Tensor<Self, 3>,
        s: AttnSaved<Self>,
        c: &AttnConsts<Self>,
        w_dtype: DType,
        k_add: bool,
        _fused: bool,
    ) -> (Tensor<Self, 3>, [Tensor<Self, 2>; 4], Option<Tensor<Self, 2>>) {
        attention_block::block_bwd(dy, h, s, c, w_dtype, k_add)
    }

    /// [`layer::layer_fwd`]: a whole layer's forward (parallel or sequential residual) as one op.
    fn layer_fwd(x: Tensor<Self, 3>, w: LayerWeights<Self>, c: &LayerConsts<Self>, _fused: bool) -> (Tensor<Self, 3>, LayerSaved<Self>) {
        layer::layer_fwd(x, w, c)
    }

    /// [`layer::layer_bwd`].
    #[allow(clippy::too_many_arguments)]
    fn layer_bwd(dy: Tensor<Self, 3>, x: Tensor<Self, 3>, norm_w: Tensor<Self, 1>, s: LayerSaved<Self>, c: &LayerConsts<Self>, layer: bool, w_dtype: DType, _fused: bool) -> layer::Grads<Self> {
        layer::layer_bwd(dy, x, norm_w, s, c, layer, w_dtype)
    }

    /// [`crate::staged::read_later`]: here a plain read; CUDA queues it behind the work in flight.
    fn read_later(t: Tensor<Self, 1>) -> Pending {
        Pending::ready(read_now(t))
    }

    /// Whether [`sum_squares`](Prims::sum_squares) and [`adamw`](Prims::adamw) are multi-tensor
    /// kernels here; without them the trainer uses burn's optimizer and a reduction per tensor.
    const OPTIM_KERNELS: bool = false;

    /// `Σ x²` over all elements of all `tensors` (f32 gradients, any shapes) as `[1]`.
    fn sum_squares(tensors: Vec<FloatTensor<Self>>) -> Tensor<Self, 1> {
        let each = tensors.into_iter().map(|t| {
            let n = burn::tensor::TensorMetadata::shape(&t).num_elements();
            Tensor::<Self, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(Self::float_reshape(t, Shape::new([n])))).square().sum()
        });
        Tensor::cat(each.collect(), 0).sum()
    }

    /// One AdamW step of each f32 parameter `ps[i]` with gradient `gs[i]` and moments `mvs[i]`
    /// (`None` on the first step); returns `[p, m, v]` of each. `h`: see `fused::AdamScalars`
    /// (`[f32; 11]`); `stats` (`[loss, norm]`): clip on the device, skip the step if either is not
    /// finite. Only where [`OPTIM_KERNELS`](Prims::OPTIM_KERNELS).
    fn adamw(ps: Vec<FloatTensor<Self>>, gs: Vec<FloatTensor<Self>>, mvs: Option<Vec<[FloatTensor<Self>; 2]>>, stats: Option<Tensor<Self, 1>>, h: [f32; 11]) -> Vec<[FloatTensor<Self>; 3]> {
        let _ = (ps, gs, mvs, stats, h);
        unimplemented!("{} has no multi-tensor AdamW (Prims::OPTIM_KERNELS is false)", std::any::type_name::<Self>())
    }

    /// Whether [`all_reduce_mean`](Prims::all_reduce_mean) averages on the device here; where not,
    /// the caller averages through the host (the reference, `bakallm::dist`). CUDA: NCCL, once
    /// `crate::nccl::configure`d.
    fn has_collective() -> bool {
        false
    }

    /// Each tensor's mean over the ranks of a data-parallel run, on the device. Only where
    /// [`has_collective`](Prims::has_collective).
    fn all_reduce_mean(ts: Vec<FloatTensor<Self>>) -> Vec<FloatTensor<Self>> {
        let _ = ts;
        unimplemented!("{} has no device collective (Prims::has_collective is false)", std::any::type_name::<Self>())
    }
}

/// The CPU: the reference everywhere, AdamW and the global norm as one pass per parameter.
impl Prims for crate::backend::Cpu {
    const OPTIM_KERNELS: bool = true;

    fn sum_squares(tensors: Vec<FloatTensor<Self>>) -> Tensor<Self, 1> {
        crate::cpu_optim::sum_squares(tensors)
    }

    fn adamw(ps: Vec<FloatTensor<Self>>, gs: Vec<FloatTensor<Self>>, mvs: Option<Vec<[FloatTensor<Self>; 2]>>, stats: Option<Tensor<Self, 1>>, h: [f32; 11]) -> Vec<[FloatTensor<Self>; 3]> {
        crate::cpu_optim::adamw(ps, gs, mvs, stats, h)
    }
}
