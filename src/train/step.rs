//! One optimisation step: forward over the windows, mean cross-entropy, backward, the gradients
//! averaged over ranks, global-norm clip, AdamW; and its (loss, grad norm), read on the host or
//! left on the device behind the step.

use super::adamw::{AdamW, GradScale};
use super::optim::{clip_factor, grad_norm};
use crate::kernels::ops::{BakaOps, TrainOps};
use crate::kernels::staged::{read_later, read_now, Pending};
use crate::model::BakaLM;
use crate::state::BakaState;
use anyhow::Result;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Mean cross-entropy `[1]` of the model on a batch `x [b, n·T]` against `y`.
pub fn batch_loss<B: AutodiffBackend + BakaOps>(model: &BakaLM<B>, x: Tensor<B, 2, Int>, y: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    model.chunk_loss(x, y, &mut BakaState::new())
}

/// One optimisation step on a batch: forward over the windows, mean cross-entropy, backward,
/// global-norm clip (`t.clip`), AdamW. Returns the model and (loss, grad norm) read in one transfer.
/// A non-finite loss or norm leaves the model untouched (the caller decides to stop or skip).
pub fn train_step<B: TrainOps>(model: BakaLM<B>, optim: &mut AdamW<B>, x: Tensor<B, 2, Int>, y: Tensor<B, 2, Int>, lr: f64, t: &crate::config::TrainConfig) -> Result<(BakaLM<B>, f32, f32)> {
    let (model, stats) = train_step_marked(model, optim, x, y, lr, t, &mut |_| {})?;
    let (loss, norm) = stats.now().wait(optim);
    Ok((model, loss, norm))
}

/// A step's (loss, grad norm) as [`train_step_marked`] leaves them: read already (the host clip
/// needs the norm before the update), or still on the device (clipped there).
pub enum StepStats<B: TrainOps> {
    Read(f32, f32),
    OnDevice(Tensor<B::InnerBackend, 1>),
}

impl<B: TrainOps> StepStats<B> {
    /// The values read now (a plain read: it waits for the device to finish the step).
    pub fn now(self) -> PendingStats {
        match self {
            Self::Read(l, n) => PendingStats { read: Pending::ready(vec![l, n]), on_device: false },
            Self::OnDevice(stats) => PendingStats { read: Pending::ready(read_now(stats)), on_device: true },
        }
    }

    /// The values as a read queued behind the step ([`crate::kernels::staged`]): queue the next
    /// step, then [`PendingStats::wait`], and the GPU never runs dry between the two.
    pub fn later(self) -> PendingStats {
        match self {
            Self::OnDevice(stats) => PendingStats { read: read_later(stats), on_device: true },
            read => read.now(),
        }
    }
}

/// [`StepStats::now`]'s or [`StepStats::later`]'s read.
pub struct PendingStats {
    read: Pending,
    on_device: bool,
}

impl PendingStats {
    /// (loss, grad norm). A non-finite pair whose step the device skipped takes back the
    /// optimizer's step count ([`AdamW::unstep`]); a step queued before this call has already
    /// counted it in its bias correction.
    pub fn wait<B: TrainOps>(self, optim: &mut AdamW<B>) -> (f32, f32) {
        let v = self.read.wait();
        let (loss, norm) = (v[0], v[1]);
        if self.on_device && !(loss.is_finite() && norm.is_finite()) {
            optim.unstep();
        }
        (loss, norm)
    }
}

/// [`train_step`] calling `mark(phase)` as each phase has been issued: "forward", "backward",
/// "norm", "read" (the loss and norm on the host, host clip only), "optimizer" (`baka bench
/// --phases`). With the fused AdamW the clip happens on the device and the stats stay there.
pub fn train_step_marked<B: TrainOps>(
    model: BakaLM<B>,
    optim: &mut AdamW<B>,
    x: Tensor<B, 2, Int>,
    y: Tensor<B, 2, Int>,
    lr: f64,
    t: &crate::config::TrainConfig,
    mark: &mut dyn FnMut(&'static str),
) -> Result<(BakaLM<B>, StepStats<B>)> {
    let loss = batch_loss(&model, x, y);
    mark("forward");
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    mark("backward");
    // several ranks: this rank's gradients become the means over all (crate::dist)
    let grads = crate::dist::grads::average_grads(&model, grads)?;
    let norm = grad_norm(&model, &grads);
    mark("norm");
    // several ranks: the whole batch's loss, and one norm on every rank
    let stats = crate::dist::grads::average_stats(Tensor::cat(vec![loss.inner(), norm], 0))?;
    if optim.clips_on_device() {
        // the update is queued before the host reads anything: the device clips, or skips the step
        let model = optim.step(lr, GradScale::Clip { stats: stats.clone(), max_norm: t.clip }, model, grads);
        mark("optimizer");
        return Ok((model, StepStats::OnDevice(stats)));
    }
    let both = read_now(stats);
    let (loss_v, norm_v) = (both[0], both[1]);
    mark("read");
    if !(loss_v.is_finite() && norm_v.is_finite()) {
        return Ok((model, StepStats::Read(loss_v, norm_v)));
    }
    let model = optim.step(lr, GradScale::By(clip_factor(norm_v as f64, t.clip)), model, grads);
    mark("optimizer");
    Ok((model, StepStats::Read(loss_v, norm_v)))
}
