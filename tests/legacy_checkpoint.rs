//! A checkpoint written before 2026-12-03 (another record layout: the model's modules then carried
//! their kernel switches as fields) still loads: every parameter equals the one the version that
//! trained it exported by name, and its optimizer state loads onto the parameters.
//! The fixture is a 2-step run of 004_linspace with RMT memory, RMSNorm and the sequential
//! residual (every module kind), and that version's `baka export` of it.

use bakallm::backend::{Cpu, CpuTrain};
use bakallm::weights::{load_run, load_weights, named_tensors};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use std::path::Path;

#[test]
fn a_checkpoint_of_the_old_layout_loads_with_every_parameter() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-2026-12-02");
    let dev = Default::default();
    let (cfg, from_ckpt) = load_run::<Cpu>(&dir.join("run"), &dev).expect("the old checkpoint loads");
    let (_, from_export) = load_weights::<Cpu>(&dir.join("weights.safetensors"), &dev).expect("the old export loads");
    assert!(cfg.memory.tokens > 0 && cfg.model.residual == bakallm::model::Residual::Sequential && cfg.model.norm == bakallm::model::NormKind::Rmsnorm);
    let (a, b) = (named_tensors(&from_ckpt), named_tensors(&from_export));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|t| t.0.contains("pos.scale")) && a.iter().any(|t| t.0.contains("memory")) && a.iter().any(|t| t.0.contains("mlp_norm")));
    for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(&b) {
        assert_eq!((na, sa), (nb, sb));
        assert_eq!(va, vb, "{na}: the checkpoint's values differ from the export's");
    }
    // the optimizer state is keyed by the parameters' ids, which the old record carries
    let ckpt = dir.join("run/checkpoint");
    let model = bakallm::weights::checkpoint::load_model::<CpuTrain>(&ckpt, bakallm::model::BakaLM::new(&cfg.model, &cfg.memory, cfg.train.seed, &dev), &dev).unwrap();
    let optim = bakallm::train::checkpoint::load_optim(&ckpt, bakallm::train::adamw::AdamW::<CpuTrain>::new(&cfg.train), &dev).expect("the old optimizer state loads");
    struct Ids(Vec<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.push(p.id);
        }
    }
    let mut ids = Ids(vec![]);
    model.visit(&mut ids);
    let rec = optim.to_record();
    assert_eq!(rec.len(), ids.0.len());
    assert!(ids.0.iter().all(|id| rec.contains_key(id)), "a parameter without its optimizer state");
}
