// The MLP gate's kernels (src/kernels/gate.rs); compiled after common.cu, whose helpers they use.

// The MLP's gate: y = silu(a)·u, silu(a) = a·σ(a), elementwise (W elements per thread, grid-strided),
// and its gradients from g: du = g·silu(a), da = g·u·σ(a)·(1 + a·(1 − σ(a))). n counts W-element
// groups (the host checks the length is a multiple of W).
__device__ __forceinline__ float silu_mul(float a, float u) { return a / (1.f + __expf(-a)) * u; }
__device__ __forceinline__ void silu_mul_grad(float a, float u, float g, float& da, float& du) {
    float s = 1.f / (1.f + __expf(-a));
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
        float av[W], uv[W], gv[W];
        Vec<T, W>::load(a + i * W, av);
        Vec<T, W>::load(u + i * W, uv);
        Vec<T, W>::load(g + i * W, gv);
#pragma unroll
        for (int k = 0; k < W; k++) silu_mul_grad(av[k], uv[k], gv[k], av[k], uv[k]);
        Vec<T, W>::store(da + i * W, av);
        Vec<T, W>::store(du + i * W, uv);
    }
}

#define GATE_KERNELS(T, NAME, W)                                                                                       \
    extern "C" __global__ void silu_mul_fwd_##NAME(const T* a, const T* u, T* y, long long n) {                       \
        silu_mul_fwd<T, W>(a, u, y, n);                                                                                 \
    }                                                                                                                  \
    extern "C" __global__ void silu_mul_bwd_##NAME(const T* a, const T* u, const T* g, T* da, T* du, long long n) {   \
        silu_mul_bwd<T, W>(a, u, g, da, du, n);                                                                         \
    }

GATE_KERNELS(float, f32, 1)
GATE_KERNELS(bf16, bf16, 1)
GATE_KERNELS(float, f32_v, 4)
GATE_KERNELS(bf16, bf16_v, 8)
