//! The step's gradients and loss averaged over the ranks, and the weights' checksum that shows the
//! ranks still hold the same model.
//!
//! Each rank's loss and gradients are means over its share of the batch; the shares are equal, so
//! the mean of the ranks' means is the whole batch's, as one process would have computed it. The
//! gradients travel as one NCCL group on CUDA, else as one f32 buffer (every parameter's in the
//! model's order) through the hub.

use super::with_hub;
use crate::kernels::inner::Prims;
use anyhow::{bail, Result};
use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;
use std::collections::HashSet;

/// Every parameter's gradient in the model's order: collected (as host values, or taken out as
/// the device tensors themselves, so that the collective may work in place), then replaced by the
/// averaged ones in the same order.
enum Pass<B: Backend> {
    Host { buf: Vec<f32>, at: Option<usize> },
    Device { ts: Vec<FloatTensor<B>>, ids: HashSet<ParamId>, back: Option<std::vec::IntoIter<FloatTensor<B>>> },
}

struct Flat<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    pass: Pass<B::InnerBackend>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flat<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        match &mut self.pass {
            Pass::Host { buf, at: None } => {
                if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                    buf.extend(g.into_data().convert::<f32>().iter::<f32>());
                }
            }
            Pass::Device { ts, ids, back: None } => {
                if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                    ts.push(g.into_primitive().tensor());
                    ids.insert(param.id);
                }
            }
            Pass::Host { buf, at: Some(at) } => {
                let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) else { return };
                let (shape, dtype, n) = (g.shape(), g.dtype(), g.shape().num_elements());
                let t = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(buf[*at..*at + n].to_vec(), [n]), &g.device());
                *at += n;
                self.grads.register::<B::InnerBackend, D>(param.id, t.reshape(shape).cast(dtype));
            }
            Pass::Device { ids, back: Some(back), .. } => {
                if ids.contains(&param.id) {
                    let t = back.next().expect("an averaged gradient per gradient");
                    self.grads.register::<B::InnerBackend, D>(param.id, Tensor::from_primitive(TensorPrimitive::Float(t)));
                }
            }
        }
    }
}

/// Replaces `grads` by their mean over the ranks: on the device where the backend has a
/// collective in use (`Prims::all_reduce_mean`: NCCL, in place), else through the host. Each
/// rank's gradients are means over its equal share of the batch, so the mean of the ranks' is the
/// whole batch's. Alone: as they are.
pub fn average_grads<B: AutodiffBackend<InnerBackend: Prims>, M: AutodiffModule<B>>(model: &M, mut grads: GradientsParams) -> Result<GradientsParams> {
    let n = super::size();
    if n == 1 {
        return Ok(grads);
    }
    if <B::InnerBackend as Prims>::has_collective() {
        let mut flat = Flat::<B> { grads: &mut grads, pass: Pass::Device { ts: vec![], ids: HashSet::new(), back: None } };
        model.visit(&mut flat);
        let Pass::Device { ts, ids, .. } = flat.pass else { unreachable!("collected") };
        let avg = <B::InnerBackend as Prims>::all_reduce_mean(ts);
        let mut put = Flat::<B> { grads: &mut grads, pass: Pass::Device { ts: vec![], ids, back: Some(avg.into_iter()) } };
        model.visit(&mut put);
        return Ok(grads);
    }
    let mut flat = Flat::<B> { grads: &mut grads, pass: Pass::Host { buf: Vec::new(), at: None } };
    model.visit(&mut flat);
    let Pass::Host { mut buf, .. } = flat.pass else { unreachable!("collected") };
    host_mean(&mut buf)?;
    let mut put = Flat::<B> { grads: &mut grads, pass: Pass::Host { buf, at: Some(0) } };
    model.visit(&mut put);
    Ok(grads)
}

/// The step's `[loss, grad norm]` (this rank's loss, the norm of the averaged gradients) as their
/// mean over the ranks: the whole batch's loss, and one norm, the same bits on every rank (a
/// norm summed with atomics differs in its last bits from rank to rank, and so would the clip
/// and the weights). Alone: as they are.
pub fn average_stats<B: Prims>(stats: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
    if super::size() == 1 {
        return Ok(stats);
    }
    if B::has_collective() {
        let avg = B::all_reduce_mean(vec![stats.into_primitive().tensor()]);
        return Ok(Tensor::from_primitive(TensorPrimitive::Float(avg.into_iter().next().expect("one tensor"))));
    }
    let device = stats.device();
    let mut v: Vec<f32> = stats.into_data().convert::<f32>().to_vec().expect("f32 values");
    host_mean(&mut v)?;
    let n = v.len();
    Ok(Tensor::from_data(TensorData::new(v, [n]), &device))
}

/// `v` becomes its mean over the ranks, through rank 0 (summed in rank order).
fn host_mean(v: &mut [f32]) -> Result<()> {
    with_hub(|h| h.all_reduce_sum(v))?;
    let n = super::size() as f32;
    v.iter_mut().for_each(|x| *x /= n);
    Ok(())
}

/// FNV-1a over the bits of every parameter, in the model's order.
struct Checksum(u64);

impl<B: Backend> ModuleVisitor<B> for Checksum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        for v in param.val().into_data().convert::<f32>().iter::<f32>() {
            for b in v.to_bits().to_le_bytes() {
                self.0 = (self.0 ^ b as u64).wrapping_mul(0x100000001b3);
            }
        }
    }
}

/// The checksum of a module's weights.
pub fn checksum<B: Backend, M: Module<B>>(model: &M) -> u64 {
    let mut c = Checksum(0xcbf29ce484222325);
    model.visit(&mut c);
    c.0
}

/// Fails, naming the ranks, unless every rank's weights have the checksum of rank 0's (`step`:
/// where, for the message). Alone: nothing to compare.
pub fn check_same_weights<B: Backend, M: Module<B>>(model: &M, step: usize) -> Result<()> {
    if super::size() == 1 {
        return Ok(());
    }
    let mine = checksum(model);
    let all = with_hub(|h| h.all_gather(&mine.to_le_bytes()))?.expect("joined");
    let sums: Vec<u64> = all.iter().map(|b| u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8]))).collect();
    let differ: Vec<String> = sums.iter().enumerate().filter(|(_, &s)| s != sums[0]).map(|(r, s)| format!("rank {r} {s:016x}")).collect();
    if !differ.is_empty() {
        bail!("step {step}: the ranks' weights differ (rank 0 {:016x}, {}): the ranks took different steps; stopped", sums[0], differ.join(", "));
    }
    Ok(())
}
