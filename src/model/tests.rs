//! Whole-model tests: windows, memory, truncated BPTT, causality, parameter count.

use super::*;
use crate::backend::{Cpu, CpuTrain};

fn tiny(positions: PositionKind) -> ModelConfig {
    ModelConfig { vocab: 64, d_model: 16, n_layers: 2, n_heads: 2, d_ff: 32, window: 8, positions, ..Default::default() }
}

fn mem(tokens: usize, bptt: usize) -> MemoryConfig {
    MemoryConfig { tokens, bptt_windows: bptt, ..Default::default() }
}

fn tokens<B: Backend>(b: usize, n: usize, salt: u64, dev: &B::Device) -> Tensor<B, 2, Int> {
    let v: Vec<i64> = (0..b * n).map(|i| ((i as u64 * 2654435761 + salt * 97) % 64) as i64).collect();
    Tensor::from_data(TensorData::new(v, [b, n]), dev)
}

fn vec3<B: Backend>(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

const ALL: [PositionKind; 5] = [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos, PositionKind::Linspace, PositionKind::Alibi];

#[test]
fn batched_windows_equal_the_sequential_loop() {
    let _serial = crate::serial();
    let dev = Default::default();
    for kind in ALL {
        let m = BakaLM::<Cpu>::new(&tiny(kind), &mem(0, 2), 1, &dev);
        let x = tokens::<Cpu>(2, 24, 1, &dev);
        let batched = vec3(m.forward_chunk(x.clone(), &mut BakaState::new()));
        let mut st = BakaState::new();
        let looped: Vec<Tensor<Cpu, 3>> = (0..3).map(|w| m.forward_window(x.clone().narrow(1, w * 8, 8), &mut st)).collect();
        let looped = vec3(Tensor::cat(looped, 1));
        assert_eq!(batched.len(), looped.len());
        let max = batched.iter().zip(&looped).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-5, "{kind:?}: max diff {max}");
        assert_eq!(st.offset, 24);
    }
}

#[test]
fn memory_carries_information_across_windows_and_plain_windows_do_not() {
    let _serial = crate::serial();
    let dev = Default::default();
    for (m_tokens, must_change) in [(4, true), (0, false)] {
        let m = BakaLM::<Cpu>::new(&tiny(PositionKind::Rope), &mem(m_tokens, 2), 3, &dev);
        let a = tokens::<Cpu>(1, 16, 1, &dev);
        let b = Tensor::cat(vec![tokens::<Cpu>(1, 8, 9, &dev), a.clone().narrow(1, 8, 8)], 1);
        let (mut sa, mut sb) = (BakaState::new(), BakaState::new());
        let la = vec3(m.forward_chunk(a, &mut sa).narrow(1, 8, 8));
        let lb = vec3(m.forward_chunk(b, &mut sb).narrow(1, 8, 8));
        let max = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert_eq!(max > 1e-6, must_change, "memory {m_tokens}: window-1 logits moved by {max}");
        assert_eq!(sa.memory.is_some(), m_tokens > 0);
    }
}

/// Does the loss of window `last` have a gradient on window 0's input embeddings?
fn grad_reaches_window0(bptt: usize, last: usize) -> bool {
    let dev = Default::default();
    let m = BakaLM::<CpuTrain>::new(&tiny(PositionKind::Nope), &mem(2, bptt), 5, &dev);
    let x0 = Tensor::<CpuTrain, 3>::random([1, 8, 16], burn::tensor::Distribution::Default, &dev).require_grad();
    let mut st = BakaState::new();
    let mut h = m.forward_hidden(x0.clone(), &mut st);
    for _ in 1..=last {
        let x = Tensor::<CpuTrain, 3>::random([1, 8, 16], burn::tensor::Distribution::Default, &dev);
        h = m.forward_hidden(x, &mut st);
    }
    let grads = h.sum().backward();
    x0.grad(&grads).is_some_and(|g| g.abs().sum().into_scalar() > 0.0)
}

#[test]
fn gradient_flows_through_memory_within_bptt_windows_only() {
    let _serial = crate::serial();
    assert!(grad_reaches_window0(2, 1), "window 1's loss must reach window 0 (bptt 2)");
    assert!(!grad_reaches_window0(2, 2), "window 2's loss must not reach window 0 (bptt 2)");
    assert!(grad_reaches_window0(3, 2), "window 2's loss must reach window 0 (bptt 3)");
    assert!(!grad_reaches_window0(1, 1), "bptt 1 detaches after every window");
}

#[test]
fn changing_token_t_never_changes_earlier_logits() {
    let _serial = crate::serial();
    let dev = Default::default();
    for kind in ALL {
        for m_tokens in [0, 3] {
            let m = BakaLM::<Cpu>::new(&tiny(kind), &mem(m_tokens, 2), 7, &dev);
            let a = tokens::<Cpu>(1, 16, 2, &dev);
            let mut v: Vec<i64> = a.to_data().convert::<i64>().to_vec().unwrap();
            v[13] = (v[13] + 5) % 64; // window 1, position 5
            let b = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(v, [1, 16]), &dev);
            let la = vec3(m.forward_chunk(a, &mut BakaState::new()));
            let lb = vec3(m.forward_chunk(b, &mut BakaState::new()));
            let per = 64;
            assert_eq!(la[..13 * per], lb[..13 * per], "{kind:?} mem {m_tokens}: earlier logits changed");
            assert_ne!(la[13 * per..14 * per], lb[13 * per..14 * per], "{kind:?} mem {m_tokens}");
        }
    }
}

#[test]
fn parameter_count_matches_formula_and_full_size_is_190m() {
    let _serial = crate::serial();
    let dev = Default::default();
    for (c, m) in [(tiny(PositionKind::Linspace), mem(4, 2)), (tiny(PositionKind::Rope), mem(0, 2))] {
        let model = BakaLM::<Cpu>::new(&c, &m, 1, &dev);
        assert_eq!(model.num_params(), param_count(&c, &m));
    }
    let full = ModelConfig { vocab: 50304, ..Default::default() };
    let n = param_count(&full, &mem(0, 2));
    assert!((190_000_000..191_000_000).contains(&n), "{n}");
}

#[test]
fn loss_of_an_untrained_model_is_near_log_vocab() {
    let _serial = crate::serial();
    let dev = Default::default();
    let m = BakaLM::<Cpu>::new(&tiny(PositionKind::Rope), &mem(0, 2), 1, &dev);
    let x = tokens::<Cpu>(2, 17, 4, &dev);
    let logits = m.forward_chunk(x.clone().narrow(1, 0, 16), &mut BakaState::new());
    let loss = token_losses(logits, x.narrow(1, 1, 16)).mean().into_scalar();
    assert!((loss - (64f32).ln()).abs() < 0.1, "{loss}");
}
