//! Deterministic, stateless sampling of training chunks and the fixed validation set.
//!
//! The offset of sample `i` at step `s` is a pure function of (seed, s, i), so a resumed run
//! draws exactly the batches an uninterrupted run would, with no sampler state to save.

use crate::data::Tokens;
use burn::prelude::*;

/// splitmix64: a tiny, well-mixed hash so offsets do not depend on any RNG crate's internals.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Token offsets of the training samples of a (1-based) step.
pub fn train_offsets(seed: u64, step: usize, batch: usize, tokens: usize, chunk: usize) -> Vec<usize> {
    let room = (tokens - chunk + 1) as u64;
    (0..batch).map(|i| (mix(mix(seed ^ 0x5EED) ^ mix(step as u64) ^ (i as u64).rotate_left(32)) % room) as usize).collect()
}

/// The fixed validation set: `n` chunks spread evenly over the validation tokens.
pub fn val_offsets(n: usize, tokens: usize, chunk: usize) -> Vec<usize> {
    let room = tokens - chunk;
    (0..n).map(|i| if n > 1 { i * room / (n - 1) } else { 0 }).collect()
}

/// Reads `chunk = len + 1` tokens at each offset into (inputs `[b, len]`, targets `[b, len]`).
pub fn load<B: Backend>(file: &dyn Tokens, offsets: &[usize], len: usize, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let mut buf = vec![0u32; len + 1];
    let (mut x, mut y) = (Vec::with_capacity(offsets.len() * len), Vec::with_capacity(offsets.len() * len));
    for &o in offsets {
        file.read_into(o, &mut buf);
        x.extend(buf[..len].iter().map(|&t| t as i64));
        y.extend(buf[1..].iter().map(|&t| t as i64));
    }
    let b = offsets.len();
    (Tensor::from_data(TensorData::new(x, [b, len]), device), Tensor::from_data(TensorData::new(y, [b, len]), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_deterministic_in_range_and_differ_by_seed_and_step() {
        let a = train_offsets(1, 5, 8, 10_000, 257);
        assert_eq!(a, train_offsets(1, 5, 8, 10_000, 257));
        assert_ne!(a, train_offsets(2, 5, 8, 10_000, 257));
        assert_ne!(a, train_offsets(1, 6, 8, 10_000, 257));
        assert!(a.iter().all(|&o| o + 257 <= 10_000));
        let v = val_offsets(4, 1000, 101);
        assert_eq!(v, vec![0, 299, 599, 899]);
    }
}
