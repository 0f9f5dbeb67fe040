//! The position tables of the layouts a model has met, kept on the device: every step of a run
//! meets the same window layout, so its tables are built on the host and uploaded once rather
//! than once per step (ALiBi's bias alone is heads × L × L values: at L = 512 and 12 heads,
//! building and uploading it took ~7 ms of host time per step, more than a batch-8 step's kernels).
//!
//! A clone of the model shares the cache; entries are typed by backend, so the training model
//! and its inner-backend copy for validation each find their own.

use super::positions::{tables, Layout, PosParams};
use crate::kernels::ops::Positions;
use burn::prelude::*;
use burn::tensor::FloatDType;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// Layouts kept (a memory run with global positions meets a new one each window: the oldest goes).
const KEPT: usize = 8;

/// One cached layout's tables on one backend and device.
struct Entry<B: Backend> {
    layout: Layout,
    dtype: FloatDType,
    device: B::Device,
    pos: Positions<B>,
}

/// Shared, typed-by-backend cache of [`tables`] (see the module doc).
#[derive(Clone, Default)]
pub struct TableCache(Arc<Mutex<Vec<Box<dyn Any + Send>>>>);

impl core::fmt::Debug for TableCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = self.0.lock().map(|v| v.len()).unwrap_or(0);
        write!(f, "TableCache({n} layouts)")
    }
}

impl TableCache {
    /// [`tables`]`(layout, p, device, dtype)`, built once per layout. `p` is the model's and fixed
    /// for the cache's life (a model's position constants do not change).
    pub fn get<B: Backend>(&self, layout: &Layout, p: &PosParams, device: &B::Device, dtype: FloatDType) -> Positions<B> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let found = kept.iter().find_map(|e| {
            let e = e.downcast_ref::<Entry<B>>()?;
            (e.dtype == dtype && &e.device == device && &e.layout == layout).then(|| e.pos.clone())
        });
        if let Some(pos) = found {
            return pos;
        }
        let pos = tables::<B>(layout, p, device, dtype);
        if kept.len() == KEPT {
            kept.remove(0);
        }
        kept.push(Box::new(Entry::<B> { layout: layout.clone(), dtype, device: device.clone(), pos: pos.clone() }));
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
        v
    }

    /// Each layout gets its own tables, equal to freshly built ones, also after older layouts
    /// were dropped; a repeated layout is served from the cache.
    #[test]
    fn cached_tables_equal_fresh_ones_for_every_layout() {
        let dev = Default::default();
        let cache = TableCache::default();
        for kind in [PositionKind::Rope, PositionKind::Alibi] {
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
    }
}
