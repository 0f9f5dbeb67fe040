//! Position tables for the kernels' tests: RoPE, xPos (q and k tables differ), ALiBi (a per-head
//! bias), linspace (a ramp added to k) and none, over `l` plain positions. The model builds its own (`model::positions`); these
//! only give the ops inputs of each kind.

use crate::ops::Positions;
use crate::reference::to;
use burn::prelude::*;
use burn::tensor::FloatDType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Nope,
    Rope,
    Xpos,
    Alibi,
    Linspace,
}

/// Tables of `scheme` for positions `first..first + l`, `heads` heads of `hd`: RoPE angles
/// `p · base^(−2i/hd)`, xPos's decay `ζ_i^(±(p − centre)/scale_base)`, ALiBi slopes `2^(−8k/heads)`,
/// linspace's ramp `0.5 · t/(l − 1)` `[1, l, 1]`.
#[allow(clippy::too_many_arguments)]
pub fn positions<B: Backend>(scheme: Scheme, l: usize, first: usize, heads: usize, hd: usize, base: f64, scale_base: f64, dt: FloatDType, dev: &B::Device) -> Positions<B> {
    let half = hd / 2;
    let centre = (first + l / 2) as f64;
    let rot = |sign: f64| {
        let (mut c, mut s) = (vec![0f32; l * hd], vec![0f32; l * hd]);
        for t in 0..l {
            let p = (first + t) as f64;
            for i in 0..half {
                let theta = p * base.powf(-2.0 * i as f64 / hd as f64);
                let zeta = (2.0 * i as f64 / hd as f64 + 0.4) / 1.4;
                let decay = if scheme == Scheme::Xpos { zeta.powf(sign * (p - centre) / scale_base) } else { 1.0 };
                for j in [i, i + half] {
                    c[t * hd + j] = (theta.cos() * decay) as f32;
                    s[t * hd + j] = (theta.sin() * decay) as f32;
                }
            }
        }
        let mk = |v: Vec<f32>| to(Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, l, hd]), dev), dt);
        (mk(c), mk(s))
    };
    let rotates = matches!(scheme, Scheme::Rope | Scheme::Xpos);
    let slopes: Vec<f64> = if scheme == Scheme::Alibi { (1..=heads).map(|k| 2f64.powf(-8.0 * k as f64 / heads as f64)).collect() } else { vec![0.0] };
    let hb = slopes.len();
    let mut bias = vec![0f32; hb * l * l];
    for (h, m) in slopes.iter().enumerate() {
        for i in 0..l {
            for j in 0..l {
                bias[(h * l + i) * l + j] = if j > i { f32::NEG_INFINITY } else { (-m * (i as f64 - j as f64)) as f32 };
            }
        }
    }
    Positions {
        rot_q: rotates.then(|| rot(1.0)),
        rot_k: rotates.then(|| rot(-1.0)),
        bias: to(Tensor::from_data(TensorData::new(bias, [1, hb, l, l]), dev), dt),
        slopes_pos: (scheme == Scheme::Alibi).then(|| {
            let v: Vec<f32> = slopes.iter().map(|&m| m as f32).chain((first..first + l).map(|p| p as f32)).collect();
            Tensor::from_data(TensorData::new(v, [heads + l]), dev)
        }),
        k_ramp: (scheme == Scheme::Linspace).then(|| {
            let ramp = (0..l).map(|t| 0.5 * t as f32 / (l - 1).max(1) as f32).collect::<Vec<_>>();
            to(Tensor::from_data(TensorData::new(ramp, [1, l, 1]), dev), dt)
        }),
    }
}
