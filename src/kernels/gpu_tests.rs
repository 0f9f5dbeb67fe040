//! The attention kernels on CUDA against burn's steps of the same ops (`prims`), like the other
//! kernels' tests in `model::gpu_tests` (run them with `cargo test --release --features cuda --lib gpu_`).

use crate::backend::GpuTrain;
use crate::model::gpu_tests::rel;
use burn::prelude::*;

/// The fused attention's CUDA kernels against the same op with burn's steps (`prims`), forward and
/// the three gradients: a causal + per-head (ALiBi-like) bias, rows that are not a multiple of the
/// warp and rows of all three kernel sizes, f32 and bf16.
#[test]
fn gpu_attention_kernels_match_burns_steps() {
    use crate::kernels::attention::attention_ad;
    let dev = burn::backend::cuda::CudaDevice::default();
    // rows of ≤ 512 and ≤ 1024 keys take the register kernels, longer ones the looping ones; rows
    // of a multiple of 8 keys the 16-byte-access (`_v`) kernels
    for (b, h, l, hd, per_head) in [(2, 3, 37, 16, true), (3, 4, 70, 8, false), (2, 2, 64, 16, true), (1, 2, 600, 8, true), (1, 1, 1100, 8, false)] {
        let hb = if per_head { h } else { 1 };
        let mut bias = vec![0f32; hb * l * l];
        for (hh, i, j) in (0..hb).flat_map(|hh| (0..l).flat_map(move |i| (0..l).map(move |j| (hh, i, j)))) {
            bias[(hh * l + i) * l + j] = if j > i { f32::NEG_INFINITY } else { -0.05 * (hh + 1) as f32 * (i - j) as f32 };
        }
        let data = |seed: u64| -> Vec<f32> { (0..b * h * l * hd).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0).collect() };
        for dt in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::BF16] {
            let bias_t = Tensor::<crate::backend::Gpu, 4>::from_data(TensorData::new(bias.clone(), [1, hb, l, l]), &dev).cast(dt);
            let run = |fused: bool| {
                let t = |s| Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(s), [b * h, l, hd]), &dev).cast(dt).require_grad();
                let (q, k, v) = (t(1), t(2), t(3));
                let y = attention_ad(q.clone(), k.clone(), v.clone(), bias_t.clone(), h, 0.3, fused, crate::kernels::attention::Path::Gemm);
                let w = Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(4), [b * h, l, hd]), &dev).cast(dt);
                let g = (y.clone() * w).sum().backward();
                let v32 = |t: Tensor<crate::backend::Gpu, 3>| t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap();
                [v32(y.inner()), v32(q.grad(&g).unwrap()), v32(k.grad(&g).unwrap()), v32(v.grad(&g).unwrap())]
            };
            let (want, got) = (run(false), run(true));
            let tol = if dt == burn::tensor::FloatDType::F32 { 2e-3 } else { 3e-2 };
            for (what, (a, g)) in ["y", "dq", "dk", "dv"].iter().zip(want.iter().zip(&got)) {
                let r = rel(g, a);
                eprintln!("attention [{b}·{h}, {l}, {hd}] {dt:?} {what}: kernels vs burn rel {r:.2e}");
                assert!(g.iter().all(|x| x.is_finite()) && r < tol, "attention {dt:?} {what}: rel {r}");
            }
        }
    }
}

/// The flash-attention kernels (bf16) against burn's steps of the same op in f32 on the CPU (the
/// GPU's f32 matmul is TF32, too coarse for peaked softmaxes) from the same bf16 values: output,
/// log-sum-exp and the three gradients; head dims 32 and 64, lengths that are and are not
/// multiples of the 64-row tile, with a per-head or shared bias with extra −∞ masks, or none.
#[test]
fn gpu_flash_attention_kernels_match_burns_steps() {
    use crate::kernels::prims::{flash_bwd, flash_fwd};
    use burn::tensor::FloatDType::{BF16, F32};
    type G = crate::backend::Gpu;
    type C = crate::backend::Cpu;
    let dev = burn::backend::cuda::CudaDevice::default();
    // (b, heads, L, hd, bias: 0 none, 1 shared, 2 per head)
    for (b, h, l, hd, biased) in [(2, 3, 37, 64, 2), (2, 2, 200, 32, 1), (1, 4, 512, 64, 0), (3, 2, 128, 64, 2), (2, 2, 100, 32, 0)] {
        let hb = if biased == 2 { h } else { 1 };
        let mut bias = vec![0f32; hb * l * l];
        for (hh, i, j) in (0..hb).flat_map(|hh| (0..l).flat_map(move |i| (0..l).map(move |j| (hh, i, j)))) {
            let masked = j > i || (j != i && (i * 7 + j * 3) % 11 == 0);
            bias[(hh * l + i) * l + j] = if masked { f32::NEG_INFINITY } else { -0.05 * (hh + 1) as f32 * (i - j) as f32 };
        }
        let bias = (biased > 0).then(|| Tensor::<G, 4>::from_data(TensorData::new(bias, [1, hb, l, l]), &dev).cast(BF16));
        let data = |seed: u64| {
            let v: Vec<f32> = (0..b * h * l * hd).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0).collect();
            Tensor::<G, 3>::from_data(TensorData::new(v, [b * h, l, hd]), &dev).cast(BF16)
        };
        let [q, k, v, dout] = [1, 2, 3, 4].map(data);
        fn to_cpu<const D: usize>(t: &Tensor<G, D>) -> Tensor<C, D> {
            Tensor::from_data(t.clone().cast(F32).into_data().convert::<f32>(), &Default::default())
        }
        let vec = |t: Tensor<G, 3>| t.cast(F32).into_data().to_vec::<f32>().unwrap();
        let cvec = |t: Tensor<C, 3>| t.into_data().to_vec::<f32>().unwrap();
        let (o, lse) = flash_fwd(q.clone(), k.clone(), v.clone(), bias.clone(), 0.3, h, true);
        let g = flash_bwd(q.clone(), k.clone(), v.clone(), o.clone(), lse.clone(), dout.clone(), bias.clone(), 0.3, h, true);
        let [qc, kc, vc, dc] = [&q, &k, &v, &dout].map(to_cpu);
        let bc = bias.as_ref().map(to_cpu);
        let (o_ref, lse_ref) = flash_fwd(qc.clone(), kc.clone(), vc.clone(), bc.clone(), 0.3, h, false);
        // the backward's reference from the kernel's (bf16) output: its own contract, and delta's
        // rounding cancels where a peaked row makes dP − delta small
        let g_ref = flash_bwd(qc, kc, vc, to_cpu(&o), lse_ref.clone(), dc, bc, 0.3, h, false);
        let mut pairs = vec![("o", vec(o), cvec(o_ref)), ("lse", vec(lse.unsqueeze_dim(2)), cvec(lse_ref.unsqueeze_dim(2)))];
        for ((what, got), want) in ["dq", "dk", "dv"].into_iter().zip(g).zip(g_ref) {
            pairs.push((what, vec(got), cvec(want)));
        }
        for (what, got, want) in pairs {
            let r = rel(&got, &want);
            eprintln!("flash [{b}·{h}, {l}, {hd}] bias {biased} {what}: kernels vs burn rel {r:.2e}");
            assert!(got.iter().all(|x| x.is_finite()) && r < 1e-2, "flash [{b}·{h}, {l}, {hd}] bias {biased} {what}: rel {r}");
        }
    }
}
