//! The optimizer's launches on CUDA (`cuda/optim.cu`): the global norm's sum of squares and the
//! AdamW step over many tensors per launch, their pointers and sizes in the kernels' parameters.
//! The CPU's one-pass AdamW is `super::cpu_optim`; the formulas, `super::inner::Prims::adamw`.

use super::fused::{empty, AdamScalars};
use super::nvrtc::{compact, enqueue_all, launch, Arg};
use super::weight_copies::Part;
use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::CudaRuntime;

type T = CubeTensor<CudaRuntime>;

/// Tensors per `sum_squares_f32` launch (its `Tensors` parameter in cuda/optim.cu) and the elements
/// each of its blocks takes (`SS_CHUNK`), threads per block (`SS_THREADS`).
const MT_MAX: usize = 64;
const SS_CHUNK: i64 = 8192;
const SS_THREADS: u32 = 256;
/// Parameters per `adamw_f32` launch (its `AdamTensors` parameter: 2.1 KiB of the 4 KiB a launch's
/// parameters may take), elements per block (`ADAM_CHUNK`), threads per block.
const ADAM_MAX: usize = 32;
const ADAM_CHUNK: i64 = 4096;
const ADAM_THREADS: u32 = 256;

/// The first block of each of `sizes`' tensors when each block takes `chunk` elements (`i32::MAX`
/// past the last, up to `most` entries; the kernels' `first`), and the blocks to launch (at least
/// one; a block past every tensor's elements does nothing).
fn first_blocks(sizes: &[i64], chunk: i64, most: usize) -> (Vec<i32>, u32) {
    let mut first = vec![i32::MAX; most];
    let mut at = 0i64;
    for (f, n) in first.iter_mut().zip(sizes) {
        *f = i32::try_from(at).expect("bakallm kernels: blocks exceed i32");
        at += (n + chunk - 1) / chunk;
    }
    (first, u32::try_from(at.max(1)).expect("bakallm kernels: grid exceeds u32"))
}

/// `Σ x²` over every element of all `tensors` (f32), as `[1]` f32: `sum_squares_f32`, `MT_MAX` tensors
/// per launch.
pub fn sum_squares(tensors: Vec<T>) -> T {
    let out = empty(&tensors[0], vec![1], DType::F32);
    let tensors: Vec<T> = tensors.into_iter().map(compact).collect();
    assert!(tensors.iter().all(|t| matches!(t.dtype, DType::F32 | DType::Flex32)), "sum_squares: f32 tensors only");
    // `MT_MAX` (cuda/optim.cu) tensors per launch: their pointers and sizes go in the kernel's parameters
    for (c, chunk) in tensors.chunks(MT_MAX).enumerate() {
        let ts: Vec<&T> = chunk.iter().chain([&out]).collect();
        let k = chunk.len();
        let mut sizes = [0i64; MT_MAX];
        for (i, t) in chunk.iter().enumerate() {
            sizes[i] = t.meta.shape().num_elements() as i64;
        }
        let (first, blocks) = first_blocks(&sizes[..k], SS_CHUNK, MT_MAX);
        enqueue_all(&ts, move |p, stream| {
            if c == 0 {
                unsafe { cudarc::driver::result::memset_d8_async(p[k], 0, 4, stream) }.expect("cuMemsetD8Async");
            }
            let mut ptrs = [0u64; MT_MAX];
            ptrs[..k].copy_from_slice(&p[..k]);
            let mut table: Vec<u8> = ptrs.iter().flat_map(|p| p.to_ne_bytes()).collect();
            table.extend(sizes.iter().flat_map(|n| n.to_ne_bytes()));
            table.extend(first.iter().flat_map(|b| b.to_ne_bytes()));
            launch("sum_squares_f32", blocks, SS_THREADS, stream, &[Arg::Bytes(table), Arg::Ptr(p[k])])
        });
    }
    out
}

/// A parameter, its gradient, its moments (none before the first step) and its bf16 copy.
type Item = (T, T, Option<[T; 2]>, Option<(T, Part)>);

/// Checks that `copy` (bf16) holds f32 `p [rows, cols]` at `at` as `adamw_f32` writes it: 4-element
/// runs that stay within a row, 8-byte aligned.
fn copy_place(p: &T, copy: &T, at: Part) -> Part {
    let n = p.meta.shape().num_elements();
    assert!(copy.dtype == DType::BF16, "adamw: the weight copies are bf16, got {:?}", copy.dtype);
    assert!(at.rows * at.cols == n && at.off + at.cols <= at.ld && at.rows * at.ld <= copy.meta.shape().num_elements(), "adamw: {n} elements do not fit {at:?} in {:?}", copy.meta.shape());
    assert!(at.in_runs_of_4() && n <= u32::MAX as usize, "adamw: a copy's columns, row stride and offset must be multiples of 4, got {at:?}");
    at
}

/// One AdamW step of each parameter (`FusedBackend::adamw`): `adamw_f32`, `ADAM_MAX` parameters per
/// launch; the new values also into the bf16 copies given (`weight_copies`).
pub fn adamw(ps: Vec<T>, gs: Vec<T>, mvs: Option<Vec<[T; 2]>>, stats: Option<T>, h: AdamScalars, copies: Vec<Option<(T, Part)>>) -> Vec<[T; 3]> {
    let stats = stats.map(compact);
    assert!(stats.as_ref().is_none_or(|s| s.dtype == DType::F32 && s.meta.shape().num_elements() == 2), "adamw: stats must be [loss, norm] in f32");
    assert!(ps.len() == gs.len() && mvs.as_ref().is_none_or(|m| m.len() == ps.len()), "adamw: {} parameters, {} gradients", ps.len(), gs.len());
    let first = mvs.is_none();
    let mvs: Vec<Option<[T; 2]>> = match mvs {
        Some(mvs) => mvs.into_iter().map(|mv| Some(mv.map(compact))).collect(),
        None => vec![None; ps.len()],
    };
    assert_eq!(copies.len(), ps.len(), "adamw: one copy entry per parameter");
    let items: Vec<Item> = ps.into_iter().zip(gs).zip(mvs).zip(copies).map(|(((p, g), mv), c)| (compact(p), compact(g), mv, c)).collect();
    let h: Vec<u8> = h.iter().flat_map(|x| x.to_ne_bytes()).collect();
    let mut all = Vec::with_capacity(items.len());
    for chunk in items.chunks(ADAM_MAX) {
        let mut ts: Vec<&T> = Vec::new();
        for (p, g, mv, _) in chunk {
            let n = p.meta.shape().num_elements();
            let f32s = [p, g].into_iter().chain(mv.iter().flatten());
            assert!(f32s.clone().all(|t| t.dtype == DType::F32 && t.meta.shape().num_elements() == n), "adamw: f32 tensors of {n} elements only");
            ts.extend(f32s);
        }
        ts.extend(&stats);
        // the copies: [rows, cols] at column `off` of a bf16 [·, ld], 4-element runs within a row
        let places: Vec<Option<Part>> = chunk.iter().map(|(p, _, _, c)| c.as_ref().map(|(t, at)| copy_place(p, t, *at))).collect();
        let n_copies = places.iter().flatten().count();
        ts.extend(chunk.iter().filter_map(|(.., c)| c.as_ref().map(|(t, _)| t)));
        let outs: Vec<[T; 3]> = chunk.iter().map(|(p, ..)| [(); 3].map(|_| empty(p, p.meta.shape().to_vec(), DType::F32))).collect();
        ts.extend(outs.iter().flatten());
        let sizes: Vec<i64> = chunk.iter().map(|(p, ..)| p.meta.shape().num_elements() as i64).collect();
        let (first_block, blocks) = first_blocks(&sizes, ADAM_CHUNK, ADAM_MAX);
        let (k, with_stats, h) = (chunk.len(), stats.is_some(), h.clone());
        enqueue_all(&ts, move |q, stream| {
            // `AdamTensors` (cuda/optim.cu): seven pointer arrays (p, g, m, v, p', m', v'), then the lengths
            let mut table = [[0u64; ADAM_MAX]; 7];
            // they come tensor by tensor: (p, g, (m, v)) of each, the stats, then (p', m', v') of each
            let per = if first { 2 } else { 4 };
            let (ins, rest) = q.split_at(k * per);
            let s = if with_stats { rest[0] } else { 0 };
            let (copy_ptrs, outs) = rest[with_stats as usize..].split_at(n_copies);
            for (first_row, per, ptrs) in [(0, per, ins), (4, 3, outs)] {
                for (i, tensor) in ptrs.chunks(per).enumerate() {
                    for (r, &p) in tensor.iter().enumerate() {
                        table[first_row + r][i] = p;
                    }
                }
            }
            let mut bytes: Vec<u8> = table.iter().flatten().flat_map(|p| p.to_ne_bytes()).collect();
            bytes.extend((0..ADAM_MAX).flat_map(|i| sizes.get(i).copied().unwrap_or(0).to_ne_bytes()));
            bytes.extend(first_block.iter().flat_map(|b| b.to_ne_bytes()));
            // `AdamCopies`: each copy's first element's address (0: none), then cols and ld
            let (mut at, mut next) = ([0u64; ADAM_MAX], copy_ptrs.iter());
            let mut shape = [[0u32; ADAM_MAX]; 2];
            for (i, place) in places.iter().enumerate() {
                if let Some(pt) = place {
                    at[i] = next.next().expect("a copy pointer") + 2 * pt.off as u64;
                    shape[0][i] = pt.cols as u32;
                    shape[1][i] = pt.ld as u32;
                }
            }
            bytes.extend(at.iter().flat_map(|p| p.to_ne_bytes()));
            bytes.extend(shape.iter().flatten().flat_map(|v| v.to_ne_bytes()));
            let args = [Arg::Bytes(bytes), Arg::Bytes(h), Arg::I32(first as i32), Arg::Ptr(s)];
            launch("adamw_f32", blocks, ADAM_THREADS, stream, &args)
        });
        all.extend(outs);
    }
    all
}
