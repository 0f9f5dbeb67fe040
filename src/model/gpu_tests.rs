//! CUDA against the CPU reference (only with `--features cuda`; run on a GPU machine with
//! `cargo test --release --features cuda --lib gpu_`, or a test binary built with `--no-run`).
//! Same seed → same initial weights on both backends, so every branch's loss and gradients on one
//! batch must agree: to TF32 accuracy in f32 (burn-cuda's f32 matmul is TF32), to bf16 accuracy
//! with `dtype = "bf16"`, with bakallm's kernels (the default) and with burn's ops. Each kernel is
//! also checked alone against the burn steps it replaces (`kernels::prims`).

use super::*;
use crate::backend::{CpuTrain, GpuTrain};
use crate::config::{Device, Dtype, TrainConfig};
use crate::kernels::ops::{AttnKernel, Ce, Fusion, KernelSet, TrainOps};

/// Mean cross-entropy of `logits [b, n, v]` with the loss kernels of `ce` (the autodiff reference,
/// or the closed form in burn's ops or fused kernels).
fn ce_loss(logits: Tensor<GpuTrain, 3>, targets: Tensor<GpuTrain, 2, Int>, ce: Ce) -> Tensor<GpuTrain, 1> {
    let [b, n, v] = logits.dims();
    match ce {
        Ce::Autodiff | Ce::Chunked => crate::kernels::reference::token_losses(logits, targets).mean(),
        Ce::Fused | Ce::ClosedForm => crate::kernels::cross_entropy::token_losses(logits.reshape([b * n, v]), targets.inner().reshape([b * n]), ce == Ce::Fused).mean(),
    }
}

/// Head dim 32: the flash kernels' smallest (the default `train.attention = "flash"`).
fn config(positions: PositionKind) -> ModelConfig {
    ModelConfig { vocab: 256, d_model: 64, n_layers: 2, n_heads: 2, d_ff: 128, window: 32, positions, ..Default::default() }
}

/// Mean loss over 3 windows of a fixed batch as training computes it (`train::batch_loss`), and
/// the gradients of the embedding (it sums every path), of the LM head and of the layers' linspace
/// scales (empty for other schemes), with the kernels of `t` (dtype, matmul, attention, ce,
/// embedding, layernorm, gate).
fn loss_and_grad<B: TrainOps>(c: &ModelConfig, m: &MemoryConfig, t: &TrainConfig, dev: &B::Device) -> (f32, [Vec<f32>; 3]) {
    let model = BakaLM::<B>::new(c, m, 7, dev).with_kernels(t.dtype.float(), t.kernels());
    let v: Vec<i64> = (0..2 * 97).map(|i| ((i as u64 * 2654435761) % 256) as i64).collect();
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(v, [2, 97]), dev);
    let loss = crate::train::batch_loss(&model, x.clone().narrow(1, 0, 96), x.narrow(1, 1, 96));
    let grads = loss.backward();
    let embed = model.embed.weight.val().grad(&grads).expect("embedding gradient").into_data().convert::<f32>().to_vec().unwrap();
    let head = model.lm_head.weight.val().grad(&grads).expect("LM head gradient").into_data().convert::<f32>().to_vec().unwrap();
    let scales = model
        .layers
        .iter()
        .filter_map(|l| l.attn.pos.as_ref())
        .flat_map(|p| p.scale.val().grad(&grads).expect("linspace scale gradient").into_data().convert::<f32>().to_vec::<f32>().unwrap())
        .collect();
    (loss.into_scalar().elem(), [embed, head, scales])
}

/// The relative L2 error of `a` against `b`.
pub(crate) fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let n: f32 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// Every branch's loss and gradients on the GPU against the CPU, with the default kernels in bf16
/// (the training setting: each parallel layer one op, `train.attention = "layer"`, linspace's ramp
/// as the op's key term; the sequential residual too, with its second norm); RoPE also with the GEMM + softmax attention,
/// with the head + loss op over chunks that do not divide the batch's rows, with the attention
/// sublayer as one op (`"block"`) and each sublayer its ops (`"flash"`), with the defaults in f32
/// and with burn's ops throughout.
#[test]
fn gpu_every_branch_matches_the_cpu() {
    let _serial = crate::serial();
    let gpu = burn::backend::cuda::CudaDevice::default();
    let no_memory = MemoryConfig { tokens: 0, ..Default::default() };
    let rmt = MemoryConfig { tokens: 4, bptt_windows: 2, ..Default::default() };
    let train = |dtype: Dtype, kernels: KernelSet| TrainConfig { dtype, kernels, ..Default::default() };
    let (bf16, f32) = (|| train(Dtype::Bf16, KernelSet::Fast), || train(Dtype::F32, KernelSet::Fast));
    let mut cases: Vec<(ModelConfig, MemoryConfig, TrainConfig)> =
        [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos, PositionKind::Linspace, PositionKind::Alibi].map(|p| (config(p), no_memory.clone(), bf16())).into();
    cases.push((config(PositionKind::Rope), rmt.clone(), bf16()));
    cases.push((ModelConfig { norm: NormKind::Rmsnorm, residual: Residual::Sequential, ..config(PositionKind::Rope) }, no_memory.clone(), bf16()));
    cases.push((config(PositionKind::Rope), no_memory.clone(), TrainConfig { attention: Some(AttnKernel::Fused), ..bf16() }));
    // the attention sublayer as one op (xPos: q and k tables differ; ALiBi: a bias; linspace takes "flash")
    for p in [PositionKind::Xpos, PositionKind::Alibi, PositionKind::Linspace] {
        cases.push((config(p), no_memory.clone(), TrainConfig { attention: Some(AttnKernel::Block), ..bf16() }));
    }
    // the default "layer" with RMSNorm and memory; "flash" (each sublayer its ops) as it was
    cases.push((ModelConfig { norm: NormKind::Rmsnorm, ..config(PositionKind::Xpos) }, rmt.clone(), bf16()));
    for p in [PositionKind::Rope, PositionKind::Alibi] {
        cases.push((config(p), no_memory.clone(), TrainConfig { attention: Some(AttnKernel::Flash), ..bf16() }));
    }
    for ce in [Ce::Chunked, Ce::Fused] {
        cases.push((config(PositionKind::Rope), no_memory.clone(), TrainConfig { ce: Some(ce), ce_chunk: 50, ..bf16() }));
    }
    cases.push((config(PositionKind::Rope), no_memory.clone(), TrainConfig { ce: Some(Ce::Chunked), ce_chunk: 50, ..f32() }));
    cases.push((config(PositionKind::Rope), no_memory.clone(), f32()));
    cases.push((config(PositionKind::Rope), no_memory, train(Dtype::Bf16, KernelSet::Reference)));
    for (c, m, t) in cases {
        let (l_cpu, g_cpu) = loss_and_grad::<CpuTrain>(&c, &m, &TrainConfig::default(), &Default::default());
        let (l, g) = loss_and_grad::<GpuTrain>(&c, &m, &t, &gpu);
        let (tol_loss, tol_grad) = if t.dtype == Dtype::F32 { (2e-3, 2e-2) } else { (2e-2, 1e-1) };
        let (dl, de, dh) = ((l - l_cpu).abs() / l_cpu, rel(&g[0], &g_cpu[0]), rel(&g[1], &g_cpu[1]));
        // linspace: the scales' gradients (through the layer op's key term on the fast path)
        assert_eq!(g[2].len(), g_cpu[2].len());
        let ds = if g[2].is_empty() { 0.0 } else { rel(&g[2], &g_cpu[2]) };
        let what = format!("{:?} {:?} memory {} {:?} {:?}", c.positions, c.norm, m.tokens, t.dtype, t.kernels());
        eprintln!("{what}: loss {l} vs cpu {l_cpu} (rel {dl:.2e}), grad rel: embedding {de:.2e}, head {dh:.2e}, linspace scales {ds:.2e}");
        assert!(l.is_finite() && dl < tol_loss, "{what}: loss {l} vs {l_cpu}");
        assert!(de < tol_grad && dh < tol_grad && ds < tol_grad, "{what}: gradient rel error: embedding {de}, head {dh}, linspace scales {ds}");
    }
}

/// `read_later`: reads queued behind more work, several in flight, give what a plain read gives;
/// the last (nothing queued after it) arrives through the sync fallback. Then three training
/// steps whose stats are read after the next step is queued (as `baka train` and `baka bench` do)
/// against the same steps read at once: the same losses and norms, to the atomics' noise.
#[test]
fn gpu_read_later_matches_a_plain_read() {
    let _serial = crate::serial();
    use crate::backend::Gpu;
    use crate::kernels::staged::read_later;
    let dev = burn::backend::cuda::CudaDevice::default();
    let mut x = Tensor::<Gpu, 2>::from_data(TensorData::new((0..128 * 128).map(|i| (((i as u64 * 2654435761 + 5) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>(), [128, 128]), &dev);
    let (mut pending, mut kept) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        x = (x.clone().matmul(x.clone()) * 0.05).tanh();
        let s = Tensor::cat(vec![x.clone().sum().reshape([1]), x.clone().abs().max().reshape([1]), x.clone().slice([3..4, 0..5]).reshape([5])], 0);
        pending.push(read_later(s.clone()));
        kept.push(s);
    }
    let got: Vec<Vec<f32>> = pending.into_iter().map(|p| p.wait()).collect();
    let want: Vec<Vec<f32>> = kept.into_iter().map(|s| s.into_data().to_vec::<f32>().unwrap()).collect();
    eprintln!("read_later: {} reads of 7 values vs plain reads", got.len());
    assert_eq!(got, want);

    use crate::train::{adamw::AdamW, train_step_marked};
    let (c, m) = (crate::model::ModelConfig { vocab: 256, d_model: 64, n_layers: 2, n_heads: 2, d_ff: 128, window: 32, ..Default::default() }, crate::config::MemoryConfig::default());
    let t = crate::config::TrainConfig { device: crate::config::Device::Cuda, dtype: crate::config::Dtype::Bf16, clip: 0.5, ..Default::default() };
    let batch = |i: u64| {
        let v: Vec<i64> = (0..4 * 33).map(|j| ((j as u64 * 2654435761 + i * 977) % 256) as i64).collect();
        let x = Tensor::<GpuTrain, 2, Int>::from_data(TensorData::new(v, [4, 33]), &dev);
        (x.clone().narrow(1, 0, 32), x.narrow(1, 1, 32))
    };
    let run = |later: bool| {
        let mut model = crate::model::BakaLM::<GpuTrain>::new(&c, &m, 3, &dev).with_kernels(t.dtype.float(), t.kernels());
        let mut optim = AdamW::<GpuTrain>::new(&t);
        assert!(optim.clips_on_device(), "the fused AdamW clips on the device");
        let (mut out, mut pending) = (Vec::new(), None);
        for i in 0..3 {
            let (x, y) = batch(i);
            let (next, stats) = train_step_marked(model, &mut optim, x, y, 1e-3, &t, &mut |_| {}).unwrap();
            model = next;
            if !later {
                out.push(stats.now().wait(&mut optim));
            } else if let Some(p) = pending.replace(stats.later()) {
                out.push(p.wait(&mut optim));
            }
        }
        out.extend(pending.map(|p| p.wait(&mut optim)));
        out
    };
    let (plain, piped) = (run(false), run(true));
    eprintln!("three steps, (loss, norm) read at once {plain:?} vs after the next step {piped:?}");
    for ((l0, n0), (l1, n1)) in plain.iter().zip(&piped) {
        assert!((l0 - l1).abs() <= 1e-3 * l0.abs() && (n0 - n1).abs() <= 1e-2 * n0.abs(), "plain ({l0}, {n0}) vs pipelined ({l1}, {n1})");
    }
    assert_eq!(piped.len(), 3);
}

/// Position tables kept across steps (`model.tables`) train as tables built afresh each step
/// do: four steps of the default kernels in bf16 under ALiBi (the bias the flash kernels read),
/// RoPE (rotation tables) and linspace (k's ramp), the same losses and norms to the atomics' noise.
#[test]
fn gpu_kept_position_tables_train_like_fresh_ones() {
    let _serial = crate::serial();
    use crate::train::{adamw::AdamW, train_step_marked};
    let dev = burn::backend::cuda::CudaDevice::default();
    let t = TrainConfig { device: Device::Cuda, dtype: Dtype::Bf16, clip: 0.5, ..Default::default() };
    let batch = |i: u64| {
        let v: Vec<i64> = (0..4 * 33).map(|j| ((j as u64 * 2654435761 + i * 977) % 256) as i64).collect();
        let x = Tensor::<GpuTrain, 2, Int>::from_data(TensorData::new(v, [4, 33]), &dev);
        (x.clone().narrow(1, 0, 32), x.narrow(1, 1, 32))
    };
    for kind in [PositionKind::Alibi, PositionKind::Rope, PositionKind::Linspace] {
        let c = config(kind);
        let run = |keep: bool| {
            let mut model = BakaLM::<GpuTrain>::new(&c, &MemoryConfig::default(), 3, &dev).with_kernels(t.dtype.float(), t.kernels());
            let mut optim = AdamW::<GpuTrain>::new(&t);
            let mut out = Vec::new();
            for i in 0..4 {
                if !keep {
                    model.tables = table_cache::TableCache::default();
                }
                let (x, y) = batch(i);
                let (next, stats) = train_step_marked(model, &mut optim, x, y, 1e-3, &t, &mut |_| {}).unwrap();
                model = next;
                out.push(stats.now().wait(&mut optim));
            }
            (out, model.tables.layouts())
        };
        let ((kept, layouts), (fresh, _)) = (run(true), run(false));
        eprintln!("{kind:?}: four steps, (loss, norm) with kept tables {kept:?} vs fresh {fresh:?}");
        assert_eq!(layouts, 1, "one window layout, kept across the four steps");
        for ((l0, n0), (l1, n1)) in kept.iter().zip(&fresh) {
            assert!((l0 - l1).abs() <= 1e-3 * l0.abs() && (n0 - n1).abs() <= 1e-2 * n0.abs(), "{kind:?}: kept ({l0}, {n0}) vs fresh ({l1}, {n1})");
        }
    }
}

/// Each kernel alone against the burn steps it replaces.
#[path = "gpu_kernel_tests.rs"]
mod kernels;
