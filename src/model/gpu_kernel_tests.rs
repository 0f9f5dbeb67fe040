//! Each CUDA kernel alone against the burn steps it replaces (`kernels::prims`), in f32 and bf16
//! (part of `gpu_tests`: `cargo test --release --features cuda --lib gpu_`).

use super::*;

/// cuBLAS against burn's matmul on the CPU (f32, the same dtype-rounded inputs): plain,
/// transposed-view and batch-broadcast operands, forward and both gradients, f32 (TF32 on the GPU)
/// and bf16. The reference is on the CPU because burn's own CUDA matmul autotunes each new odd
/// shape for minutes.
#[test]
fn gpu_cublas_matmul_matches_burns_forward_and_backward() {
    let _serial = crate::serial();
    use crate::kernels::cublas::matmul;
    let (dev, cpu) = (burn::backend::cuda::CudaDevice::default(), Default::default());
    let values = |shape: [usize; 3], seed: u64| -> Vec<f32> { (0..shape.iter().product::<usize>()).map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0) - 1.0).collect() };
    fn vec<B: Backend>(t: Tensor<B, 3>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }
    // (lhs shape, rhs shape, transpose rhs: rhs is stored [b, n, k] and used as a view)
    let cases = [([1, 300, 96], [1, 96, 200], false), ([3, 40, 64], [3, 50, 64], true), ([4, 33, 17], [1, 17, 9], false)];
    for (ls, rs, t) in cases {
        for dt in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::BF16] {
            // the GPU's operands in `dt`, the CPU's the same values in f32
            let gpu = |shape: [usize; 3], seed| Tensor::<GpuTrain, 3>::from_data(TensorData::new(values(shape, seed), shape), &dev).cast(dt);
            let (a, b, w) = (gpu(ls, 1), gpu(rs, 2), gpu([ls[0], ls[1], if t { rs[1] } else { rs[2] }], 3));
            let on_cpu = |x: &Tensor<GpuTrain, 3>| Tensor::<CpuTrain, 3>::from_data(TensorData::new(vec(x.clone()), x.dims()), &cpu);
            let (ca, cb, cw) = (on_cpu(&a).require_grad(), on_cpu(&b).require_grad(), on_cpu(&w));
            let (a, b) = (a.require_grad(), b.require_grad());
            let y = matmul(a.clone(), if t { b.clone().swap_dims(1, 2) } else { b.clone() });
            let cy = ca.clone().matmul(if t { cb.clone().swap_dims(1, 2) } else { cb.clone() });
            let (g, cg) = ((y.clone() * w).sum().backward(), (cy.clone() * cw).sum().backward());
            let tol = if dt == burn::tensor::FloatDType::F32 { 2e-3 } else { 2e-2 };
            let pairs = [("out", vec(cy), vec(y)), ("d lhs", vec(ca.grad(&cg).unwrap()), vec(a.grad(&g).unwrap())), ("d rhs", vec(cb.grad(&cg).unwrap()), vec(b.grad(&g).unwrap()))];
            for (what, want, got) in pairs {
                let r = rel(&got, &want);
                eprintln!("{ls:?}·{rs:?} t={t} {dt:?} {what}: cublas vs the CPU rel {r:.2e}");
                assert!(r < tol, "{ls:?}·{rs:?} {dt:?} {what}: rel {r}");
            }
        }
    }
}

/// The closed-form cross-entropy (burn's ops, and the fused kernels) against burn's log_softmax on
/// the GPU, f32 and bf16 logits (bf16 as in training), a vocabulary that is not a multiple of 256.
#[test]
fn gpu_cross_entropy_kernels_match_autodiff() {
    let _serial = crate::serial();
    let dev = burn::backend::cuda::CudaDevice::default();
    // a vocabulary of a multiple of 8 takes the 16-byte-access (`_v`) kernels
    for (v, dt) in [1000, 1001].into_iter().flat_map(|v| [(v, burn::tensor::FloatDType::F32), (v, burn::tensor::FloatDType::BF16)]) {
        let (b, n) = (2, 37);
        let xs: Vec<f32> = (0..b * n * v).map(|i| ((i as u64 * 2654435761 % 1000) as f32 / 100.0) - 5.0).collect();
        let ts: Vec<i64> = (0..b * n).map(|i| (i as i64 * 7919) % v as i64).collect();
        let run = |ce: Ce| {
            let x = Tensor::<GpuTrain, 3>::from_data(TensorData::new(xs.clone(), [b, n, v]), &dev).cast(dt).require_grad();
            let t = Tensor::<GpuTrain, 2, Int>::from_data(TensorData::new(ts.clone(), [b, n]), &dev);
            let loss = ce_loss(x.clone(), t, ce);
            let g = x.grad(&loss.backward()).unwrap().cast(burn::tensor::FloatDType::F32);
            (loss.into_scalar().elem::<f32>(), g.into_data().to_vec::<f32>().unwrap())
        };
        let (l0, g0) = run(Ce::Autodiff);
        for ce in [Ce::ClosedForm, Ce::Fused] {
            let (l1, g1) = run(ce);
            eprintln!("cross-entropy {ce:?} vs autodiff, vocab {v} {dt:?}: loss {l1} vs {l0}, grad rel {:.2e}", rel(&g1, &g0));
            assert!((l0 - l1).abs() < 1e-4 * l0.abs() && rel(&g1, &g0) < 2e-2, "{ce:?} {dt:?}: loss {l1} vs {l0}");
        }
    }
}

/// The embedding's scatter-add kernel against burn's embedding backward (repeated ids).
#[test]
fn gpu_embedding_kernel_matches_burns() {
    let _serial = crate::serial();
    let dev = burn::backend::cuda::CudaDevice::default();
    let (vocab, d, n) = (300, 96, 2000);
    let w: Vec<f32> = (0..vocab * d).map(|i| ((i as u64 * 2654435761 % 1000) as f32 / 500.0) - 1.0).collect();
    let ids: Vec<i64> = (0..n).map(|i| ((i as u64 * 7919) % 37 * 7) as i64).collect();
    let run = |fused: bool| {
        let weight = Tensor::<GpuTrain, 2>::from_data(TensorData::new(w.clone(), [vocab, d]), &dev).require_grad();
        let x = Tensor::<crate::backend::Gpu, 2, Int>::from_data(TensorData::new(ids.clone(), [4, n / 4]), &dev);
        let y = if fused { crate::kernels::embedding::embedding_ad(weight.clone(), x, true) } else { burn::tensor::module::embedding(weight.clone(), Tensor::from_inner(x)) };
        let loss = (y.clone() * y.clone()).sum();
        let g = weight.grad(&loss.backward()).unwrap();
        (y.into_data().to_vec::<f32>().unwrap(), g.into_data().to_vec::<f32>().unwrap())
    };
    let ((y0, g0), (y1, g1)) = (run(false), run(true));
    eprintln!("embedding kernel vs burn: grad rel {:.2e}", rel(&g1, &g0));
    assert_eq!(y0, y1);
    assert!(rel(&g1, &g0) < 1e-5, "embedding grad rel {}", rel(&g1, &g0));
}

/// The head split/merge kernels (with RoPE and xPos tables, and without) against burn's steps:
/// values and input gradients, f32 and bf16.
#[test]
fn gpu_heads_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::kernels::heads::{merge_heads_ad, split_heads_ad};
    use positions::{tables, Layout};
    let dev = burn::backend::cuda::CudaDevice::default();
    let data = |seed: u64, n: usize| -> Vec<f32> { (0..n).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0).collect() };
    // head dim 16 takes the 16-byte-access (`_v`) kernels; 12 the one-element ones for bf16, and
    // for f32 with a rotation (its half, 6, is not a multiple of 4)
    let shapes = [(3, 45, 4, 16), (2, 19, 3, 12)];
    for ((b, l, heads, hd), kind) in shapes.into_iter().flat_map(|s| [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos].map(|k| (s, k))) {
        let d = heads * hd;
        for dt in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::BF16] {
            let p = PosParams { kind, n_heads: heads, head_dim: hd, rope_base: 1e4, xpos_gamma: 0.4, xpos_scale_base: 512.0, linspace_edge: 0.1 };
            let rot = tables::<crate::backend::Gpu>(&Layout::plain(l, 100), &p, &dev, dt).rot_k;
            let run = |fused: bool| {
                let x = Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(1, b * l * d), [b, l, d]), &dev).cast(dt).require_grad();
                let w = Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(2, b * l * d), [b * heads, l, hd]), &dev).cast(dt);
                let s = split_heads_ad(x.clone(), &rot, heads, fused);
                let m = merge_heads_ad(s.clone() * w, heads, fused);
                let g = (m.clone() * m.clone()).sum().backward();
                let v32 = |t: Tensor<crate::backend::Gpu, 3>| t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap();
                [v32(s.inner()), v32(m.inner()), v32(x.grad(&g).unwrap())]
            };
            let (want, got) = (run(false), run(true));
            let tol = if dt == burn::tensor::FloatDType::F32 { 1e-5 } else { 2e-2 };
            for (what, (a, g)) in ["split", "merge", "dx"].iter().zip(want.iter().zip(&got)) {
                let r = rel(g, a);
                eprintln!("heads hd {hd} {kind:?} {dt:?} {what}: kernels vs burn rel {r:.2e}");
                assert!(r < tol, "heads hd {hd} {kind:?} {dt:?} {what}: rel {r}");
            }
        }
    }
}

/// The LayerNorm/RMSNorm kernels against burn's steps: output and the gradients of x, the weight
/// and the bias; widths whose rows the kernels keep in registers (256, 512, 768; cuda/norm.cu) and
/// others (100, not a multiple of the warp; 1024), and rows not a multiple of a block's.
#[test]
fn gpu_norm_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::kernels::norm::norm_ad;
    let dev = burn::backend::cuda::CudaDevice::default();
    let data = |seed: u64, n: usize| -> Vec<f32> { (0..n).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0).collect() };
    for (rows, d) in [(300, 768), (70, 100), (40, 256), (40, 512), (40, 1024)] {
        for layer in [true, false] {
            for dt in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::BF16] {
                let run = |fused: bool| {
                    let x = Tensor::<GpuTrain, 2>::from_data(TensorData::new(data(1, rows * d), [rows, d]), &dev).cast(dt).require_grad();
                    let w = Tensor::<GpuTrain, 1>::from_data(TensorData::new(data(2, d), [d]), &dev).require_grad();
                    let b = Tensor::<GpuTrain, 1>::from_data(TensorData::new(data(3, d), [d]), &dev).require_grad();
                    let y = norm_ad(x.clone(), w.clone(), layer.then(|| b.clone()), 1e-5, fused);
                    let up = Tensor::<GpuTrain, 2>::from_data(TensorData::new(data(4, rows * d), [rows, d]), &dev).cast(dt);
                    let g = (y.clone() * up).sum().backward();
                    let f = |t: Tensor<crate::backend::Gpu, 2>| t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap();
                    let f1 = |t: Option<Tensor<crate::backend::Gpu, 1>>| t.map(|t| t.into_data().to_vec::<f32>().unwrap()).unwrap_or_default();
                    [f(y.inner()), f(x.grad(&g).unwrap()), f1(w.grad(&g)), if layer { f1(b.grad(&g)) } else { vec![1.0] }]
                };
                let (want, got) = (run(false), run(true));
                let tol = if dt == burn::tensor::FloatDType::F32 { 1e-4 } else { 2e-2 };
                for (what, (a, g)) in ["y", "dx", "dw", "db"].iter().zip(want.iter().zip(&got)) {
                    let r = rel(g, a);
                    eprintln!("norm [{rows}, {d}] layer {layer} {dt:?} {what}: kernels vs burn rel {r:.2e}");
                    assert!(r < tol, "norm [{rows}, {d}] layer {layer} {dt:?} {what}: rel {r}");
                }
            }
        }
    }
}

/// The cuBLAS linear op (cast inside, f32 weight gradient straight from the GEMM) against burn's
/// steps on the CPU (f32, the same dtype-rounded inputs): output and the gradients of x and the
/// weight, f32 and bf16 activations. The reference is on the CPU because burn's own CUDA matmul
/// autotunes each new odd shape for minutes.
#[test]
fn gpu_linear_op_matches_burns_steps() {
    let _serial = crate::serial();
    use crate::kernels::linear::linear_ad;
    let (dev, cpu) = (burn::backend::cuda::CudaDevice::default(), Default::default());
    let data = |seed: u64, n: usize| -> Vec<f32> { (0..n).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0).collect() };
    let (b, l, d, n) = (3, 70, 96, 200);
    fn vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap()
    }
    for dt in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::BF16] {
        let x = Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(1, b * l * d), [b, l, d]), &dev).cast(dt).require_grad();
        let w = Tensor::<GpuTrain, 2>::from_data(TensorData::new(data(2, d * n), [d, n]), &dev).require_grad();
        let up = Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(3, b * l * n), [b, l, n]), &dev).cast(dt);
        // the CPU's the same values in f32
        let cx = Tensor::<CpuTrain, 3>::from_data(TensorData::new(vec(x.clone()), [b, l, d]), &cpu).require_grad();
        let cw = Tensor::<CpuTrain, 2>::from_data(TensorData::new(vec(w.clone()), [d, n]), &cpu).require_grad();
        let cup = Tensor::<CpuTrain, 3>::from_data(TensorData::new(vec(up.clone()), [b, l, n]), &cpu);
        let y = linear_ad(x.clone(), w.clone(), true);
        let cy = linear_ad(cx.clone(), cw.clone(), false);
        let (g, cg) = ((y.clone() * up).sum().backward(), (cy.clone() * cup).sum().backward());
        let dw = w.grad(&g).unwrap();
        assert_eq!(dw.dtype(), burn::tensor::DType::F32, "the weight gradient is the f32 master's");
        let want = [vec(cy.inner()), vec(cx.grad(&cg).unwrap()), vec(cw.grad(&cg).unwrap())];
        let got = [vec(y.inner()), vec(x.grad(&g).unwrap()), vec(dw)];
        let tol = if dt == burn::tensor::FloatDType::F32 { 2e-3 } else { 2e-2 }; // TF32 / bf16 GEMMs
        for (what, (a, g)) in ["y", "dx", "dw"].iter().zip(want.iter().zip(&got)) {
            let r = rel(g, a);
            eprintln!("linear {dt:?} {what}: cuBLAS op vs burn on the CPU rel {r:.2e}");
            assert!(r < tol, "linear {dt:?} {what}: rel {r}");
        }
    }
}

/// The gated-SiLU kernels against burn's steps: output and both gradients, f32 and bf16, on
/// lengths past the kernels' grid (their stride loop): odd ones take the one-element kernels, the
/// multiples of 8 the 16-byte-access (`_v`) ones.
#[test]
fn gpu_gate_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::kernels::gate::silu_mul_ad;
    let dev = burn::backend::cuda::CudaDevice::default();
    use burn::tensor::FloatDType::{BF16, F32};
    for (n, dt) in [(2_300_001, F32), (2_300_001, BF16), (9_000_000, F32), (17_000_000, BF16)] {
        let data = |seed: u64| -> Vec<f32> { (0..n).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 125.0) - 4.0).collect() };
        let run = |fused: bool| {
            let t = |s| Tensor::<GpuTrain, 1>::from_data(TensorData::new(data(s), [n]), &dev).cast(dt);
            let (a, u) = (t(1).require_grad(), t(2).require_grad());
            let y = silu_mul_ad(a.clone(), u.clone(), fused);
            let g = (y.clone() * t(3)).sum().backward();
            let f = |t: Tensor<crate::backend::Gpu, 1>| t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap();
            [f(y.inner()), f(a.grad(&g).unwrap()), f(u.grad(&g).unwrap())]
        };
        let (want, got) = (run(false), run(true));
        let tol = if dt == burn::tensor::FloatDType::F32 { 1e-5 } else { 1e-2 };
        for (what, (a, g)) in ["y", "da", "du"].iter().zip(want.iter().zip(&got)) {
            let r = rel(g, a);
            eprintln!("gate {n} {dt:?} {what}: kernels vs burn rel {r:.2e}");
            assert!(r < tol, "gate {n} {dt:?} {what}: rel {r}");
        }
    }
}

/// The multi-tensor sum of squares (the global gradient norm) against burn's per-tensor
/// reductions: 150 tensors of mixed ranks and sizes (three launches of 64), one of 3M elements.
#[test]
fn gpu_sum_squares_kernel_matches_burns() {
    let _serial = crate::serial();
    use crate::backend::Gpu;
    let dev = burn::backend::cuda::CudaDevice::default();
    let sizes: Vec<usize> = (0..150).map(|i| if i == 7 { 3_000_000 } else { 1 + (i * 7919) % 5000 }).collect();
    let tensors: Vec<Tensor<Gpu, 2>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let v: Vec<f32> = (0..n).map(|i| (((i as u64 * 2654435761 + k as u64) % 1000) as f32 / 500.0) - 1.0).collect();
            Tensor::<Gpu, 1>::from_data(TensorData::new(v, [n]), &dev).reshape([1, n])
        })
        .collect();
    let want: f64 = tensors.iter().map(|t| t.clone().square().sum().into_scalar().elem::<f64>()).sum();
    let got = <Gpu as crate::kernels::inner::Prims>::sum_squares(tensors.into_iter().map(|t| t.into_primitive().tensor()).collect()).into_scalar().elem::<f64>();
    eprintln!("sum of squares: kernel {got} vs burn {want}");
    assert!((got - want).abs() < 1e-5 * want, "sum_squares {got} vs {want}");
}

/// The fused AdamW kernel against burn's AdamW ops on the same gradients: three steps, the second
/// with the gradient scaled (clipped) by 0.25, the third clipped on the device from a norm of 4
/// (max 1), weight decay on; parameter and both moments. Then a non-finite norm: the kernel leaves
/// all three as they were. The tensor spans many of the kernel's blocks and ends mid-block on an
/// element past the last whole group of four (the last block's tail).
#[test]
fn gpu_adamw_kernel_matches_burns() {
    let _serial = crate::serial();
    use crate::backend::Gpu;
    use crate::train::adamw::{AdamW, GradScale};
    let dev = burn::backend::cuda::CudaDevice::default();
    let n = 1_200_001;
    let stats = |norm: f32| Tensor::<Gpu, 1>::from_data(TensorData::new(vec![2.5f32, norm], [2]), &dev);
    let data = |seed: u64| Tensor::<Gpu, 1>::from_data(TensorData::new((0..n).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0).collect::<Vec<f32>>(), [n]), &dev);
    let t = TrainConfig { device: Device::Cuda, weight_decay: 0.1, ..Default::default() };
    let (fused, plain) = (AdamW::<GpuTrain>::new(&t), AdamW::<GpuTrain>::new(&TrainConfig { adamw: Some(Fusion::Burn), ..t.clone() }));
    let (mut a, mut b) = ((data(1), None), (data(1), None));
    let v = |t: &Tensor<Gpu, 1>| t.clone().into_data().to_vec::<f32>().unwrap();
    for (step, device, host) in [(1, GradScale::By(1.0), 1.0), (2, GradScale::By(0.25), 0.25), (3, GradScale::Clip { stats: stats(4.0), max_norm: 1.0 }, 1.0 / (4.0 + 1e-6))] {
        let (pa, sa) = fused.update(1e-2, &device, a.0, data(10 + step), a.1);
        let (pb, sb) = plain.update(1e-2, &GradScale::By(host), b.0, data(10 + step), b.1);
        let moved: Vec<f32> = v(&pb).iter().zip(v(&data(1))).map(|(x, y)| x - y).collect();
        let moved_a: Vec<f32> = v(&pa).iter().zip(v(&data(1))).map(|(x, y)| x - y).collect();
        let (m, vv) = (|s: &burn::optim::AdamWState<Gpu, 1>| v(&s.momentum.moment_1), |s: &burn::optim::AdamWState<Gpu, 1>| v(&s.momentum.moment_2));
        for (what, r) in [("p − p0", rel(&moved_a, &moved)), ("m", rel(&m(&sa), &m(&sb))), ("v", rel(&vv(&sa), &vv(&sb)))] {
            eprintln!("adamw step {step} {what}: kernel vs burn rel {r:.2e}");
            assert!(r < 1e-5, "adamw step {step} {what}: rel {r}");
        }
        assert_eq!(sa.momentum.time, sb.momentum.time);
        (a, b) = ((pa, Some(sa)), (pb, Some(sb)));
    }
    let (p0, s0) = (a.0, a.1.expect("state"));
    let (m0, v0) = (v(&s0.momentum.moment_1), v(&s0.momentum.moment_2));
    let (pa, sa) = fused.update(1e-2, &GradScale::Clip { stats: stats(f32::NAN), max_norm: 1.0 }, p0.clone(), data(20), Some(s0));
    assert!(v(&pa) == v(&p0) && v(&sa.momentum.moment_1) == m0 && v(&sa.momentum.moment_2) == v0, "a non-finite norm must leave p, m and v as they were");
}

/// The multi-tensor AdamW step over a whole model (every parameter with a gradient, one launch per
/// 32) against burn's AdamW adaptor on the same gradients: every parameter after two steps, the
/// second with a clip scale. Each step's gradients come from one backward pass, given to both:
/// two passes differ by their atomics (embedding and norm gradients), and AdamW's first steps
/// amplify that where v is small (two passes gave 1.07e-4 relative after the second step).
#[test]
fn gpu_adamw_step_over_a_model_matches_burns() {
    let _serial = crate::serial();
    use crate::train::adamw::{AdamW, GradScale};
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    let dev = burn::backend::cuda::CudaDevice::default();
    let c = config(PositionKind::Rope);
    let t = TrainConfig { device: Device::Cuda, weight_decay: 0.1, ..Default::default() };
    let grads = |model: &BakaLM<GpuTrain>| {
        let v: Vec<i64> = (0..2 * 33).map(|i| ((i as u64 * 2654435761) % 256) as i64).collect();
        let x = Tensor::<GpuTrain, 2, Int>::from_data(TensorData::new(v, [2, 33]), &dev);
        let logits = model.forward_chunk(x.clone().narrow(1, 0, 32), &mut BakaState::new());
        let loss = ce_loss(logits, x.narrow(1, 1, 32), Ce::Fused);
        GradientsParams::from_grads(loss.backward(), model)
    };
    struct All(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0.extend(p.val().into_data().convert::<f32>().to_vec::<f32>().unwrap());
        }
    }
    /// A copy of a `GradientsParams` (the same tensors) for the parameters of the module visited.
    struct Same<'a>(&'a GradientsParams, GradientsParams);
    impl<B: burn::tensor::backend::AutodiffBackend> ModuleVisitor<B> for Same<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.0.get::<B::InnerBackend, D>(p.id) {
                self.1.register(p.id, g);
            }
        }
    }
    let values = |m: &BakaLM<GpuTrain>| {
        let mut all = All(Vec::new());
        m.visit(&mut all);
        all.0
    };
    let start = BakaLM::<GpuTrain>::new(&c, &MemoryConfig::default(), 3, &dev);
    let p0 = values(&start);
    let (mut fused, mut plain) = (AdamW::<GpuTrain>::new(&t), AdamW::<GpuTrain>::new(&TrainConfig { adamw: Some(Fusion::Burn), ..t.clone() }));
    let (mut a, mut b) = (start.clone(), start);
    for scale in [1.0, 0.25] {
        let ga = grads(&a);
        let mut same = Same(&ga, GradientsParams::new());
        a.visit(&mut same);
        let gb = same.1;
        a = fused.step(1e-2, GradScale::By(scale), a, ga);
        b = plain.step(1e-2, GradScale::By(scale), b, gb);
        let (va, vb) = (values(&a), values(&b));
        let moved = |v: &[f32]| v.iter().zip(&p0).map(|(x, y)| x - y).collect::<Vec<f32>>();
        let r = rel(&moved(&va), &moved(&vb));
        eprintln!("adamw step over the model (scale {scale}): multi-tensor kernel vs burn rel {r:.2e} over {} values", va.len());
        assert!(r < 1e-4, "adamw over the model, scale {scale}: rel {r}");
    }
}

/// The layers' bf16 weight copies that AdamW writes (`kernels::weight_copies`,
/// `BAKA_WEIGHT_COPIES=1`, set here): after each step the loss of the stepped model, whose layers read
/// AdamW's copies, equals bit for bit the loss of the same weights as new tensors (new ids, so
/// the layers cast them afresh). A copy left stale by a step would give the loss of the weights
/// before it.
#[test]
fn gpu_weight_copies_written_by_adamw_are_the_weights_cast() {
    let _serial = crate::serial();
    let _on = crate::kernels::env::WEIGHT_COPIES.scoped(true); // for this test only
    use crate::train::adamw::{AdamW, GradScale};
    use burn::module::{Module, ModuleMapper, Param};
    use burn::optim::GradientsParams;
    /// Each weight as a new tensor with the same values.
    struct Fresh;
    impl<B: Backend> ModuleMapper<B> for Fresh {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            Param::from_mapped_value(id, tensor.add_scalar(0.0), mapper)
        }
    }
    let dev = burn::backend::cuda::CudaDevice::default();
    let c = config(PositionKind::Rope);
    let t = TrainConfig { device: Device::Cuda, dtype: Dtype::Bf16, ..Default::default() };
    let v: Vec<i64> = (0..2 * 97).map(|i| ((i as u64 * 2654435761) % 256) as i64).collect();
    let x = Tensor::<GpuTrain, 2, Int>::from_data(TensorData::new(v, [2, 97]), &dev);
    let loss = |m: &BakaLM<GpuTrain>| crate::train::batch_loss(m, x.clone().narrow(1, 0, 96), x.clone().narrow(1, 1, 96));
    let mut model = BakaLM::<GpuTrain>::new(&c, &MemoryConfig::default(), 7, &dev).with_kernels(t.dtype.float(), t.kernels());
    let mut optim = AdamW::<GpuTrain>::new(&t);
    let mut last = f32::NAN;
    for step in 0..3 {
        let grads = GradientsParams::from_grads(loss(&model).backward(), &model);
        model = optim.step(1e-2, GradScale::By(1.0), model, grads);
        let kept: f32 = loss(&model).into_scalar().elem();
        let fresh: f32 = loss(&model.clone().map(&mut Fresh)).into_scalar().elem();
        eprintln!("step {step}: loss with AdamW's copies {kept}, cast afresh {fresh}");
        assert_eq!(kept.to_bits(), fresh.to_bits(), "step {step}: the loss with AdamW's copies {kept} differs from the weights cast afresh {fresh}");
        assert_ne!(kept, last, "step {step}: the weights did not change");
        last = kept;
    }
}
