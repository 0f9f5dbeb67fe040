//! The step's gradients and loss averaged over the ranks, and the weights' checksum that shows the
//! ranks still hold the same model.
//!
//! Each rank's loss and gradients are means over its share of the batch; the shares are equal, so
//! the mean of the ranks' means is the whole batch's, as one process would have computed it. The
//! gradients travel as one f32 buffer (every parameter's in the model's order) through the hub.

use super::with_hub;
use crate::kernels::inner::Prims;
use anyhow::{bail, Result};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

/// Every parameter's gradient in the model's order: collected (as host values, or as the
/// device tensors themselves), then replaced by the averaged ones in the same order.
enum Pass<B: Backend> {
    Host { buf: Vec<f32>, at: Option<usize> },
    Device { ts: Vec<FloatTensor<B>>, back: Option<std::vec::IntoIter<FloatTensor<B>>> },
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
            Pass::Device { ts, back: None } => {
                if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                    ts.push(g.into_primitive().tensor());
                }
            }
            Pass::Host { buf, at: Some(at) } => {
                let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) else { return };
                let (shape, dtype, n) = (g.shape(), g.dtype(), g.shape().num_elements());
                let t = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(buf[*at..*at + n].to_vec(), [n]), &g.device());
                *at += n;
                self.grads.register::<B::InnerBackend, D>(param.id, t.reshape(shape).cast(dtype));
            }
            Pass::Device { back: Some(back), .. } => {
                if self.grads.remove::<B::InnerBackend, D>(param.id).is_some() {
                    let t = back.next().expect("an averaged gradient per gradient");
                    self.grads.register::<B::InnerBackend, D>(param.id, Tensor::from_primitive(TensorPrimitive::Float(t)));
                }
            }
        }
    }
}

/// Replaces `grads` by their mean over the ranks, and `loss` (`[1]`, this rank's mean over its
/// share) by the mean of the ranks'. On the device where the backend has a collective in use
/// (`Prims::all_reduce_mean`: NCCL), else through the host. Alone: both as they are.
pub fn average<B: AutodiffBackend<InnerBackend: Prims>, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    loss: Tensor<B::InnerBackend, 1>,
) -> Result<(GradientsParams, Tensor<B::InnerBackend, 1>)> {
    let n = super::size();
    if n == 1 {
        return Ok((grads, loss));
    }
    let mut flat = Flat::<B> { grads: &mut grads, pass: Pass::Device { ts: vec![], back: None } };
    model.visit(&mut flat);
    let Pass::Device { mut ts, .. } = flat.pass else { unreachable!("collected") };
    ts.push(loss.clone().into_primitive().tensor());
    if let Some(mut avg) = <B::InnerBackend as Prims>::all_reduce_mean(ts) {
        let loss = Tensor::from_primitive(TensorPrimitive::Float(avg.pop().expect("the loss")));
        let mut put = Flat::<B> { grads: &mut grads, pass: Pass::Device { ts: vec![], back: Some(avg.into_iter()) } };
        model.visit(&mut put);
        return Ok((grads, loss));
    }
    let device = loss.device();
    let mut flat = Flat::<B> { grads: &mut grads, pass: Pass::Host { buf: Vec::new(), at: None } };
    model.visit(&mut flat);
    let Pass::Host { mut buf, .. } = flat.pass else { unreachable!("collected") };
    buf.push(loss.into_data().convert::<f32>().iter::<f32>().next().expect("a loss"));
    with_hub(|h| h.all_reduce_sum(&mut buf))?;
    let inv = n as f32;
    buf.iter_mut().for_each(|v| *v /= inv);
    let loss = buf.pop().expect("the loss");
    let mut put = Flat::<B> { grads: &mut grads, pass: Pass::Host { buf, at: Some(0) } };
    model.visit(&mut put);
    Ok((grads, Tensor::from_floats([loss], &device)))
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
