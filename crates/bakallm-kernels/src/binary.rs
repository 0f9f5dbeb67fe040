//! A two-input autodiff op from a forward step and a backward step (`prims`), keeping both inputs
//! for the backward: how [`super::gate`] becomes a single op in the graph ([`super::linear`] keeps
//! its weight's cast instead, so it has its own).

use super::prims::float;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::*;

/// `fwd(x, y, fused)` → `[.., DO]`, with gradients `bwd(g, x, y, fused)` → `(dx, dy)`.
pub type Fwd<B, const DX: usize, const DY: usize, const DO: usize> = fn(Tensor<B, DX>, Tensor<B, DY>, bool) -> Tensor<B, DO>;
pub type Bwd<B, const DX: usize, const DY: usize, const DO: usize> = fn(Tensor<B, DO>, Tensor<B, DX>, Tensor<B, DY>, bool) -> (Tensor<B, DX>, Tensor<B, DY>);

/// `fwd(x, y)` as one node of `Autodiff<B, C>`'s graph, differentiated by `bwd`.
pub fn binary_ad<B: Backend, C: CheckpointStrategy, const DX: usize, const DY: usize, const DO: usize>(
    x: Tensor<Autodiff<B, C>, DX>,
    y: Tensor<Autodiff<B, C>, DY>,
    fwd: Fwd<B, DX, DY, DO>,
    bwd: Bwd<B, DX, DY, DO>,
    fused: bool,
) -> Tensor<Autodiff<B, C>, DO> {
    #[derive(Debug)]
    struct Step<B: Backend, const DX: usize, const DY: usize, const DO: usize> {
        bwd: Bwd<B, DX, DY, DO>,
        fused: bool,
    }
    impl<B: Backend, const DX: usize, const DY: usize, const DO: usize> Backward<B, 2> for Step<B, DX, DY, DO> {
        /// (x, y nodes)
        type State = (NodeId, NodeId);
        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ck: &mut Checkpointer) {
            let [nx, ny] = ops.parents;
            let g = float::<B, DO>(grads.consume::<B>(&ops.node));
            let (x, y) = (float::<B, DX>(ck.retrieve_node_output(ops.state.0)), float::<B, DY>(ck.retrieve_node_output(ops.state.1)));
            let (dx, dy) = (self.bwd)(g, x, y, self.fused);
            if let Some(node) = nx {
                grads.register::<B>(node.id, dx.into_primitive().tensor());
            }
            if let Some(node) = ny {
                grads.register::<B>(node.id, dy.into_primitive().tensor());
            }
        }
    }
    let (x, y) = (x.into_primitive().tensor(), y.into_primitive().tensor());
    let out = fwd(float::<B, DX>(x.primitive.clone()), float::<B, DY>(y.primitive.clone()), fused).into_primitive().tensor();
    let out = match (Step { bwd, fused }).prepare::<C>([x.node.clone(), y.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), prep.checkpoint(&y));
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    float(out)
}
