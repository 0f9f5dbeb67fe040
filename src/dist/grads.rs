//! The step's gradients and loss averaged over the ranks, and the weights' checksum that shows the
//! ranks still hold the same model.
//!
//! Each rank's loss and gradients are means over its share of the batch; the shares are equal, so
//! the mean of the ranks' means is the whole batch's, as one process would have computed it. The
//! gradients travel as one f32 buffer (every parameter's in the model's order) through the hub.

use super::with_hub;
use anyhow::{bail, Result};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Every parameter's gradient, flattened in the model's order (`take`), or put back (`put`).
struct Flat<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    buf: Vec<f32>,
    /// Where `put` reads next; `None` while collecting.
    at: Option<usize>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flat<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        match &mut self.at {
            None => {
                if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                    self.buf.extend(g.into_data().convert::<f32>().iter::<f32>());
                }
            }
            Some(at) => {
                let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) else { return };
                let (shape, dtype, n) = (g.shape(), g.dtype(), g.shape().num_elements());
                let t = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(self.buf[*at..*at + n].to_vec(), [n]), &g.device());
                *at += n;
                self.grads.register::<B::InnerBackend, D>(param.id, t.reshape(shape).cast(dtype));
            }
        }
    }
}

/// Replaces `grads` by their mean over the ranks, and returns the mean of `loss` (this rank's
/// mean loss over its share). Alone: both as they are.
pub fn average<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, mut grads: GradientsParams, loss: f32) -> Result<(GradientsParams, f32)> {
    let n = super::size();
    if n == 1 {
        return Ok((grads, loss));
    }
    let mut flat = Flat::<B> { grads: &mut grads, buf: Vec::new(), at: None, _b: Default::default() };
    model.visit(&mut flat);
    let mut buf = std::mem::take(&mut flat.buf);
    buf.push(loss);
    with_hub(|h| h.all_reduce_sum(&mut buf))?;
    let inv = n as f32;
    buf.iter_mut().for_each(|v| *v /= inv);
    let loss = buf.pop().expect("the loss");
    let mut put = Flat::<B> { grads: &mut grads, buf, at: Some(0), _b: Default::default() };
    model.visit(&mut put);
    Ok((grads, loss))
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
