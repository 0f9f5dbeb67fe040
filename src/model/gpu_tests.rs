//! CUDA against the CPU reference (only with `--features cuda`; run on a GPU machine with
//! `cargo test --release --features cuda --lib gpu_`, or a test binary built with `--no-run`).
//! Same seed → same initial weights on both backends, so every branch's loss and gradients on one
//! batch must agree: to TF32 accuracy in f32 (burn-cuda's f32 matmul is TF32), to bf16 accuracy
//! with `dtype = "bf16"`.

use super::*;
use crate::backend::{CpuTrain, GpuTrain};
use burn::tensor::backend::AutodiffBackend;

fn config(positions: PositionKind) -> ModelConfig {
    ModelConfig { vocab: 256, d_model: 64, n_layers: 2, n_heads: 4, d_ff: 128, window: 32, positions, ..Default::default() }
}

/// Mean loss over 3 windows of a fixed batch, and the embedding's gradient (it sums every path).
fn loss_and_grad<B: AutodiffBackend>(c: &ModelConfig, m: &MemoryConfig, dtype: &str, dev: &B::Device) -> (f32, Vec<f32>) {
    let model = BakaLM::<B>::new(c, m, 7, dev).with_compute(dtype);
    let v: Vec<i64> = (0..2 * 97).map(|i| ((i as u64 * 2654435761) % 256) as i64).collect();
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(v, [2, 97]), dev);
    let logits = model.forward_chunk(x.clone().narrow(1, 0, 96), &mut BakaState::new());
    let loss = token_losses(logits, x.narrow(1, 1, 96)).mean();
    let grads = loss.backward();
    let g = model.embed.weight.val().grad(&grads).expect("embedding gradient").into_data().convert::<f32>().to_vec().unwrap();
    (loss.into_scalar().elem(), g)
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let n: f32 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

#[test]
fn gpu_every_branch_matches_the_cpu_in_f32_and_bf16() {
    let gpu = burn::backend::cuda::CudaDevice::default();
    let cases = [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos, PositionKind::Linspace, PositionKind::Alibi]
        .map(|p| (config(p), MemoryConfig { tokens: 0, ..Default::default() }))
        .into_iter()
        .chain([(config(PositionKind::Rope), MemoryConfig { tokens: 4, bptt_windows: 2, ..Default::default() })]);
    for (c, m) in cases {
        let (l_cpu, g_cpu) = loss_and_grad::<CpuTrain>(&c, &m, "f32", &Default::default());
        for (dtype, tol_loss, tol_grad) in [("f32", 2e-3, 2e-2), ("bf16", 2e-2, 1e-1)] {
            let (l, g) = loss_and_grad::<GpuTrain>(&c, &m, dtype, &gpu);
            let (dl, dg) = ((l - l_cpu).abs() / l_cpu, rel(&g, &g_cpu));
            eprintln!("{:?} memory {} {dtype}: loss {l} vs cpu {l_cpu} (rel {dl:.2e}), grad rel {dg:.2e}", c.positions, m.tokens);
            assert!(l.is_finite() && dl < tol_loss, "{:?} memory {} {dtype}: loss {l} vs {l_cpu}", c.positions, m.tokens);
            assert!(dg < tol_grad, "{:?} memory {} {dtype}: gradient rel error {dg}", c.positions, m.tokens);
        }
    }
}
