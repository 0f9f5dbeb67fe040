//! The bf16 copies of the f32 master weights that a layer's GEMMs read, kept from step to step:
//! the forward casts its weights into them once, and AdamW writes each updated weight's copy as it
//! writes the weight (`adamw_f32`), so later forwards skip the cast (`BAKA_WEIGHT_COPIES=1`; off by
//! default: 0.18 ms per step faster at the pristine shape on an H100, but the copies outlive the
//! step, and cubecl's pool reserved a 1 GiB page more in one of three runs, docs/performance.md).
//!
//! A copy is valid for the weight values it was written from, named by burn-fusion tensor ids:
//! an id comes from a global counter and names one value for good (an op that writes a buffer in
//! place gives its output a new id), so "the layer's weights are the ids the copy was written
//! from" is exact. A forward whose weights' ids are not all those of one entry casts afresh.

use burn::tensor::DType;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// A copy: the backend's tensor (`CubeTensor` on CUDA), behind `Any` so that the generic fusion
/// ops can hand it to the backend they wrap.
type Copy = Arc<dyn Any + Send + Sync>;

/// Where a weight `[rows, cols]` lies in its copy: rows `ld` elements apart, from column `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
    pub off: usize,
}

impl Part {
    /// Whether AdamW can write it (`adamw_f32`): runs of 4 elements that stay within a row, 8-byte
    /// aligned, so columns, row stride and offset are multiples of 4.
    pub fn in_runs_of_4(&self) -> bool {
        [self.cols, self.ld, self.off].iter().all(|v| v.is_multiple_of(4))
    }
}

/// One op's copies and, per weight, the id of the value it was written from, its copy and place.
struct Entry {
    copies: Vec<Copy>,
    parts: Vec<(u64, usize, Part)>,
    used: u64,
}

struct Registry {
    entries: Vec<Entry>,
    clock: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { entries: Vec::new(), clock: 0 });

/// Entries not used by the last this many lookups are dropped (each model's layers look theirs up
/// every step; a test process builds many models).
const KEEP_FOR: u64 = 4096;

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether forwards keep their weights' bf16 copies (`BAKA_WEIGHT_COPIES`, read at each call).
pub fn enabled(dtype: DType) -> bool {
    dtype == DType::BF16 && super::env::WEIGHT_COPIES.get()
}

/// The copies written from exactly the weights `ids` (in the op's order), if any.
pub fn lookup<T: Clone + 'static>(ids: &[u64]) -> Option<Vec<T>> {
    let mut r = registry();
    r.clock += 1;
    let now = r.clock;
    r.entries.retain(|e| now - e.used <= KEEP_FOR);
    let e = r.entries.iter_mut().find(|e| e.parts.len() == ids.len() && e.parts.iter().zip(ids).all(|(p, id)| p.0 == *id))?;
    e.used = now;
    e.copies.iter().map(|c| c.downcast_ref::<T>().cloned()).collect()
}

/// Remembers `copies`, just cast from the weights `ids`: weight `i` lies in `copies[parts[i].0]`
/// at `parts[i].1`. Entries holding any of these weights are dropped.
pub fn remember<T: Send + Sync + 'static>(ids: &[u64], copies: Vec<T>, parts: &[(usize, Part)]) {
    assert_eq!(ids.len(), parts.len(), "weight copies: {} weights, {} parts", ids.len(), parts.len());
    let mut r = registry();
    r.entries.retain(|e| !e.parts.iter().any(|p| ids.contains(&p.0)));
    let used = r.clock;
    let parts = ids.iter().zip(parts).map(|(&id, &(c, p))| (id, c, p)).collect();
    let copies = copies.into_iter().map(|c| Arc::new(c) as Copy).collect();
    r.entries.push(Entry { copies, parts, used });
}

/// For AdamW updating the weight `id` into `new`: the copy and place to write `new`'s bf16 values
/// to, if `id` has a copy; the copy then counts as written from `new`.
pub fn retarget<T: Clone + 'static>(id: u64, new: u64) -> Option<(T, Part)> {
    let mut r = registry();
    r.entries.iter_mut().find_map(|e| {
        let part = e.parts.iter_mut().find(|p| p.0 == id)?;
        let copy = e.copies.get(part.1)?.downcast_ref::<T>()?.clone();
        part.0 = new;
        Some((copy, part.2))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_follow_the_ids_adamw_hands_on() {
        let _serial = crate::serial();
        let part = |off| Part { rows: 2, cols: 4, ld: 8, off };
        let (a, b, c) = (1_000_001, 1_000_002, 1_000_003);
        registry().entries.clear();
        // one buffer ("w1") holding both weights side by side
        remember(&[a, b], vec![7u32], &[(0, part(0)), (0, part(4))]);
        assert_eq!(lookup::<u32>(&[a, b]), Some(vec![7]));
        assert_eq!(lookup::<u32>(&[b, a]), None, "the order is the op's");
        assert_eq!(lookup::<u64>(&[a, b]), None, "another backend's tensors are not these");
        // AdamW updates b into c: the copy and b's place come back, and the entry answers for (a, c)
        assert_eq!(retarget::<u32>(b, c), Some((7, part(4))));
        assert_eq!(lookup::<u32>(&[a, b]), None);
        assert_eq!(lookup::<u32>(&[a, c]), Some(vec![7]));
        assert_eq!(retarget::<u32>(b, 1_000_009), None, "b has no copy any more");
        // a fresh cast from a weight an entry holds replaces that entry
        remember(&[c, 1_000_004], vec![8u32], &[(0, part(0)), (0, part(4))]);
        assert_eq!(lookup::<u32>(&[a, c]), None);
        assert_eq!(lookup::<u32>(&[c, 1_000_004]), Some(vec![8]));
        registry().entries.clear();
    }
}
