// The MLP gate's kernels (src/kernels/gate.rs, mlp.rs); compiled after common.cu, whose helpers they use.

// The MLP's gate: y = silu(a)·u, silu(a) = a·σ(a), elementwise (W elements per thread, grid-strided),
// and its gradients from g: du = g·silu(a), da = g·u·σ(a)·(1 + a·(1 − σ(a))). n counts W-element
// groups (the host checks the length is a multiple of W).
// σ(a) with the fast reciprocal (MUFU.RCP, 2 ulp; bf16 keeps 8 bits): an IEEE division is a fast
// path plus a slow-path call, and these memory-bound kernels took one or two per element (SASS:
// 9–21 calls per kernel). For a < −88, 1 + e^(−a) overflows and σ(a) = 0.
__device__ __forceinline__ float sigmoid(float a) { return __fdividef(1.f, 1.f + __expf(-a)); }
__device__ __forceinline__ float silu_mul(float a, float u) { return a * sigmoid(a) * u; }
// y = silu(a)·u and both gradients from one σ(a)
__device__ __forceinline__ void silu_mul_grad(float a, float u, float g, float& y, float& da, float& du) {
    float s = sigmoid(a);
    y = a * s * u;
    du = g * a * s;
    da = g * u * s * (1.f + a * (1.f - s));
}
template <typename T, int W>
__device__ void silu_mul_fwd(const T* a, const T* u, T* y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float av[W], uv[W];
        Vec<T, W>::load(a + i * W, av);
        Vec<T, W>::load(u + i * W, uv);
#pragma unroll
        for (int k = 0; k < W; k++) av[k] = silu_mul(av[k], uv[k]);
        Vec<T, W>::store(y + i * W, av);
    }
}
template <typename T, int W>
__device__ void silu_mul_bwd(const T* a, const T* u, const T* g, T* da, T* du, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float av[W], uv[W], gv[W], y;
        Vec<T, W>::load(a + i * W, av);
        Vec<T, W>::load(u + i * W, uv);
        Vec<T, W>::load(g + i * W, gv);
#pragma unroll
        for (int k = 0; k < W; k++) silu_mul_grad(av[k], uv[k], gv[k], y, av[k], uv[k]);
        Vec<T, W>::store(da + i * W, av);
        Vec<T, W>::store(du + i * W, uv);
    }
}

// The same gate over the fused MLP's h [rows, 2F] (src/kernels/mlp.rs), its rows ldh elements
// apart (2F, or wider where h lies within the parallel layer's input projections): the gate
// projection a in columns [0, F), the up projection u in [F, 2F). y[r, c] = silu(a[r, c])·u[r, c]
// into y [rows, F]; n counts W-element groups of y (the host checks F and ldh are multiples of W).
template <typename T, int W>
__device__ void glu_fwd(const T* h, T* y, long long n, long long F, long long ldh) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long e = i * W, r = e / F;
        const T* a = h + e + r * (ldh - F);  // h[r, c] with c = e − r·F
        float av[W], uv[W];
        Vec<T, W>::load(a, av);
        Vec<T, W>::load(a + F, uv);
#pragma unroll
        for (int k = 0; k < W; k++) av[k] = silu_mul(av[k], uv[k]);
        Vec<T, W>::store(y + e, av);
    }
}
// Its backward from g [rows, F]: dh (h's layout) gets da and du side by side, and g is overwritten
// by y, recomputed here for the down projection's weight gradient (so the forward keeps no y).
template <typename T, int W>
__device__ void glu_bwd(const T* h, T* g, T* dh, long long n, long long F, long long ldh) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long e = i * W, r = e / F, at = e + r * (ldh - F);
        float av[W], uv[W], gv[W], yv[W];
        Vec<T, W>::load(h + at, av);
        Vec<T, W>::load(h + at + F, uv);
        Vec<T, W>::load(g + e, gv);
#pragma unroll
        for (int k = 0; k < W; k++) silu_mul_grad(av[k], uv[k], gv[k], yv[k], av[k], uv[k]);
        Vec<T, W>::store(dh + at, av);
        Vec<T, W>::store(dh + at + F, uv);
        Vec<T, W>::store(g + e, yv);
    }
}

// Up to 8 f32 weights [rows, cols] cast into columns [off, off + cols) of T [rows, ld], one per
// blockIdx.y, in one launch: a sublayer's weights side by side in one GEMM operand (one launch
// per sublayer instead of one per weight: Nsight Compute, pristine step, 84 launches 0.79 ms).
// W consecutive columns per thread (W = 8: every cols, ld, off a multiple of 8, pointers
// 16-byte aligned), 32-bit index math (64-bit division is a software routine).
struct CastJob {
    const float* src;
    void* dst;
    unsigned rows, cols, ld, off;
};
struct CastJobs {
    CastJob j[8];
};
template <typename T, int W>
__device__ void cast_many(const CastJobs& t) {
    const CastJob& j = t.j[blockIdx.y];
    unsigned per_row = j.cols / W, n = j.rows * per_row;
    T* dst = reinterpret_cast<T*>(j.dst);
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned r = i / per_row, c = (i - r * per_row) * W;
        const float* src = j.src + (size_t)r * j.cols + c;
        float v[W];
        if (W == 8) {
            Vec<float, 4>::load(src, v);
            Vec<float, 4>::load(src + 4, v + 4);
        } else {
#pragma unroll
            for (int k = 0; k < W; k++) v[k] = src[k];
        }
        Vec<T, W>::store(dst + (size_t)r * j.ld + j.off + c, v);
    }
}

#define GATE_KERNELS(T, NAME, W)                                                                                       \
    extern "C" __global__ void silu_mul_fwd_##NAME(const T* a, const T* u, T* y, long long n) {                       \
        GRID_DEPENDENCY();                                                                                              \
        silu_mul_fwd<T, W>(a, u, y, n);                                                                                 \
    }                                                                                                                  \
    extern "C" __global__ void silu_mul_bwd_##NAME(const T* a, const T* u, const T* g, T* da, T* du, long long n) {   \
        GRID_DEPENDENCY();                                                                                              \
        silu_mul_bwd<T, W>(a, u, g, da, du, n);                                                                         \
    }                                                                                                                  \
    extern "C" __global__ void glu_fwd_##NAME(const T* h, T* y, long long n, long long F, long long ldh) {            \
        GRID_DEPENDENCY();                                                                                              \
        glu_fwd<T, W>(h, y, n, F, ldh);                                                                                 \
    }                                                                                                                  \
    extern "C" __global__ void glu_bwd_##NAME(const T* h, T* g, T* dh, long long n, long long F, long long ldh) {      \
        GRID_DEPENDENCY();                                                                                              \
        glu_bwd<T, W>(h, g, dh, n, F, ldh);                                                                             \
    }

GATE_KERNELS(float, f32, 1)
GATE_KERNELS(bf16, bf16, 1)
GATE_KERNELS(float, f32_v, 4)
GATE_KERNELS(bf16, bf16_v, 8)
extern "C" __global__ void cast_many_f32(CastJobs t) { GRID_DEPENDENCY(); cast_many<float, 1>(t); }
extern "C" __global__ void cast_many_bf16(CastJobs t) { GRID_DEPENDENCY(); cast_many<bf16, 1>(t); }
extern "C" __global__ void cast_many_bf16_v(CastJobs t) { GRID_DEPENDENCY(); cast_many<bf16, 8>(t); }
