//! The attention kernels on CUDA against burn's steps of the same ops (`prims`), like the other
//! kernels' tests in `model::gpu_tests` (run them with `cargo test --release --features cuda --lib gpu_`).

use crate::attention_block::Consts as AttnConsts;
use crate::backend::GpuTrain;
use crate::test_positions::{positions, Scheme};
use burn::prelude::*;

type G = crate::backend::Gpu;
type C = crate::backend::Cpu;

/// `len` fixed values in [−amp, amp) (a multiplicative hash of the index and `seed`).
fn values(len: usize, seed: u64, amp: f32) -> Vec<f32> {
    (0..len).map(|i| ((((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0) * amp).collect()
}

/// `t` in f32 on the CPU: the reference steps' input, from the same (rounded) values.
fn cpu<const D: usize>(t: &Tensor<G, D>) -> Tensor<C, D> {
    Tensor::from_data(t.clone().cast(burn::tensor::FloatDType::F32).into_data().convert::<f32>(), &Default::default())
}

/// The attention sublayer's constants for positions `kind` at length `l` (`heads` of `hd`): q and
/// k tables in bf16 on the GPU, ALiBi if any, `1/√hd`; and the same on the CPU.
fn attn_consts(kind: Scheme, l: usize, heads: usize, hd: usize) -> (AttnConsts<G>, AttnConsts<C>) {
    let t = positions::<G>(kind, l, 0, heads, hd, 1e4, 512.0, burn::tensor::FloatDType::BF16, &Default::default());
    let c = AttnConsts { rot: [t.rot_q.clone(), t.rot_k.clone()], alibi: t.alibi(), heads, scale: 1.0 / (hd as f32).sqrt() };
    let rot = |r: &Option<(Tensor<G, 4>, Tensor<G, 4>)>| r.as_ref().map(|(a, s)| (cpu(a), cpu(s)));
    let c0 = AttnConsts { rot: [rot(&c.rot[0]), rot(&c.rot[1])], alibi: c.alibi.as_ref().map(|a| crate::prims::Alibi { table: cpu(&a.table), slopes_pos: cpu(&a.slopes_pos) }), heads, scale: c.scale };
    (c, c0)
}

/// The relative L2 error of `a` against `b`.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let n: f32 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// Prints `what`'s relative L2 error of the kernels' `got` against burn's `want` and asserts it
/// is below `tol`, with the same length and every value finite.
fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let r = rel(got, want);
    eprintln!("{what}: kernels vs burn rel {r:.2e}");
    assert!(got.len() == want.len() && got.iter().all(|x| x.is_finite()) && r < tol, "{what}: rel {r}");
}

/// The fused attention's CUDA kernels against the same op with burn's steps (`prims`), forward and
/// the three gradients: a causal + per-head (ALiBi-like) bias, rows that are not a multiple of the
/// warp, f32 and bf16; rows of up to 70 keys here, longer ones below.
#[test]
fn gpu_attention_kernels_match_burns_steps() {
    attention_cases(&[(2, 3, 37, 16, true), (3, 4, 70, 8, false), (2, 2, 64, 16, true)]);
}

/// The same for rows of the other two kernel sizes: ≤ 1024 keys (a row in registers) and longer
/// (the looping kernels). Each side's time is printed: on H100s this test has not finished within
/// 240 s, stalling in its 600-key case, while training through these kernels at 600 and 1,100 keys
/// takes a second (docs/performance.md).
#[test]
fn gpu_attention_kernels_match_burns_steps_on_long_rows() {
    attention_cases(&[(1, 2, 600, 8, true), (1, 1, 1100, 8, false)]);
}

/// `(b, heads, L, hd, per-head bias)` cases of the two attention tests above: rows of a multiple
/// of 8 keys take the 16-byte-access (`_v`) kernels.
fn attention_cases(cases: &[(usize, usize, usize, usize, bool)]) {
    let _serial = crate::serial();
    use crate::attention::attention_ad;
    let dev = burn::backend::cuda::CudaDevice::default();
    for &(b, h, l, hd, per_head) in cases {
        let hb = if per_head { h } else { 1 };
        let mut bias = vec![0f32; hb * l * l];
        for (hh, i, j) in (0..hb).flat_map(|hh| (0..l).flat_map(move |i| (0..l).map(move |j| (hh, i, j)))) {
            bias[(hh * l + i) * l + j] = if j > i { f32::NEG_INFINITY } else { -0.05 * (hh + 1) as f32 * (i - j) as f32 };
        }
        let data = |seed: u64| -> Vec<f32> { (0..b * h * l * hd).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0).collect() };
        for dt in [burn::tensor::FloatDType::F32, burn::tensor::FloatDType::BF16] {
            let bias_t = Tensor::<crate::backend::Gpu, 4>::from_data(TensorData::new(bias.clone(), [1, hb, l, l]), &dev).cast(dt);
            let run = |fused: bool| {
                let side = if fused { "kernels" } else { "burn's steps" };
                eprintln!("attention [{b}·{h}, {l}, {hd}] {dt:?}: {side}…");
                let start = std::time::Instant::now();
                let t = |s| Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(s), [b * h, l, hd]), &dev).cast(dt).require_grad();
                let (q, k, v) = (t(1), t(2), t(3));
                let y = attention_ad(q.clone(), k.clone(), v.clone(), bias_t.clone(), None, h, 0.3, fused, crate::attention::Path::Gemm);
                let w = Tensor::<GpuTrain, 3>::from_data(TensorData::new(data(4), [b * h, l, hd]), &dev).cast(dt);
                let g = (y.clone() * w).sum().backward();
                let v32 = |t: Tensor<crate::backend::Gpu, 3>| t.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap();
                let out = [v32(y.inner()), v32(q.grad(&g).unwrap()), v32(k.grad(&g).unwrap()), v32(v.grad(&g).unwrap())];
                eprintln!("attention [{b}·{h}, {l}, {hd}] {dt:?}: {side} in {:.1} s", start.elapsed().as_secs_f32());
                out
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
/// log-sum-exp and the three gradients; head dims 32 and 64 (on Hopper: `mma.sync` and `wgmma`),
/// lengths that are and are not multiples of the 64-row tile, with ALiBi (computed by the kernels
/// from slopes and positions, some slots without one; the reference adds it as an f32 table) or
/// the causal mask alone.
#[test]
fn gpu_flash_attention_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::prims::{flash_bwd, flash_fwd};
    use burn::tensor::FloatDType::{BF16, F32};
    type G = crate::backend::Gpu;
    type C = crate::backend::Cpu;
    let dev = burn::backend::cuda::CudaDevice::default();
    // (b, heads, L, hd, ALiBi: 0 none, 1 at positions 0.., 2 at positions 1000.. with every 9th
    // slot unpositioned, as memory tokens)
    for (b, h, l, hd, alibi) in [(2, 3, 37, 64, 2), (2, 2, 200, 32, 1), (1, 4, 512, 64, 0), (3, 2, 128, 64, 2), (2, 2, 100, 32, 0), (2, 2, 200, 64, 1), (2, 2, 100, 64, 0)] {
        let slopes = (0..h).map(|hh| 0.3 / (hh + 1) as f32);
        let pos = (0..l).map(|i| if alibi == 2 && i % 9 == 4 { f32::NAN } else { (i + 1000 * (alibi == 2) as usize) as f32 });
        let slopes_pos: Vec<f32> = slopes.chain(pos).collect();
        // the same bias as a table, in f32 (the kernels compute it in f32)
        let mut table = vec![0f32; h * l * l];
        for (hh, i, j) in (0..h).flat_map(|hh| (0..l).flat_map(move |i| (0..l).map(move |j| (hh, i, j)))) {
            let d = slopes_pos[h + j] - slopes_pos[h + i];
            table[(hh * l + i) * l + j] = if j > i {
                f32::NEG_INFINITY
            } else if d.is_nan() {
                0.0
            } else {
                slopes_pos[hh] * d
            };
        }
        let bc = (alibi > 0).then(|| Tensor::<C, 4>::from_data(TensorData::new(table, [1, h, l, l]), &Default::default()));
        let bias = (alibi > 0).then(|| crate::prims::Alibi {
            table: Tensor::<G, 4>::from_data(bc.clone().expect("table").into_data(), &dev).cast(BF16),
            slopes_pos: Tensor::<G, 1>::from_data(TensorData::new(slopes_pos, [h + l]), &dev),
        });
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
        let (o, lse) = <crate::backend::Gpu as crate::inner::Prims>::flash_fwd(q.clone(), k.clone(), v.clone(), bias.clone(), 0.3, h, true);
        let g = <crate::backend::Gpu as crate::inner::Prims>::flash_bwd(q.clone(), k.clone(), v.clone(), o.clone(), lse.clone(), dout.clone(), bias.clone(), 0.3, h, true);
        let [qc, kc, vc, dc] = [&q, &k, &v, &dout].map(to_cpu);
        let (o_ref, lse_ref) = flash_fwd(qc.clone(), kc.clone(), vc.clone(), bc.clone(), 0.3, h);
        // the backward's reference from the kernel's (bf16) output: its own contract, and delta's
        // rounding cancels where a peaked row makes dP − delta small
        let g_ref = flash_bwd(qc, kc, vc, to_cpu(&o), lse_ref.clone(), dc, bc, 0.3, h);
        let mut pairs = vec![("o", vec(o), cvec(o_ref)), ("lse", vec(lse.unsqueeze_dim(2)), cvec(lse_ref.unsqueeze_dim(2)))];
        for ((what, got), want) in ["dq", "dk", "dv"].into_iter().zip(g).zip(g_ref) {
            pairs.push((what, vec(got), cvec(want)));
        }
        for (what, got, want) in pairs {
            close(&format!("flash [{b}·{h}, {l}, {hd}] ALiBi {alibi} {what}"), &got, &want, 1e-2);
        }
    }
}

/// The LM head + cross-entropy op's kernels (`head::head_ce`: cuBLAS GEMMs and `ce_grad` over row
/// chunks) against burn's steps of the same op in f32 on the CPU from the same rounded values:
/// losses, `dx` and `dw`; chunks that do and do not divide the rows, vocabularies that are and are
/// not a multiple of the 16-byte access, bf16 and f32, rows that fit in shared memory (`ce_grad_rows`:
/// up to the pristine vocabulary, 50304; with chunks of more rows than the GPU has SMs, each block
/// takes several in turn) and rows that do not (f32 at 40000, bf16 at 65536); and a
/// weight whose rows are padded (a column slice of a wider tensor, as cubecl may allocate a cast),
/// read in place with its row pitch (`nvrtc::compact_rows`).
#[test]
fn gpu_head_ce_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::prims::head_ce;
    use burn::tensor::FloatDType::{BF16, F32};
    type G = crate::backend::Gpu;
    type C = crate::backend::Cpu;
    let dev = burn::backend::cuda::CudaDevice::default();
    let cases = [(300, 64, 1000, 128, BF16, 0), (300, 64, 1001, 300, BF16, 0), (257, 32, 1000, 64, F32, 0), (64, 48, 517, 1000, BF16, 0), (40, 32, 50304, 32, BF16, 0), (600, 32, 50304, 300, BF16, 0)];
    let more = [(40, 32, 40000, 32, F32, 0), (24, 32, 65536, 24, BF16, 0), (100, 32, 1000, 64, F32, 24), (100, 32, 1000, 64, BF16, 8)];
    for (n, d, v, chunk, dt, pad) in cases.into_iter().chain(more) {
        // the weight as rounded to x's dtype, so both sides multiply the same values; with `pad`,
        // the first v columns of a [d, v + pad] tensor (rows v + pad apart)
        let x = Tensor::<G, 2>::from_data(TensorData::new(values(n * d, 1, 2.0), [n, d]), &dev).cast(dt);
        let wide = Tensor::<G, 2>::from_data(TensorData::new(values(d * (v + pad), 2, 0.3), [d, v + pad]), &dev).cast(dt).cast(F32);
        let w = wide.slice([0..d, 0..v]);
        let ts: Vec<i64> = (0..n).map(|i| (i as i64 * 7919) % v as i64).collect();
        let t = Tensor::<G, 1, Int>::from_data(TensorData::new(ts.clone(), [n]), &dev);
        let (l, dx, dw) = <crate::backend::Gpu as crate::inner::Prims>::head_ce(x.clone(), w.clone(), t, chunk, true);
        let tc = Tensor::<C, 1, Int>::from_data(TensorData::new(ts, [n]), &Default::default());
        let (l0, dx0, dw0) = head_ce(cpu(&x), cpu(&w), tc, chunk);
        let vec = |t: Tensor<G, 2>| t.cast(F32).into_data().to_vec::<f32>().unwrap();
        let cvec = |t: Tensor<C, 2>| t.into_data().to_vec::<f32>().unwrap();
        assert_eq!(dw.dtype(), burn::tensor::DType::F32, "dw lands in the master weight's dtype");
        let pairs = [("losses", vec(l.unsqueeze_dim(1)), cvec(l0.unsqueeze_dim(1))), ("dx", vec(dx), cvec(dx0)), ("dw", vec(dw), cvec(dw0))];
        for (what, got, want) in pairs {
            close(&format!("head_ce [{n}, {d}]·[{d}, {v}] chunk {chunk} {dt:?} pad {pad} {what}"), &got, &want, 1e-2);
        }
    }
}

/// `scale_by` (the head's gradients times the loss's upstream gradient): in place where the
/// tensor is its own, a fresh one where it is shared (the shared one left as it was), for g = 1
/// (where in place is no pass at all) and other values, f32 and bf16.
#[test]
fn gpu_scale_by_matches_the_product_and_spares_shared_tensors() {
    let _serial = crate::serial();
    use burn::tensor::FloatDType::{BF16, F32};
    type P = crate::backend::Gpu;
    let dev = burn::backend::cuda::CudaDevice::default();
    let vec = |t: Tensor<G, 2>| t.cast(F32).into_data().to_vec::<f32>().unwrap();
    for dt in [F32, BF16] {
        for s in [1.0f32, 0.5, -3.0] {
            let x = Tensor::<G, 2>::from_data(TensorData::new(values(37 * 11, 5, 2.0), [37, 11]), &dev).cast(dt);
            let g = Tensor::<G, 1>::from_data(TensorData::new(vec![s], [1]), &dev);
            let before = vec(x.clone());
            let want: Vec<f32> = before.iter().map(|v| v * s).collect();
            let shared = <P as crate::inner::Prims>::scale_by(x.clone(), g.clone(), true);
            close(&format!("scale_by {dt:?} × {s} shared"), &vec(shared), &want, 1e-2);
            assert_eq!(vec(x.clone()), before, "scale_by {dt:?} × {s}: a shared tensor changed");
            let own = <P as crate::inner::Prims>::scale_by(x, g, true);
            close(&format!("scale_by {dt:?} × {s} own"), &vec(own), &want, 1e-2);
        }
    }
}

/// The fused MLP's CUDA steps (`mlp::cuda`: cuBLAS GEMMs and the `glu`/`cast_many` kernels) against
/// burn's steps of the same op in f32 on the CPU from the same rounded values: `y`, `h`, and the
/// four gradients; `d_ff` a multiple of the 16-byte access and not, bf16 and f32, and on Hopper a
/// shape `glu_bwd_gemm` takes (d a multiple of 64, d_ff of 128; rows off its 128-row tile).
#[test]
fn gpu_mlp_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::prims::{mlp_bwd, mlp_fwd};
    use burn::tensor::FloatDType::{BF16, F32};
    type G = crate::backend::Gpu;
    type C = crate::backend::Cpu;
    let dev = burn::backend::cuda::CudaDevice::default();
    for (n, d, f, dt) in [(300, 64, 96, BF16), (200, 32, 100, BF16), (130, 48, 64, F32), (300, 128, 256, BF16)] {
        let t = |shape: [usize; 2], seed, amp| Tensor::<G, 2>::from_data(TensorData::new(values(shape[0] * shape[1], seed, amp), shape), &dev).cast(dt);
        // weights as rounded to the compute dtype, so both sides multiply the same values
        let (x, dy) = (t([n, d], 1, 2.0), t([n, d], 5, 1.0));
        let [wg, wu, wd] = [([d, f], 2), ([d, f], 3), ([f, d], 4)].map(|(s, k)| t(s, k, 0.3).cast(F32));
        let (y, h, wcat, wdc) = <crate::backend::Gpu as crate::inner::Prims>::mlp_fwd(x.clone(), wg.clone(), wu.clone(), wd.clone(), true);
        let (dx, dwg, dwu, dwd) = <crate::backend::Gpu as crate::inner::Prims>::mlp_bwd(dy.clone(), x.clone(), h.clone(), wcat, wdc, burn::tensor::DType::F32, true);
        let (y0, h0, wcat0, wdc0) = mlp_fwd(cpu(&x), cpu(&wg), cpu(&wu), cpu(&wd));
        let (dx0, dwg0, dwu0, dwd0) = mlp_bwd(cpu(&dy), cpu(&x), h0.clone(), wcat0, wdc0, burn::tensor::DType::F32);
        let vec = |t: Tensor<G, 2>| t.cast(F32).into_data().to_vec::<f32>().unwrap();
        let cvec = |t: Tensor<C, 2>| t.into_data().to_vec::<f32>().unwrap();
        assert!([&dwg, &dwu, &dwd].iter().all(|w| w.dtype() == burn::tensor::DType::F32), "weight gradients land in the masters' dtype");
        let pairs = [("y", y, y0), ("h", h, h0), ("dx", dx, dx0), ("dwg", dwg, dwg0), ("dwu", dwu, dwu0), ("dwd", dwd, dwd0)];
        for (what, got, want) in pairs {
            close(&format!("mlp [{n}, {d}] d_ff {f} {dt:?} {what}"), &vec(got), &cvec(want), 2e-2);
        }
    }
}

/// `glu_bwd_gemm` (sm_90: the MLP's `gs = dy · wdᵀ` and the gate's backward in one kernel) against cuBLAS + `glu_bwd` (`BAKA_GLU_GEMM=0`) on the same bf16 inputs: the four
/// gradients agree up to the GEMM's order of summation, at a small shape with rows off the 128-row
/// tile and at the pristine widths; the kernel's launch count says it ran.
#[test]
fn gpu_glu_gemm_matches_cublas_and_glu_bwd() {
    let _serial = crate::serial();
    if crate::nvrtc::capability() != (9, 0) {
        eprintln!("skipped: glu_bwd_gemm runs on compute capability 9.0 only");
        return;
    }
    use burn::tensor::FloatDType::{BF16, F32};
    let dev = burn::backend::cuda::CudaDevice::default();
    for (n, d, f) in [(300, 128, 256), (4096, 768, 3072)] {
        let t = |shape: [usize; 2], seed, amp| Tensor::<G, 2>::from_data(TensorData::new(values(shape[0] * shape[1], seed, amp), shape), &dev).cast(BF16);
        let (x, dy) = (t([n, d], 1, 2.0), t([n, d], 5, 1.0));
        let [wg, wu, wd] = [([d, f], 2), ([d, f], 3), ([f, d], 4)].map(|(s, k)| t(s, k, 0.3).cast(F32));
        let (_, h, wcat, wdc) = <G as crate::inner::Prims>::mlp_fwd(x.clone(), wg, wu, wd, true);
        let run = |fused: bool| {
            let _switch = crate::env::GLU_GEMM.scoped(fused);
            let (dx, dwg, dwu, dwd) = <G as crate::inner::Prims>::mlp_bwd(dy.clone(), x.clone(), h.clone(), wcat.clone(), wdc.clone(), burn::tensor::DType::F32, true);
            [dx, dwg, dwu, dwd].map(|t| t.cast(F32).into_data().to_vec::<f32>().unwrap())
        };
        let launches = || crate::mlp::cuda::GLU_GEMM_LAUNCHES.load(std::sync::atomic::Ordering::Relaxed);
        let before = launches();
        let fused = run(true);
        let between = launches();
        let plain = run(false);
        assert!(between > before && launches() == between, "glu_bwd_gemm must run with BAKA_GLU_GEMM=1 and only then");
        for (what, (a, b)) in ["dx", "dwg", "dwu", "dwd"].iter().zip(fused.iter().zip(&plain)) {
            close(&format!("glu_bwd_gemm [{n}, {d}] d_ff {f} {what} (vs cuBLAS + glu_bwd)"), a, b, 4e-3);
        }
    }
}

/// The attention sublayer's CUDA steps (`attention_block::cuda`: the fused q/k/v GEMM, head
/// kernels reading and writing it in place, flash, the batched weight gradients) against burn's
/// steps of the same op in f32 on the CPU from the same bf16 values: `y` and the five gradients;
/// head dims 64 and 32, RoPE, xPos (q and k tables differ) and ALiBi (a per-head bias), lengths on
/// and off the 64-row tile.
#[test]
fn gpu_attention_block_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::attention_block::{block_bwd, block_fwd};
    use burn::tensor::FloatDType::{BF16, F32};
    let dev = burn::backend::cuda::CudaDevice::default();
    for (b, l, d, heads, kind) in [(2, 100, 128, 2, Scheme::Xpos), (2, 64, 64, 2, Scheme::Alibi), (1, 200, 64, 2, Scheme::Rope)] {
        let (c, c0) = attn_consts(kind, l, heads, d / heads);
        let x = |shape: [usize; 3], seed, amp| Tensor::<G, 3>::from_data(TensorData::new(values(shape.iter().product(), seed, amp), shape), &dev).cast(BF16);
        let (h, dy) = (x([b, l, d], 1, 1.0), x([b, l, d], 7, 1.0));
        // weights as rounded to bf16, so both sides multiply the same values
        let ws = [2, 3, 4, 5].map(|k| Tensor::<G, 2>::from_data(TensorData::new(values(d * d, k, 0.2), [d, d]), &dev).cast(BF16).cast(F32));
        let (y, saved) = <crate::backend::Gpu as crate::inner::Prims>::block_fwd(h.clone(), ws.clone(), None, &c, true);
        let (dh, dws, _) = <crate::backend::Gpu as crate::inner::Prims>::block_bwd(dy.clone(), h.clone(), saved, &c, burn::tensor::DType::F32, false, true);
        let (y0, saved0) = block_fwd(cpu(&h), ws.each_ref().map(cpu), None, &c0);
        let (dh0, dws0, _) = block_bwd(cpu(&dy), cpu(&h), saved0, &c0, burn::tensor::DType::F32, false);
        let v3 = |t: Tensor<G, 3>| t.cast(F32).into_data().to_vec::<f32>().unwrap();
        let c3 = |t: Tensor<C, 3>| t.into_data().to_vec::<f32>().unwrap();
        let mut pairs = vec![("y", v3(y), c3(y0)), ("dh", v3(dh), c3(dh0))];
        for ((what, g), w) in ["dwq", "dwk", "dwv", "dwo"].into_iter().zip(dws).zip(dws0) {
            assert_eq!(g.dtype(), burn::tensor::DType::F32, "{what} lands in the master weight's dtype");
            pairs.push((what, g.into_data().to_vec::<f32>().unwrap(), w.into_data().to_vec::<f32>().unwrap()));
        }
        for (what, got, want) in pairs {
            close(&format!("attention block [{b}, {l}, {d}] {heads} heads {kind:?} {what}"), &got, &want, 2e-2);
        }
    }
}

/// The layer op's CUDA steps (`layer::cuda`: norm, attention and MLP steps with the residual
/// folded into their GEMMs and the norms' backward) against burn's steps of the same op in f32
/// on the CPU from the same bf16 values: `y` and every gradient; LayerNorm with RoPE, RMSNorm with
/// ALiBi, LayerNorm with a key term (linspace's ramp ⊗ scale) and its gradient, a length off the
/// 64-row tile, xPos with a d_ff whose 3d + 2F is no multiple of 8 (the parallel layer's rows
/// padded: `layer_parallel::stride`); the parallel residual and the sequential one (the MLP's own
/// norm) each.
#[test]
fn gpu_layer_kernels_match_burns_steps() {
    let _serial = crate::serial();
    use crate::layer::{layer_bwd, layer_fwd, Consts, Weights};
    use burn::tensor::FloatDType::{BF16, F32};
    let dev = burn::backend::cuda::CudaDevice::default();
    let cases = [(2, 100, 128, 192, 2, Scheme::Rope, true), (1, 64, 64, 200, 2, Scheme::Alibi, false), (3, 70, 64, 128, 2, Scheme::Linspace, true), (1, 40, 64, 150, 2, Scheme::Xpos, true)];
    for ((b, l, d, f, heads, kind, layer), seq) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let (attn, attn0) = attn_consts(kind, l, heads, d / heads);
        let x = |shape: [usize; 3], seed, amp| Tensor::<G, 3>::from_data(TensorData::new(values(shape.iter().product(), seed, amp), shape), &dev).cast(BF16);
        let (h, dy) = (x([b, l, d], 1, 1.0), x([b, l, d], 7, 1.0));
        // weights as rounded to bf16, so both sides multiply the same values
        let m = |shape: [usize; 2], k| Tensor::<G, 2>::from_data(TensorData::new(values(shape[0] * shape[1], k, 0.2), shape), &dev).cast(BF16).cast(F32);
        let v1 = |k, off: f32| Tensor::<G, 1>::from_data(TensorData::new(values(d, k, 0.5), [d]), &dev).add_scalar(off);
        let k_add = (kind == Scheme::Linspace).then(|| Tensor::<G, 2>::from_data(TensorData::new(values(l * d, 13, 0.5), [l, d]), &dev).cast(BF16));
        let mlp_norm = seq.then(|| (v1(14, 0.8), layer.then(|| v1(15, 0.0))));
        let w = Weights { norm: (v1(11, 1.0), layer.then(|| v1(12, 0.0))), attn: [2, 3, 4, 5].map(|k| m([d, d], k)), mlp: [m([d, f], 8), m([d, f], 9), m([f, d], 10)], mlp_norm, k_add };
        let (c, c0) = (Consts { attn, eps: 1e-5 }, Consts { attn: attn0, eps: 1e-5 });
        let norm0 = |(w, b): &(Tensor<G, 1>, Option<Tensor<G, 1>>)| (cpu(w), b.as_ref().map(cpu));
        let w0 = Weights { norm: norm0(&w.norm), attn: w.attn.each_ref().map(cpu), mlp: w.mlp.each_ref().map(cpu), mlp_norm: w.mlp_norm.as_ref().map(norm0), k_add: w.k_add.as_ref().map(cpu) };
        let nw = w.norm.0.clone();
        let (y, saved) = <crate::backend::Gpu as crate::inner::Prims>::layer_fwd(h.clone(), w, &c, true);
        let crate::layer::Grads { dx, norm: dn, mats: dws, k_add: dk } =
            <crate::backend::Gpu as crate::inner::Prims>::layer_bwd(dy.clone(), h.clone(), nw.clone(), saved, &c, layer, burn::tensor::DType::F32, true);
        let (y0, saved0) = layer_fwd(cpu(&h), w0, &c0);
        let crate::layer::Grads { dx: dx0, norm: dn0, mats: dws0, k_add: dk0 } = layer_bwd(cpu(&dy), cpu(&h), cpu(&nw), saved0, &c0, layer, burn::tensor::DType::F32);
        let v = |t: TensorData| t.convert::<f32>().to_vec::<f32>().unwrap();
        let mut pairs = vec![("y".to_string(), v(y.cast(F32).into_data()), v(y0.into_data())), ("dx".into(), v(dx.cast(F32).into_data()), v(dx0.into_data()))];
        assert_eq!(dn.len(), (1 + layer as usize) * (1 + seq as usize));
        pairs.extend(dn.into_iter().zip(dn0).enumerate().map(|(i, (g, w))| (format!("norm grad {i}"), v(g.into_data()), v(w.into_data()))));
        for (i, (g, w)) in dws.into_iter().zip(dws0).enumerate() {
            assert_eq!(g.dtype(), burn::tensor::DType::F32, "weight gradient {i} lands in the master's dtype");
            pairs.push((format!("weight grad {i}"), v(g.into_data()), v(w.into_data())));
        }
        assert_eq!(dk.is_some(), kind == Scheme::Linspace);
        assert!(dk.as_ref().is_none_or(|g| g.dtype() == burn::tensor::DType::BF16), "the key term's gradient in the activations' dtype");
        pairs.extend(dk.zip(dk0).map(|(g, w)| ("k_add grad".to_string(), v(g.cast(F32).into_data()), v(w.into_data()))));
        for (what, got, want) in pairs {
            close(&format!("layer [{b}, {l}, {d}] d_ff {f} {kind:?} layernorm {layer} sequential {seq} {what}"), &got, &want, 2e-2);
        }
    }
}

/// NCCL's path of a data-parallel run with one rank (a one-GPU machine): libnccl loads, the
/// communicator is made on cubecl's device thread at the first all-reduce, and the mean over one
/// rank of f32 and bf16 tensors (through the fusion op, as the trainer calls it) is each tensor.
#[test]
fn gpu_nccl_all_reduce_of_one_rank_returns_its_tensors() {
    use crate::inner::Prims;
    use burn::tensor::TensorPrimitive;
    let _serial = crate::serial();
    let dev = burn::backend::cuda::CudaDevice::default();
    let id = crate::nccl::unique_id().unwrap_or_else(|e| panic!("{e}"));
    crate::nccl::configure(0, 1, id);
    let a = Tensor::<G, 1>::from_floats(values(1000, 1, 3.0).as_slice(), &dev).reshape([10, 100]);
    let b = Tensor::<G, 1>::from_floats(values(77, 2, 1.0).as_slice(), &dev).reshape([7, 11]).cast(burn::tensor::FloatDType::BF16);
    let want = [a.clone().into_data().convert::<f32>().to_vec::<f32>().unwrap(), b.clone().cast(burn::tensor::FloatDType::F32).into_data().convert::<f32>().to_vec::<f32>().unwrap()];
    assert!(<G as Prims>::has_collective(), "configured: the device path");
    let out = <G as Prims>::all_reduce_mean(vec![a.into_primitive().tensor(), b.into_primitive().tensor()]);
    let got: Vec<Vec<f32>> = out
        .into_iter()
        .map(|t| Tensor::<G, 2>::from_primitive(TensorPrimitive::Float(t)).flatten::<1>(0, 1).cast(burn::tensor::FloatDType::F32).into_data().convert::<f32>().to_vec::<f32>().unwrap())
        .collect();
    assert_eq!(got[0], want[0]);
    assert_eq!(got[1], want[1]);
}
