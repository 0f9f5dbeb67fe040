use bakallm::backend::CpuTrain;
use bakallm::config::MemoryConfig;
use bakallm::model::{token_losses, BakaLM, ModelConfig, PositionKind};
use bakallm::state::BakaState;
use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

struct P<'a> { g: &'a GradientsParams, path: Vec<String> }
impl<B: AutodiffBackend> ModuleVisitor<B> for P<'_> {
    fn enter_module(&mut self, name: &str, _: &str) { self.path.push(name.into()); }
    fn exit_module(&mut self, _: &str, _: &str) { self.path.pop(); }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        let g = self.g.get::<B::InnerBackend, D>(p.id).unwrap();
        let v: Vec<f32> = g.into_data().to_vec().unwrap();
        let h = v.iter().fold(0u64, |h, x| h.wrapping_mul(31).wrapping_add(x.to_bits() as u64));
        println!("{} {h:x}", self.path.join("."));
    }
}

fn main() {
    let dev = Default::default();
    let kind = match std::env::args().nth(1).as_deref() { Some("nope") => PositionKind::Nope, _ => PositionKind::Rope };
    let mem: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(0);
    let c = ModelConfig { vocab: 64, d_model: 16, n_layers: 2, n_heads: 2, d_ff: 32, window: 8, positions: kind, ..Default::default() };
    let m = BakaLM::<CpuTrain>::new(&c, &MemoryConfig { tokens: mem, ..Default::default() }, 1, &dev);
    let v: Vec<i64> = (0..2 * 17).map(|i| (i * 37 % 64) as i64).collect();
    let x = Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(v, [2, 17]), &dev);
    let logits = m.forward_chunk(x.clone().narrow(1, 0, 16), &mut BakaState::new());
    let loss = token_losses(logits, x.narrow(1, 1, 16)).mean();
    let g = GradientsParams::from_grads(loss.backward(), &m);
    m.visit(&mut P { g: &g, path: vec![] });
}
