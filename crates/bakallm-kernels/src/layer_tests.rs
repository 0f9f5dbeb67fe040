//! The layer op's burn steps against the reference layers through autodiff.

use crate::backend::CpuTrain;
use crate::ops::{AttnWeights, Kernels, MlpWeights, NormWeights, Positions, Rot};
use crate::test_positions::{positions, Scheme};
use burn::prelude::*;

/// The op (its burn steps and hand-written backward) equals the reference layer in burn's ops
/// (`reference::parallel_layer`, `sequential_layer`) through autodiff, for LayerNorm with RoPE,
/// RMSNorm with ALiBi and either norm with linspace (its ramp times a learned scale added to k),
/// each with the parallel and the sequential residual (a second norm; 9 to 14 tracked inputs):
/// output and every gradient, the scales' included.
#[test]
fn layer_op_matches_the_reference_layer() {
    let _serial = crate::serial();
    let dev = Default::default();
    let (b, l, d, f, heads) = (2, 5, 8, 12, 2);
    let data = crate::test_values;
    let cases = [(Scheme::Rope, true), (Scheme::Alibi, false), (Scheme::Linspace, true), (Scheme::Linspace, false)];
    for ((kind, layer), seq) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let linspace = kind == Scheme::Linspace;
        let t = positions::<crate::backend::Cpu>(kind, l, 0, heads, d / heads, 1e4, 512.0, burn::tensor::FloatDType::F32, &dev);
        let ac = super::attn::Consts { rot: [t.rot_q.clone(), t.rot_k.clone()], alibi: t.alibi(), heads, scale: 0.5 };
        let up = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 9), &dev).reshape([b, l, d]);
        let run = |ours: bool| {
            let m = |len, k, shape: [usize; 2]| Tensor::<CpuTrain, 1>::from_data(data(len, k), &dev).reshape(shape).require_grad();
            let x = Tensor::<CpuTrain, 1>::from_data(data(b * l * d, 1), &dev).reshape([b, l, d]).require_grad();
            let nw = Tensor::<CpuTrain, 1>::from_data(data(d, 2), &dev).add_scalar(1.5).require_grad();
            let nb = layer.then(|| Tensor::<CpuTrain, 1>::from_data(data(d, 3), &dev).require_grad());
            // the MLP's own norm (sequential), of the same kind
            let nw2 = seq.then(|| Tensor::<CpuTrain, 1>::from_data(data(d, 13), &dev).add_scalar(0.8).require_grad());
            let nb2 = (seq && layer).then(|| Tensor::<CpuTrain, 1>::from_data(data(d, 14), &dev).require_grad());
            let attn = [4, 5, 6, 7].map(|k| m(d * d, k, [d, d]));
            let mlp = [m(d * f, 8, [d, f]), m(d * f, 10, [d, f]), m(f * d, 11, [f, d])];
            let scale = linspace.then(|| m(d, 12, [1, d]));
            let ramp = t.k_ramp.clone().map(Tensor::<CpuTrain, 3>::from_inner);
            let y = if ours {
                let k_add = ramp.clone().zip(scale.clone()).map(|(r, s)| (r * s.unsqueeze::<3>()).reshape([l, d]));
                let mlp_norm = nw2.clone().map(|w| (w, nb2.clone()));
                let w = super::Weights { norm: (nw.clone(), nb.clone()), attn: attn.clone(), mlp: mlp.clone(), mlp_norm, k_add };
                super::layer_ad(x.clone(), w, super::Consts { attn: ac.clone(), eps: 1e-5 }, false)
            } else {
                // the reference (`reference::parallel_layer`, `sequential_layer`: burn's ops), differentiated by autodiff
                let lift = |r: &Rot<crate::backend::Cpu>| r.as_ref().map(|(c, s)| (Tensor::from_inner(c.clone()), Tensor::from_inner(s.clone())));
                let pos = Positions::<CpuTrain> {
                    rot_q: lift(&t.rot_q),
                    rot_k: lift(&t.rot_k),
                    bias: Tensor::from_inner(t.bias.clone()),
                    slopes_pos: t.slopes_pos.clone().map(Tensor::from_inner),
                    k_ramp: ramp.clone(),
                };
                let n = NormWeights { weight: nw.clone(), bias: nb.clone(), eps: 1e-5 };
                let a = AttnWeights { q: attn[0].clone(), k: attn[1].clone(), v: attn[2].clone(), o: attn[3].clone(), k_scale: scale.clone(), heads };
                let m = MlpWeights { gate: mlp[0].clone(), up: mlp[1].clone(), down: mlp[2].clone() };
                match &nw2 {
                    None => crate::reference::parallel_layer(x.clone(), &n, &a, &m, &pos, &Kernels::REFERENCE),
                    Some(w2) => {
                        let n2 = NormWeights { weight: w2.clone(), bias: nb2.clone(), eps: 1e-5 };
                        crate::reference::sequential_layer(x.clone(), &n, &a, &n2, &m, &pos, &Kernels::REFERENCE)
                    }
                }
            };
            let grads = (y.clone() * up.clone()).sum().backward();
            let v = |t: TensorData| t.to_vec::<f32>().unwrap();
            let mut all = vec![v(y.into_data()), v(x.grad(&grads).unwrap().into_data()), v(nw.grad(&grads).unwrap().into_data())];
            all.extend(nb.iter().chain(&nw2).chain(&nb2).map(|t| v(t.grad(&grads).unwrap().into_data())));
            all.extend(attn.iter().chain(&mlp).chain(&scale).map(|t| v(t.grad(&grads).unwrap().into_data())));
            all
        };
        let (ours, theirs) = (run(true), run(false));
        assert_eq!(ours.len(), 10 + (1 + layer as usize) * (1 + seq as usize) - 1 + linspace as usize);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4 * (1.0 + q.abs())), "{kind:?} sequential {seq} output {i}: {a:?} vs {b:?}");
            assert!(a.iter().any(|v| v.abs() > 1e-3), "{kind:?} sequential {seq} output {i} must not vanish");
        }
    }
}
