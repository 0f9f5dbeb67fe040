//! AdamW with the global-norm clip folded in as a gradient scale. Its math, state and checkpoint
//! record are burn's AdamW (through burn's `OptimizerAdaptor`), so old checkpoints load unchanged.
//!
//! Why not burn's optimizer as is: the clip factor needs the gradient norm on the host before the
//! update, so every step waited for the GPU to drain and the GPU then idled while the host queued
//! AdamW (6.6 ms of host time after that read at the pristine shape, `baka bench --phases`). On CUDA
//! (`train.adamw = "fused"`) one kernel per 32 parameters (`Prims::adamw`) reads the norm on the
//! device and clips there ([`GradScale::Clip`]); the kernel alone, with the host clip, gained
//! nothing measurable. One launch per 32 parameters instead of one each (112 at the pristine
//! shape) did not change the step time measurably either, but leaves cubecl's device thread, which
//! the GPU waits for, 108 fewer tasks per step. Elsewhere burn's `AdamW::step` runs, so CPU runs
//! stay bit-exact.

use crate::config::TrainConfig;
use crate::kernels::inner::Prims;
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsParams, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;
use hashbrown::HashMap;

/// What multiplies the gradients before the update.
#[derive(Clone)]
pub enum GradScale<B: Backend> {
    /// A factor known on the host (the clip factor from a norm read back; 1 = none).
    By(f64),
    /// The clip computed on the device from `stats = [loss, norm]` (f32): no read-back before
    /// the update. A non-finite loss or norm skips the step; call [`AdamW::unstep`] once the
    /// host sees it. Needs [`AdamW::clips_on_device`].
    Clip { stats: Tensor<B, 1>, max_norm: f64 },
}

/// Per-parameter state: the record type of burn's `OptimizerAdaptor<AdamW, _, _>`.
pub type AdamRecord<B> = HashMap<ParamId, AdaptorRecord<burn::optim::AdamW, B>>;

#[derive(Clone)]
pub struct AdamW<B: AutodiffBackend> {
    burn: burn::optim::AdamW,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    /// One kernel per 32 parameters (CUDA, `train.adamw = "fused"`).
    fused: bool,
    records: AdamRecord<B>,
}

impl<B: AutodiffBackend<InnerBackend: Prims>> AdamW<B> {
    /// `train.beta1`, `beta2`, `eps`, `weight_decay`, and `train.adamw` where the backend has the kernel.
    pub fn new(t: &TrainConfig) -> Self {
        let (beta1, beta2, eps, weight_decay) = (t.beta1 as f32, t.beta2 as f32, t.eps as f32, t.weight_decay as f32);
        let burn = AdamWConfig::new().with_beta_1(beta1).with_beta_2(beta2).with_epsilon(eps).with_weight_decay(weight_decay).build();
        let fused = t.fused_adamw() && <B::InnerBackend as Prims>::OPTIM_KERNELS;
        Self { burn, beta1, beta2, eps, weight_decay, fused, records: HashMap::new() }
    }

    /// One step at learning rate `lr` with every gradient scaled by `scale` first.
    pub fn step<M: AutodiffModule<B>>(&mut self, lr: f64, scale: GradScale<B::InnerBackend>, module: M, mut grads: GradientsParams) -> M {
        if !self.fused {
            return module.map(&mut Stepper { optim: self, grads: &mut grads, lr, scale });
        }
        // every parameter with a gradient, then one kernel per 32 of them that share a step count
        let mut gather = Gather { grads: &mut grads, records: &mut self.records, items: Vec::new() };
        module.visit(&mut gather);
        let mut groups: HashMap<usize, Vec<Item<B::InnerBackend>>> = HashMap::new();
        for item in gather.items {
            groups.entry(item.moments.as_ref().map_or(0, |m| m.0)).or_default().push(item);
        }
        let mut new = HashMap::new();
        for (time, items) in groups {
            let h = match &scale {
                GradScale::By(f) => self.scalars(lr, *f, 0.0, time + 1),
                GradScale::Clip { max_norm, .. } => self.scalars(lr, 1.0, *max_norm, time + 1),
            };
            let stats = match &scale {
                GradScale::Clip { stats, .. } => Some(stats.clone()),
                GradScale::By(_) => None,
            };
            let ids: Vec<ParamId> = items.iter().map(|i| i.id).collect();
            let first = items[0].moments.is_none();
            let (mut ps, mut gs, mut mvs) = (Vec::new(), Vec::new(), Vec::new());
            for Item { p, g, moments, .. } in items {
                ps.push(p);
                gs.push(g);
                mvs.extend(moments.map(|(_, m, v)| [m, v]));
            }
            let out = <B::InnerBackend as Prims>::adamw(ps, gs, (!first).then_some(mvs), stats, h);
            new.extend(ids.into_iter().zip(out).map(|(id, pmv)| (id, (pmv, time + 1))));
        }
        module.map(&mut Replace { records: &mut self.records, new })
    }

    /// One parameter's step: `(p, state)` after it (`state` is `None` before the first).
    pub fn update<const D: usize>(
        &self,
        lr: f64,
        scale: &GradScale<B::InnerBackend>,
        p: Tensor<B::InnerBackend, D>,
        g: Tensor<B::InnerBackend, D>,
        state: Option<AdamWState<B::InnerBackend, D>>,
    ) -> (Tensor<B::InnerBackend, D>, AdamWState<B::InnerBackend, D>) {
        if self.fused {
            let time = state.as_ref().map_or(0, |s| s.momentum.time) + 1;
            let prim = |t: Tensor<B::InnerBackend, D>| t.into_primitive().tensor();
            let mv = state.map(|s| vec![[prim(s.momentum.moment_1), prim(s.momentum.moment_2)]]);
            let (h, stats) = match scale {
                GradScale::By(f) => (self.scalars(lr, *f, 0.0, time), None),
                GradScale::Clip { stats, max_norm } => (self.scalars(lr, 1.0, *max_norm, time), Some(stats.clone())),
            };
            let [p, m, v] = <B::InnerBackend as Prims>::adamw(vec![prim(p)], vec![prim(g)], mv, stats, h).pop().expect("one parameter").map(float);
            return (p, AdamWState::new(AdaptiveMomentumState::new(time, m, v)));
        }
        let GradScale::By(f) = scale else { panic!("AdamW: GradScale::Clip needs the fused kernel (see clips_on_device)") };
        let g = if *f == 1.0 { g } else { g.mul_scalar(*f) };
        let (p, state) = SimpleOptimizer::step(&self.burn, lr, p, g, state);
        (p, state.expect("burn's AdamW returns its state"))
    }
}

impl<B: AutodiffBackend> AdamW<B> {
    /// Whether [`GradScale::Clip`] works: the fused kernel computes the clip on the device.
    pub fn clips_on_device(&self) -> bool {
        self.fused
    }

    /// Takes back the step count of a step the device skipped (non-finite `stats`), so the bias
    /// correction goes on as if that step never was, as on the host path.
    pub fn unstep(&mut self) {
        for r in self.records.values_mut() {
            let time = step_count(r);
            *time = time.saturating_sub(1);
        }
    }

    pub fn to_record(&self) -> AdamRecord<B> {
        self.records.clone()
    }

    pub fn load_record(mut self, record: AdamRecord<B>) -> Self {
        self.records = record;
        self
    }

    /// `adamw_f32`'s scalars (cuda/optim.cu) for step `time` (1-based), rounded as burn rounds them.
    fn scalars(&self, lr: f64, grad_scale: f64, max_norm: f64, time: usize) -> [f32; 11] {
        let (b1, b2) = (self.beta1, self.beta2);
        let decay = lr * self.weight_decay as f64;
        let t = time as i32;
        [lr as f32, b1, 1.0 - b1, b2, 1.0 - b2, self.eps, (1.0 - decay) as f32, 1.0 - b1.powi(t), 1.0 - b2.powi(t), grad_scale as f32, max_norm as f32]
    }
}

/// The step count in a parameter's record, whatever its rank.
fn step_count<B: AutodiffBackend>(r: &mut AdaptorRecord<burn::optim::AdamW, B>) -> &mut usize {
    use burn::optim::record::AdaptorRecordV1 as V;
    let AdaptorRecord::V1(r) = r;
    match r {
        V::Rank0(s) => &mut s.momentum.time,
        V::Rank1(s) => &mut s.momentum.time,
        V::Rank2(s) => &mut s.momentum.time,
        V::Rank3(s) => &mut s.momentum.time,
        V::Rank4(s) => &mut s.momentum.time,
        V::Rank5(s) => &mut s.momentum.time,
        V::Rank6(s) => &mut s.momentum.time,
        V::Rank7(s) => &mut s.momentum.time,
        V::Rank8(s) => &mut s.momentum.time,
    }
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// A parameter to step with the multi-tensor kernel: its value, gradient and (step count, m, v).
struct Item<B: Backend> {
    id: ParamId,
    p: FloatTensor<B>,
    g: FloatTensor<B>,
    moments: Option<(usize, FloatTensor<B>, FloatTensor<B>)>,
}

/// Collects the [`Item`]s: every parameter that has a gradient, with its state taken out.
struct Gather<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    records: &'a mut AdamRecord<B>,
    items: Vec<Item<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) else { return };
        let state = self.records.remove(&param.id).map(|r| r.into_state::<D>().momentum);
        let moments = state.map(|s| (s.time, s.moment_1.into_primitive().tensor(), s.moment_2.into_primitive().tensor()));
        self.items.push(Item { id: param.id, p: param.val().inner().into_primitive().tensor(), g: g.into_primitive().tensor(), moments });
    }
}

/// A parameter's stepped value, its two moments and its step count.
type Stepped<B> = ([FloatTensor<<B as AutodiffBackend>::InnerBackend>; 3], usize);

/// Puts the stepped values and their new state in place of the [`Item`]s.
struct Replace<'a, B: AutodiffBackend> {
    records: &'a mut AdamRecord<B>,
    new: HashMap<ParamId, Stepped<B>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Replace<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(([p, m, v], time)) = self.new.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.records.insert(id, AdaptorRecord::from_state(AdamWState::new(AdaptiveMomentumState::new(time, float::<_, D>(m), float(v)))));
        let p = Tensor::from_inner(float(p));
        Param::from_mapped_value(id, if tensor.is_require_grad() { p.require_grad() } else { p }, mapper)
    }
}

/// Steps each parameter that has a gradient (what burn's adaptor does, on one device).
struct Stepper<'a, B: AutodiffBackend> {
    optim: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    lr: f64,
    scale: GradScale<B::InnerBackend>,
}

impl<B: AutodiffBackend<InnerBackend: Prims>> ModuleMapper<B> for Stepper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let state = self.optim.records.remove(&id).map(|r| r.into_state::<D>());
        let (p, state) = self.optim.update(self.lr, &self.scale, tensor.inner(), grad, state);
        self.optim.records.insert(id, AdaptorRecord::from_state(state));
        let p = Tensor::from_inner(p);
        Param::from_mapped_value(id, if require_grad { p.require_grad() } else { p }, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuTrain;
    use crate::config::MemoryConfig;
    use crate::model::{BakaLM, ModelConfig};
    use crate::state::BakaState;
    use burn::module::ModuleVisitor;
    use burn::optim::Optimizer;

    fn tiny() -> (ModelConfig, TrainConfig) {
        let m = ModelConfig { vocab: 32, d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32, window: 8, ..Default::default() };
        (m, TrainConfig { weight_decay: 0.1, ..Default::default() })
    }

    fn grads(model: &BakaLM<CpuTrain>, seed: usize) -> GradientsParams {
        let dev = Default::default();
        let ids: Vec<i64> = (0..16).map(|i| ((i * 7 + seed * 3) % 32) as i64).collect();
        let x = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(ids, [2, 8]), &dev);
        let loss = model.forward_chunk(x, &mut BakaState::new()).mean();
        GradientsParams::from_grads(loss.backward(), model)
    }

    /// Every parameter's values, in visiting order.
    struct All(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    fn values(model: &BakaLM<CpuTrain>) -> Vec<f32> {
        let mut all = All(Vec::new());
        model.visit(&mut all);
        all.0
    }

    /// The clip as burn's ops: every gradient times `factor`.
    struct Scale<'a>(&'a mut GradientsParams, f64);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.0.remove::<B::InnerBackend, D>(param.id) {
                self.0.register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.1));
            }
        }
    }

    /// Same values as burn's own AdamW adaptor, with the clip as burn's ops applying the scale.
    #[test]
    fn matches_burns_adamw_with_the_scale_applied_to_the_gradients() {
        let _serial = crate::serial();
        let (m, t) = tiny();
        let dev = Default::default();
        let start = BakaLM::<CpuTrain>::new(&m, &MemoryConfig::default(), 1, &dev);
        let (mut ours, mut a) = (AdamW::<CpuTrain>::new(&t), start.clone());
        let mut theirs = AdamWConfig::new().with_epsilon(t.eps as f32).with_weight_decay(0.1).init::<CpuTrain, BakaLM<CpuTrain>>();
        let mut b = start;
        for (step, scale) in [(1, 1.0), (2, 0.25), (3, 1.0)] {
            let (ga, gb) = (grads(&a, step), grads(&b, step));
            a = ours.step(1e-2, GradScale::By(scale), a, ga);
            let mut gb = gb;
            if scale != 1.0 {
                b.visit(&mut Scale(&mut gb, scale));
            }
            b = theirs.step(1e-2, b, gb);
            assert!(values(&a) == values(&b), "step {step}: the weights differ from burn's AdamW");
        }
        assert_ne!(values(&a), values(&BakaLM::<CpuTrain>::new(&m, &MemoryConfig::default(), 1, &dev)), "the steps must move the weights");
        // the state is burn's adaptor record: it loads into burn's adaptor and steps on identically
        let mut back = AdamWConfig::new().with_epsilon(t.eps as f32).with_weight_decay(0.1).init::<CpuTrain, BakaLM<CpuTrain>>().load_record(ours.to_record());
        let (c, d) = (back.step(1e-2, a.clone(), grads(&a, 4)), ours.step(1e-2, GradScale::By(1.0), a.clone(), grads(&a, 4)));
        assert!(values(&c) == values(&d), "burn's adaptor with our record steps differently");
    }

    /// `unstep` takes one off every parameter's step count (what the bias correction uses).
    #[test]
    fn unstep_takes_back_the_step_count() {
        let _serial = crate::serial();
        let (m, t) = tiny();
        let dev = Default::default();
        let mut optim = AdamW::<CpuTrain>::new(&t);
        let mut model = BakaLM::<CpuTrain>::new(&m, &MemoryConfig::default(), 1, &dev);
        for step in 1..=2 {
            model = optim.step(1e-2, GradScale::By(1.0), model.clone(), grads(&model, step));
        }
        let times = |o: &AdamW<CpuTrain>| o.to_record().into_values().map(|mut r| *step_count(&mut r)).collect::<Vec<_>>();
        let before = times(&optim);
        optim.unstep();
        assert!(!before.is_empty() && before.iter().zip(times(&optim)).all(|(b, a)| a + 1 == *b), "{before:?}");
    }
}
