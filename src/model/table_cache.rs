//! The position tables of the layouts a model has met, kept on the device: every step of a run
//! meets the same window layout, so its tables are built on the host and uploaded once rather
//! than once per step (ALiBi's bias alone is heads × L × L values: at L = 512 and 12 heads,
//! building and uploading it took ~7 ms of host time per step, more than a batch-8 step's kernels).
//!
//! A clone of the model shares the cache (also `valid()`'s inner-backend copy and a model moved to
//! another device, whose old entries stay until pushed out); entries are typed by backend and
//! keyed by layout, constants, dtype and device, so each finds its own. It keeps at most eight
//! layouts and 256 MiB: the long windows of an extrapolation evaluation are built each time.

use super::positions::{tables, Layout, PosParams};
use crate::kernels::ops::Positions;
use burn::prelude::*;
use burn::tensor::FloatDType;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// Layouts kept (a memory run with global positions meets a new one each window: the oldest goes).
const KEPT: usize = 8;
/// Bytes of tables kept at most; a layout's tables larger than a quarter of it are built each
/// time, as without the cache (an evaluation at 4096 tokens under ALiBi: 12 × 4096² values).
const KEPT_BYTES: usize = 256 << 20;

/// One cached layout's tables on one backend and device.
struct Entry<B: Backend> {
    layout: Layout,
    params: PosParams,
    dtype: FloatDType,
    device: B::Device,
    pos: Positions<B>,
}

/// Bytes of every table in `p`.
fn bytes<B: Backend>(p: &Positions<B>) -> usize {
    let size = |shape: burn::tensor::Shape, dtype: burn::tensor::DType| shape.num_elements() * dtype.size();
    let mut n = size(p.bias.shape(), p.bias.dtype());
    for (c, s) in p.rot_q.iter().chain(p.rot_k.iter()) {
        n += size(c.shape(), c.dtype()) + size(s.shape(), s.dtype());
    }
    n += p.slopes_pos.as_ref().map_or(0, |v| size(v.shape(), v.dtype()));
    n + p.k_ramp.as_ref().map_or(0, |r| size(r.shape(), r.dtype()))
}

/// Shared, typed-by-backend cache of [`tables`] (see the module doc).
#[derive(Clone, Default)]
pub struct TableCache(Arc<Mutex<Vec<Kept>>>);

/// A kept [`Entry`] of some backend and its bytes.
type Kept = (usize, Box<dyn Any + Send>);

impl core::fmt::Debug for TableCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TableCache({} layouts)", self.layouts())
    }
}

impl TableCache {
    /// Layouts kept now, of every backend.
    pub fn layouts(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// [`tables`]`(layout, p, device, dtype)`, built once per layout.
    pub fn get<B: Backend>(&self, layout: &Layout, p: &PosParams, device: &B::Device, dtype: FloatDType) -> Positions<B> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let found = kept.iter().find_map(|(_, e)| {
            let e = e.downcast_ref::<Entry<B>>()?;
            (e.dtype == dtype && &e.device == device && &e.params == p && &e.layout == layout).then(|| e.pos.clone())
        });
        if let Some(pos) = found {
            return pos;
        }
        let pos = tables::<B>(layout, p, device, dtype);
        let size = bytes(&pos);
        if size > KEPT_BYTES / 4 {
            return pos;
        }
        while kept.len() == KEPT || kept.iter().map(|(n, _)| n).sum::<usize>() + size > KEPT_BYTES {
            kept.remove(0);
        }
        kept.push((size, Box::new(Entry::<B> { layout: layout.clone(), params: *p, dtype, device: device.clone(), pos: pos.clone() })));
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::model::positions::PositionKind;

    fn params(kind: PositionKind) -> PosParams {
        PosParams { kind, n_heads: 2, head_dim: 4, rope_base: 10000.0, xpos_gamma: 0.4, xpos_scale_base: 512.0, linspace_edge: 0.1 }
    }

    fn values(p: &Positions<Cpu>) -> Vec<f32> {
        let mut v: Vec<f32> = p.bias.clone().into_data().to_vec().unwrap();
        for (c, s) in p.rot_q.iter().chain(p.rot_k.iter()) {
            v.extend(c.clone().into_data().to_vec::<f32>().unwrap());
            v.extend(s.clone().into_data().to_vec::<f32>().unwrap());
        }
        v.extend(p.k_ramp.iter().flat_map(|r| r.clone().into_data().to_vec::<f32>().unwrap()));
        v.extend(p.slopes_pos.iter().flat_map(|a| a.clone().into_data().to_vec::<f32>().unwrap()));
        v
    }

    /// Each layout gets its own tables, equal to freshly built ones, also after older layouts
    /// were dropped; a repeated layout is served from the cache.
    #[test]
    fn cached_tables_equal_fresh_ones_for_every_layout() {
        let _serial = crate::serial();
        let dev = Default::default();
        let cache = TableCache::default();
        for kind in [PositionKind::Rope, PositionKind::Linspace, PositionKind::Alibi] {
            let p = params(kind);
            let cache = if kind == PositionKind::Rope { cache.clone() } else { TableCache::default() };
            for round in 0..2 {
                for first in 0..KEPT + 3 {
                    let layout = Layout::plain(5, first * 5);
                    let got = cache.get::<Cpu>(&layout, &p, &dev, FloatDType::F32);
                    let fresh = tables::<Cpu>(&layout, &p, &dev, FloatDType::F32);
                    assert_eq!(values(&got), values(&fresh), "{kind:?} round {round} first {first}");
                }
            }
            assert_eq!(cache.0.lock().unwrap().len(), KEPT);
        }
        let layout = Layout::plain(7, 0);
        let p = params(PositionKind::Alibi);
        let cache = TableCache::default();
        let a = cache.get::<Cpu>(&layout, &p, &dev, FloatDType::F32);
        let b = cache.get::<Cpu>(&Layout::plain(7, 0), &p, &dev, FloatDType::F32);
        assert_eq!(cache.0.lock().unwrap().len(), 1, "a repeated layout is not built again");
        assert_eq!(values(&a), values(&b));
        assert_eq!(bytes(&a), 2 * 7 * 7 * 4 + (2 + 7) * 4, "ALiBi: a bias of 2 heads × 7 × 7 f32 and its 2 slopes and 7 positions, nothing else");
    }

    /// The oldest layout is the one pushed out; another backend, dtype or set of constants is
    /// another entry.
    #[test]
    fn the_oldest_goes_and_keys_keep_apart() {
        let _serial = crate::serial();
        let dev = Default::default();
        let cache = TableCache::default();
        let p = params(PositionKind::Rope);
        let first = |c: &TableCache| c.0.lock().unwrap().first().and_then(|(_, e)| e.downcast_ref::<Entry<Cpu>>().map(|e| e.layout.clone()));
        for k in 0..=KEPT {
            cache.get::<Cpu>(&Layout::plain(4, k), &p, &dev, FloatDType::F32);
        }
        assert_eq!(first(&cache), Some(Layout::plain(4, 1)), "layout 0 went first");
        let cache = TableCache::default();
        let layout = Layout::plain(4, 0);
        cache.get::<Cpu>(&layout, &p, &dev, FloatDType::F32);
        cache.get::<crate::backend::CpuTrain>(&layout, &p, &dev, FloatDType::F32);
        cache.get::<Cpu>(&layout, &p, &dev, FloatDType::F16);
        let other = PosParams { rope_base: 500.0, ..p };
        let got = cache.get::<Cpu>(&layout, &other, &dev, FloatDType::F32);
        assert_eq!(values(&got), values(&tables::<Cpu>(&layout, &other, &dev, FloatDType::F32)));
        assert_ne!(values(&got), values(&tables::<Cpu>(&layout, &p, &dev, FloatDType::F32)));
        assert_eq!(cache.0.lock().unwrap().len(), 4);
    }

    /// Tables over a quarter of the budget are built each time and never kept; the budget
    /// holds for what is kept.
    #[test]
    fn large_tables_are_not_kept() {
        let _serial = crate::serial();
        let dev = Default::default();
        let cache = TableCache::default();
        let p = PosParams { n_heads: 8, ..params(PositionKind::Alibi) };
        // 8 heads × 2048² f32 = 128 MiB > 64 MiB
        let big = Layout::plain(2048, 0);
        let got = cache.get::<Cpu>(&big, &p, &dev, FloatDType::F32);
        assert_eq!(got.bias.dims(), [1, 8, 2048, 2048]);
        assert!(cache.0.lock().unwrap().is_empty());
        // 8 × 1100² f32 ≈ 37 MiB each: six fit in 256 MiB, the seventh and eighth push the oldest out
        let per = 8 * 1100 * 1100 * 4 + (8 + 1100) * 4;
        for first in 0..KEPT {
            cache.get::<Cpu>(&Layout::plain(1100, first), &p, &dev, FloatDType::F32);
        }
        let kept = cache.0.lock().unwrap();
        assert!(kept.iter().all(|(n, _)| *n == per));
        assert_eq!(kept.len(), KEPT_BYTES / per);
        assert_eq!(kept.len(), 6);
    }
}
