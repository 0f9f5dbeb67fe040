//! All position schemes behind one enum, chosen by `model.positions`.
//!
//! A window's sequence (tokens, plus RMT memory slots) is described by a [`Layout`]: each slot
//! either has a position `p` or none (memory tokens are a summary, not tokens at a place).
//! [`tables`] turns a layout into the [`Positions`] every layer of that window shares: the one
//! description of a scheme that the reference and the kernels both consume.

use crate::kernels::ops::Positions;
use crate::kernels::reference::to;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Which positional signal the attention gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PositionKind {
    /// No positional signal: the causal mask is the only source of order.
    Nope,
    /// Rotary embeddings (Su et al.), rotate-half (GPT-NeoX) layout, base `rope_base`.
    #[default]
    Rope,
    /// RoPE plus the xPos decay (Sun et al.), x-transformers' constants.
    Xpos,
    /// BakaLLM's linspace: K += linspace(o, o + edge, n)[t] * scale (learnable per layer).
    Linspace,
    /// ALiBi (Press et al.): fixed per-head linear bias −m_k·(i − j) on the logits.
    Alibi,
}

impl PositionKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Nope => "nope",
            Self::Rope => "rope",
            Self::Xpos => "xpos",
            Self::Linspace => "linspace",
            Self::Alibi => "alibi",
        }
    }
    pub fn rotates(self) -> bool {
        matches!(self, Self::Rope | Self::Xpos)
    }
}

/// Constants of the position schemes (mirrors `[model]` keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PosParams {
    pub kind: PositionKind,
    pub n_heads: usize,
    pub head_dim: usize,
    pub rope_base: f64,
    pub xpos_gamma: f64,
    pub xpos_scale_base: f64,
    pub linspace_edge: f64,
}

/// Positions of the slots of one window's sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// `Some(p)`: positioned at p; `None`: no positional signal (memory with positions = "none").
    pub pos: Vec<Option<f64>>,
    /// Position subtracted for xPos so powers stay small (x-transformers: seq_len // 2).
    pub centre: f64,
    /// Start `o` of the linspace ramp (0 unless global positions).
    pub linspace_start: f64,
    /// Number of positioned slots (the ramp's n).
    pub n_positioned: usize,
}

impl Layout {
    /// `n` window tokens at positions `first..first+n`, nothing else.
    pub fn plain(n: usize, first: usize) -> Self {
        Self::new((0..n).map(|t| Some((first + t) as f64)).collect(), first as f64, 0.0)
    }

    pub fn new(pos: Vec<Option<f64>>, first: f64, linspace_start: f64) -> Self {
        let n_positioned = pos.iter().filter(|p| p.is_some()).count();
        let centre = first + (n_positioned / 2) as f64;
        Self { pos, centre, linspace_start, n_positioned }
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }
}

/// ALiBi slopes for `h` heads (Press et al.; non-powers of two interleave the next power's slopes).
pub fn alibi_slopes(h: usize) -> Vec<f64> {
    fn pow2(n: usize) -> Vec<f64> {
        (1..=n).map(|k| 2f64.powf(-8.0 * k as f64 / n as f64)).collect()
    }
    if h.is_power_of_two() {
        return pow2(h);
    }
    let closest = 1usize << (usize::BITS - 1 - h.leading_zeros());
    let mut s = pow2(closest);
    s.extend(pow2(2 * closest).into_iter().step_by(2).take(h - closest));
    s
}

/// The tables of `layout` under scheme `p`, in the float dtype `dt` of the activations they meet:
/// q/k rotations (RoPE, xPos), the logits' bias (causal mask, ALiBi) and k's ramp (linspace).
pub fn tables<B: Backend>(layout: &Layout, p: &PosParams, device: &B::Device, dt: burn::tensor::FloatDType) -> Positions<B> {
    let l = layout.len();
    let (hd, half) = (p.head_dim, p.head_dim / 2);
    let rot = |sign: f64| {
        let (mut c, mut s) = (vec![0f32; l * hd], vec![0f32; l * hd]);
        for (t, pos) in layout.pos.iter().enumerate() {
            for i in 0..half {
                let (cv, sv) = match pos {
                    None => (1.0, 0.0),
                    Some(pos) => {
                        let theta = pos * p.rope_base.powf(-2.0 * i as f64 / hd as f64);
                        let decay = if p.kind == PositionKind::Xpos {
                            let zeta = (2.0 * i as f64 / hd as f64 + p.xpos_gamma) / (1.0 + p.xpos_gamma);
                            zeta.powf(sign * (pos - layout.centre) / p.xpos_scale_base)
                        } else {
                            1.0
                        };
                        (theta.cos() * decay, theta.sin() * decay)
                    }
                };
                for j in [i, i + half] {
                    c[t * hd + j] = cv as f32;
                    s[t * hd + j] = sv as f32;
                }
            }
        }
        let mk = |v: Vec<f32>| to(Tensor::<B, 4>::from_data(TensorData::new(v, [1, 1, l, hd]), device), dt);
        (mk(c), mk(s))
    };
    let (rot_q, rot_k) = if p.kind.rotates() { (Some(rot(1.0)), Some(rot(-1.0))) } else { (None, None) };

    let ramp = (p.kind == PositionKind::Linspace).then(|| {
        let n = layout.n_positioned.max(1);
        let step = if n > 1 { p.linspace_edge / (n - 1) as f64 } else { 0.0 };
        let mut k = 0usize;
        let v: Vec<f32> = layout
            .pos
            .iter()
            .map(|pos| match pos {
                None => 0.0,
                Some(_) => {
                    k += 1;
                    (layout.linspace_start + step * (k - 1) as f64) as f32
                }
            })
            .collect();
        to(Tensor::<B, 3>::from_data(TensorData::new(v, [1, l, 1]), device), dt)
    });

    let slopes = if p.kind == PositionKind::Alibi { alibi_slopes(p.n_heads) } else { vec![0.0] };
    let hb = slopes.len();
    let mut bias = vec![0f32; hb * l * l];
    for (h, m) in slopes.iter().enumerate() {
        for i in 0..l {
            for j in 0..l {
                bias[(h * l + i) * l + j] = if j > i {
                    f32::NEG_INFINITY
                } else {
                    match (layout.pos[i], layout.pos[j]) {
                        (Some(pi), Some(pj)) => (-m * (pi - pj)) as f32,
                        _ => 0.0,
                    }
                };
            }
        }
    }
    let bias = to(Tensor::from_data(TensorData::new(bias, [1, hb, l, l]), device), dt);
    // the same ALiBi as the flash kernels take it: the slopes, then each slot's position (NaN: none)
    let slopes_pos = (p.kind == PositionKind::Alibi).then(|| {
        let v: Vec<f32> = slopes.iter().map(|&m| m as f32).chain(layout.pos.iter().map(|pos| pos.map_or(f32::NAN, |p| p as f32))).collect();
        Tensor::from_data(TensorData::new(v, [hb + l]), device)
    });
    Positions { rot_q, rot_k, bias, slopes_pos, k_ramp: ramp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::kernels::reference::rotate;

    fn params(kind: PositionKind, n_heads: usize, head_dim: usize) -> PosParams {
        PosParams { kind, n_heads, head_dim, rope_base: 10000.0, xpos_gamma: 0.4, xpos_scale_base: 512.0, linspace_edge: 0.1 }
    }

    /// Score of a single query at position m against a key at position n (one head).
    fn score(kind: PositionKind, m: usize, n: usize, q: &[f32], k: &[f32], seq: usize) -> f32 {
        let dev = Default::default();
        let hd = q.len();
        let t = tables::<Cpu>(&Layout::plain(seq, 0), &params(kind, 1, hd), &dev, burn::tensor::FloatDType::F32);
        let at = |v: &[f32], p: usize| {
            let mut full = vec![0f32; seq * hd];
            full[p * hd..(p + 1) * hd].copy_from_slice(v);
            Tensor::<Cpu, 4>::from_data(TensorData::new(full, [1, 1, seq, hd]), &dev)
        };
        let qr = rotate(at(q, m), &t.rot_q).narrow(2, m, 1);
        let kr = rotate(at(k, n), &t.rot_k).narrow(2, n, 1);
        (qr * kr).sum().into_scalar()
    }

    #[test]
    fn rope_depends_only_on_relative_distance() {
        let q = [0.3, -1.2, 0.7, 0.25, 1.1, -0.4, 0.05, 0.9];
        let k = [-0.6, 0.2, 1.3, -0.8, 0.45, 0.15, -1.0, 0.35];
        for (a, b) in [((5, 2), (105, 102)), ((40, 40), (7, 7)), ((63, 10), (120, 67))] {
            let (s1, s2) = (score(PositionKind::Rope, a.0, a.1, &q, &k, 128), score(PositionKind::Rope, b.0, b.1, &q, &k, 128));
            assert!((s1 - s2).abs() < 1e-4, "{a:?} {b:?}: {s1} vs {s2}");
        }
        // and it does depend on the distance
        assert!((score(PositionKind::Rope, 5, 2, &q, &k, 128) - score(PositionKind::Rope, 5, 4, &q, &k, 128)).abs() > 1e-3);
    }

    #[test]
    fn xpos_decays_by_zeta_to_the_relative_distance() {
        // head_dim 4: pairs i = 0 (dims 0, 2) and i = 1 (dims 1, 3). Use pair i = 1 only.
        let q = [0.0, 1.0, 0.0, 0.5];
        let k = [0.0, 0.8, 0.0, -0.3];
        let (m, n) = (300, 200);
        let ratio = score(PositionKind::Xpos, m, n, &q, &k, 512) / score(PositionKind::Rope, m, n, &q, &k, 512);
        // ζ_1 = (2·1/4 + 0.4) / 1.4 = 0.642857…; decay = ζ^((m − n)/512) = 0.642857^(100/512)
        let expected = 0.917_323_f32;
        assert!((ratio - expected).abs() < 1e-4, "ratio {ratio} expected {expected}");
    }

    #[test]
    fn linspace_ramp_is_exact() {
        let dev = Default::default();
        let t = tables::<Cpu>(&Layout::plain(5, 0), &params(PositionKind::Linspace, 2, 4), &dev, burn::tensor::FloatDType::F32);
        let v: Vec<f32> = t.k_ramp.unwrap().into_data().to_vec().unwrap();
        let want = [0.0, 0.025, 0.05, 0.075, 0.1];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{v:?}");
        }
        assert!(t.rot_q.is_none() && t.rot_k.is_none());
    }

    #[test]
    fn alibi_slopes_match_the_paper() {
        let s8 = alibi_slopes(8);
        let want8: Vec<f64> = (1..=8).map(|k| 1.0 / 2f64.powi(k)).collect();
        assert_eq!(s8, want8);
        let s12 = alibi_slopes(12);
        let mut want12 = want8.clone();
        want12.extend([2f64.powf(-0.5), 2f64.powf(-1.5), 2f64.powf(-2.5), 2f64.powf(-3.5)]);
        for (a, b) in s12.iter().zip(&want12) {
            assert!((a - b).abs() < 1e-12, "{s12:?}");
        }
        assert_eq!(s12.len(), 12);
    }

    #[test]
    fn alibi_bias_is_minus_slope_times_distance_and_causal() {
        let dev = Default::default();
        let t = tables::<Cpu>(&Layout::plain(4, 0), &params(PositionKind::Alibi, 2, 4), &dev, burn::tensor::FloatDType::F32);
        let b: Vec<f32> = t.bias.into_data().to_vec().unwrap();
        // slopes for 2 heads: 2^-4, 2^-8. Head 0, query 3, key 0 → −3/16; head 1, query 1, key 0 → −1/256
        assert_eq!(b[3 * 4], -3.0 / 16.0);
        assert_eq!(b[16 + 4], -1.0 / 256.0);
        // key above the diagonal → −∞
        assert!(b[1].is_infinite() && b[1] < 0.0);
    }

    /// ALiBi's slopes and positions are what lets the flash kernels skip the table: every other
    /// scheme's bias must be the causal mask alone, also with memory slots in the window.
    #[test]
    fn only_alibi_biases_beyond_the_causal_mask() {
        let dev = Default::default();
        for kind in [PositionKind::Nope, PositionKind::Rope, PositionKind::Xpos, PositionKind::Linspace, PositionKind::Alibi] {
            let mut layout = Layout::plain(6, 0);
            layout.pos[0] = None; // a memory slot
            let t = tables::<Cpu>(&layout, &params(kind, 2, 4), &dev, burn::tensor::FloatDType::F32);
            let b: Vec<f32> = t.bias.clone().into_data().to_vec().unwrap();
            let causal_only = b.iter().enumerate().all(|(e, &x)| if e % 6 > (e / 6) % 6 { x == f32::NEG_INFINITY } else { x == 0.0 });
            assert_eq!(causal_only, t.slopes_pos.is_none(), "{kind:?}");
        }
    }

    /// The flash kernels' form of ALiBi (slopes, then positions with NaN for a memory slot) gives
    /// the table's bias: slope·(p_j − p_i), 0 where either slot has no position.
    #[test]
    fn alibi_slopes_and_positions_give_the_table() {
        let dev = Default::default();
        let (l, h) = (7, 3);
        let layout = Layout::new(vec![None, None, Some(40.0), Some(41.0), Some(42.0), Some(43.0), Some(44.0)], 40.0, 0.0);
        let t = tables::<Cpu>(&layout, &params(PositionKind::Alibi, h, 4), &dev, burn::tensor::FloatDType::F32);
        let v: Vec<f32> = t.slopes_pos.expect("ALiBi's slopes and positions").into_data().to_vec().unwrap();
        let table: Vec<f32> = t.bias.into_data().to_vec().unwrap();
        assert_eq!(v.len(), h + l);
        assert!(v[h..h + 2].iter().all(|p| p.is_nan()) && v[h + 2] == 40.0);
        for (hh, i, j) in (0..h).flat_map(|hh| (0..l).flat_map(move |i| (0..=i).map(move |j| (hh, i, j)))) {
            let d = v[h + j] - v[h + i];
            let kernel = if d.is_nan() { 0.0 } else { v[hh] * d };
            let want = table[(hh * l + i) * l + j];
            assert!((kernel - want).abs() <= 1e-6 * want.abs(), "head {hh}, query {i}, key {j}: {kernel} vs {want}");
        }
        assert!(table.iter().any(|&x| x < -0.1), "the bias must not vanish");
    }

    #[test]
    fn nope_changes_nothing() {
        let dev = Default::default();
        let t = tables::<Cpu>(&Layout::plain(6, 0), &params(PositionKind::Nope, 2, 4), &dev, burn::tensor::FloatDType::F32);
        assert!(t.rot_q.is_none() && t.k_ramp.is_none());
        let x = Tensor::<Cpu, 4>::random([1, 2, 6, 4], burn::tensor::Distribution::Default, &dev);
        assert_eq!(rotate(x.clone(), &t.rot_q).into_data(), x.into_data());
        let b: Vec<f32> = t.bias.into_data().to_vec().unwrap();
        assert!(b.iter().enumerate().all(|(idx, v)| if idx % 6 > idx / 6 { v.is_infinite() } else { *v == 0.0 }));
    }

    #[test]
    fn unpositioned_slots_are_left_alone() {
        let dev = Default::default();
        let layout = Layout::new(vec![None, Some(0.0), Some(1.0), None], 0.0, 0.0);
        let t = tables::<Cpu>(&layout, &params(PositionKind::Rope, 1, 4), &dev, burn::tensor::FloatDType::F32);
        let (c, s) = t.rot_q.unwrap();
        let c: Vec<f32> = c.into_data().to_vec().unwrap();
        let s: Vec<f32> = s.into_data().to_vec().unwrap();
        assert!(c[..4].iter().all(|v| *v == 1.0) && s[12..].iter().all(|v| *v == 0.0));
    }
}
