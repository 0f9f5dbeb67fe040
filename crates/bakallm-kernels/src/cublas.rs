//! cuBLAS GEMM as a burn 0.21 backend extension, in stream order with cubecl's kernels.
//!
//! Why: at the pristine shape burn's own bf16 matmul runs at ~110–170 TFLOP/s on an H100 (half of
//! a training step, profiled), cuBLAS at 370–540. Three layers, as in burn's custom-kernel example:
//! `CubeBackend` calls `cublasGemmStridedBatchedEx` on the raw device pointers, on the CUDA stream
//! cubecl itself uses (vendor/cubecl-cuda exposes it), so no host sync; `Fusion` registers it as a
//! custom op; `Autodiff` adds the backward (dX = G·Wᵀ, dW = Xᵀ·G, two more GEMMs).
//! Rank-3 operands, batch broadcast when one side's batch is 1; f32 runs as TF32 (as burn's own),
//! bf16/f16 accumulate in f32. Views whose last or middle stride is 1 are passed as-is (OP_N/OP_T);
//! anything else is made contiguous first.

use super::gemm::{layout, Trans};
use super::nvrtc::enqueue;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};
use burn_cubecl::{element::BoolElement, kernel::into_contiguous, tensor::CubeTensor, CubeBackend, FloatElement, IntElement};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::cuda::CudaRuntime;
use cudarc::cublas::{result as cb, sys as cbs};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Backends with a cuBLAS batched matmul: `out[i] = lhs[i] · rhs[i]`, rank 3.
pub trait BlasBackend: Backend {
    fn blas_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `lhs · rhs` (rank 3) by [`BlasBackend::blas_matmul`].
pub fn matmul<B: BlasBackend>(lhs: Tensor<B, 3>, rhs: Tensor<B, 3>) -> Tensor<B, 3> {
    Tensor::from_primitive(TensorPrimitive::Float(B::blas_matmul(lhs.into_primitive().tensor(), rhs.into_primitive().tensor())))
}

/// One cuBLAS handle per device, created on first use in the current (cubecl's primary) context;
/// `stream` is the one it was last bound to (re-binding resets cuBLAS's workspace, so only on change).
struct Handle {
    raw: cbs::cublasHandle_t,
    stream: cbs::cudaStream_t,
}
// Only used under the mutex below.
unsafe impl Send for Handle {}

fn with_handle<T>(device: usize, stream: cbs::cudaStream_t, f: impl FnOnce(cbs::cublasHandle_t) -> T) -> T {
    static H: OnceLock<Mutex<HashMap<usize, Handle>>> = OnceLock::new();
    let mut map = H.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let h = map.entry(device).or_insert_with(|| Handle { raw: cb::create_handle().expect("cublasCreate"), stream: std::ptr::null_mut() });
    if h.stream != stream {
        unsafe { cb::set_stream(h.raw, stream) }.expect("cublasSetStream");
        h.stream = stream;
    }
    f(h.raw)
}

/// cuBLAS's op flag for a [`Trans`].
fn op(t: Trans) -> cbs::cublasOperation_t {
    match t {
        Trans::N => cbs::cublasOperation_t::CUBLAS_OP_N,
        Trans::T => cbs::cublasOperation_t::CUBLAS_OP_T,
    }
}

struct Operand {
    t: CubeTensor<CudaRuntime>,
    op: Trans,
    ld: usize,
    batch_stride: usize,
}

fn operand(t: CubeTensor<CudaRuntime>) -> Operand {
    let try_layout = |t: &CubeTensor<CudaRuntime>| {
        let (sh, st) = (t.meta.shape(), t.meta.strides());
        layout(sh[1], sh[2], st[1], st[2]).map(|(op, ld)| (op, ld, if sh[0] == 1 { 0 } else { st[0] }))
    };
    if let Some((op, ld, batch_stride)) = try_layout(&t) {
        return Operand { t, op, ld, batch_stride };
    }
    let t = into_contiguous(t);
    let (op, ld, batch_stride) = try_layout(&t).expect("a contiguous tensor has a cuBLAS layout");
    Operand { t, op, ld, batch_stride }
}

impl<F: FloatElement, I: IntElement, BT: BoolElement> BlasBackend for CubeBackend<CudaRuntime, F, I, BT> {
    fn blas_matmul(lhs: CubeTensor<CudaRuntime>, rhs: CubeTensor<CudaRuntime>) -> CubeTensor<CudaRuntime> {
        let dtype = lhs.dtype;
        gemm(lhs, rhs, dtype)
    }
}

/// `lhs · rhs` (rank 3, same dtype) with the result in `out` (the operands' dtype, or f32: cuBLAS
/// accumulates in f32 anyway, so a bf16 weight gradient can land in its f32 master directly).
pub fn gemm(lhs: CubeTensor<CudaRuntime>, rhs: CubeTensor<CudaRuntime>, out: DType) -> CubeTensor<CudaRuntime> {
    let dtype = lhs.dtype;
    assert_eq!(dtype, rhs.dtype, "cublas matmul: operand dtypes differ");
    let ([lb, m, k], [rb, k2, n]) = (lhs.meta.shape().dims::<3>(), rhs.meta.shape().dims::<3>());
    assert!(k == k2 && k > 0 && (lb == rb || lb == 1 || rb == 1), "cublas matmul: [{lb}, {m}, {k}] · [{rb}, {k2}, {n}]");
    let b = lb.max(rb);
    let (client, device) = (lhs.client.clone(), lhs.device.clone());
    let (a, w) = (operand(lhs), operand(rhs));
    let c = CubeTensor::new_contiguous(client.clone(), device.clone(), Shape::new([b, m, n]), client.empty(b * m * n * out.size()), out);
    if b * m * n == 0 {
        return c;
    }
    let (aop, ald, abs, wop, wld, wbs, index) = (a.op, a.ld, a.batch_stride, w.op, w.ld, w.batch_stride, device.index);
    enqueue([&a.t, &w.t, &c], move |[pa, pw, po], stream| {
        let side = |ptr, op, ld, stride| Side { ptr, op, ld, stride };
        RowGemm { batch: b, m, n, k, a: side(pa, aop, ald, abs), b: side(pw, wop, wld, wbs), c: side(po, Trans::N, n, m * n), dtype, out, beta: 0.0 }.run(index, stream as _)
    });
    c
}

/// One operand of a [`RowGemm`]: a row-major view as [`layout`] maps it, and its batch stride.
#[derive(Clone, Copy)]
pub(super) struct Side {
    pub ptr: u64,
    pub op: Trans,
    pub ld: usize,
    pub stride: usize,
}

/// One matrix (no batch stride) as a [`RowGemm`] operand.
pub(super) fn side(ptr: u64, op: Trans, ld: usize) -> Side {
    Side { ptr, op, ld, stride: 0 }
}

/// `c[i] = a[i] · b[i] + beta · c[i]` ([`RowGemm::run_from`]: `+ beta · src[i]`) on raw device pointers, row-major `[m, k] · [k, n]` in
/// `dtype` into `out` (`dtype` or f32), `batch` times; `c.op` is ignored.
pub(super) struct RowGemm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Side,
    pub b: Side,
    pub c: Side,
    pub dtype: DType,
    pub out: DType,
    pub beta: f32,
}

impl RowGemm {
    /// Queues it on `stream` with `device`'s cuBLAS handle (call from an [`enqueue`] task).
    pub fn run(&self, device: usize, stream: cbs::cudaStream_t) {
        self.run_from(self.c.ptr, device, stream)
    }

    /// The same with `beta ·` the matrix at `src` instead of `c`'s (laid out as `c`): `c = a·b +
    /// beta·src`, e.g. a residual added by the GEMM that writes a sublayer's output.
    pub fn run_from(&self, src: u64, device: usize, stream: cbs::cudaStream_t) {
        let cuda = |d: DType| match d {
            DType::F32 | DType::Flex32 => cbs::cudaDataType::CUDA_R_32F,
            DType::BF16 => cbs::cudaDataType::CUDA_R_16BF,
            DType::F16 => cbs::cudaDataType::CUDA_R_16F,
            d => panic!("cublas matmul: unsupported dtype {d:?}"),
        };
        let (ty, out_ty) = (cuda(self.dtype), cuda(self.out));
        let (b, m, n, k, dtype, out) = (self.batch, self.m, self.n, self.k, self.dtype, self.out);
        assert!(out == dtype || out_ty == cbs::cudaDataType::CUDA_R_32F, "cublas matmul: {dtype:?} operands into {out:?}");
        assert!([b, m, n, k].iter().all(|&v| v <= i32::MAX as usize), "cublas matmul: dims exceed i32");
        let compute = if ty == cbs::cudaDataType::CUDA_R_32F { cbs::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32 } else { cbs::cublasComputeType_t::CUBLAS_COMPUTE_32F };
        let (alpha, t0, (a, w, c)) = (1.0f32, std::time::Instant::now(), (self.a, self.b, self.c));
        if super::cublaslt::enabled() && super::cublaslt::run(self, src, device, stream as _) {
            return super::nvrtc::count_blas(t0);
        }
        if src != c.ptr && self.beta != 0.0 {
            // GemmEx reads and writes one C: copy `src` there first
            assert!(b == 1 && c.ld == n, "cublas matmul: a separate C source needs one dense matrix");
            unsafe { cudarc::driver::result::memcpy_dtod_async(c.ptr, src, m * n * out.size(), stream as _) }.expect("cuMemcpyDtoDAsync");
        }
        with_handle(device, stream, |h| unsafe {
            // Cᵀ (n × m, ldc) = Bᵀ (n × k) · Aᵀ (k × m)
            cb::gemm_strided_batched_ex(
                h,
                op(w.op),
                op(a.op),
                n as i32,
                m as i32,
                k as i32,
                &alpha as *const f32 as _,
                w.ptr as _,
                ty,
                w.ld as i32,
                w.stride as i64,
                a.ptr as _,
                ty,
                a.ld as i32,
                a.stride as i64,
                &self.beta as *const f32 as _,
                c.ptr as _,
                out_ty,
                c.ld as i32,
                c.stride as i64,
                b as i32,
                compute,
                cbs::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
            .unwrap_or_else(|e| panic!("cublasGemmStridedBatchedEx: {e:?} (b {b} m {m} k {k} n {n} {dtype:?} → {out:?})"));
        });
        super::nvrtc::count_blas(t0);
    }
}

impl<B: FusionBackend + BlasBackend> BlasBackend for Fusion<B> {
    fn blas_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct MatmulOp<B> {
            desc: CustomOpIr,
            _b: core::marker::PhantomData<B>,
        }
        impl<B: FusionBackend + BlasBackend> Operation<B::FusionRuntime> for MatmulOp<B> {
            fn execute(&self, h: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([l, r], [o]) = self.desc.as_fixed();
                let out = B::blas_matmul(h.get_float_tensor::<B>(l), h.get_float_tensor::<B>(r));
                h.register_float_tensor::<B>(&o.id, out);
            }
        }
        let client = lhs.client.clone();
        let shape = Shape::new([lhs.shape[0].max(rhs.shape[0]), lhs.shape[1], rhs.shape[2]]);
        let streams = OperationStreams::with_inputs([&lhs, &rhs]);
        let out = TensorIr::uninit(client.create_empty_handle(), shape, lhs.dtype);
        let desc = CustomOpIr::new("cublas_matmul", &[lhs.into_ir(), rhs.into_ir()], &[out]);
        client.register(streams, OperationIr::Custom(desc.clone()), MatmulOp::<B> { desc, _b: Default::default() }).output()
    }
}

impl<B: BlasBackend, C: CheckpointStrategy> BlasBackend for Autodiff<B, C> {
    fn blas_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MatmulBackward;
        impl<B: BlasBackend> Backward<B, 2> for MatmulBackward {
            type State = (NodeId, NodeId);
            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ck: &mut Checkpointer) {
                let [node_l, node_r] = ops.parents;
                let g = grads.consume::<B>(&ops.node);
                let (lhs, rhs): (FloatTensor<B>, FloatTensor<B>) = (ck.retrieve_node_output(ops.state.0), ck.retrieve_node_output(ops.state.1));
                let (lb, rb) = (lhs.shape()[0], rhs.shape()[0]);
                let b = lb.max(rb);
                // a side broadcast over the batch gets the sum of its per-batch gradients
                let reduce = |d: FloatTensor<B>, side: usize| if side == 1 && b > 1 { B::float_sum_dim(d, 0) } else { d };
                if let Some(node) = node_l {
                    let d = B::blas_matmul(g.clone(), B::float_swap_dims(rhs, 1, 2));
                    grads.register::<B>(node.id, reduce(d, lb));
                }
                if let Some(node) = node_r {
                    let d = B::blas_matmul(B::float_swap_dims(lhs, 1, 2), g);
                    grads.register::<B>(node.id, reduce(d, rb));
                }
            }
        }
        match MatmulBackward.prepare::<C>([lhs.node.clone(), rhs.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&lhs), prep.checkpoint(&rhs));
                prep.finish(state, B::blas_matmul(lhs.primitive, rhs.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::blas_matmul(lhs.primitive, rhs.primitive)),
        }
    }
}
