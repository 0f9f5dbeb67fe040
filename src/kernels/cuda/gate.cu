// The MLP gate's kernels (src/kernels/gate.rs); compiled after fused.cu, whose ld/st/lo/hi/pack
// helpers they use.

// The MLP's gate: y = silu(a)·u, silu(a) = a·σ(a), elementwise (one thread per element, strided),
// and its gradients from g: du = g·silu(a), da = g·u·σ(a)·(1 + a·(1 − σ(a))).
__device__ __forceinline__ float silu_mul(float a, float u) { return a / (1.f + __expf(-a)) * u; }
__device__ __forceinline__ void silu_mul_grad(float a, float u, float g, float& da, float& du) {
    float s = 1.f / (1.f + __expf(-a));
    du = g * a * s;
    da = g * u * s * (1.f + a * (1.f - s));
}
template <typename T>
__device__ void silu_mul_fwd(const T* a, const T* u, T* y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        st(y, i, silu_mul(ld(a, i), ld(u, i)));
}
template <typename T>
__device__ void silu_mul_bwd(const T* a, const T* u, const T* g, T* da, T* du, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float x, y;
        silu_mul_grad(ld(a, i), ld(u, i), ld(g, i), x, y);
        st(da, i, x);
        st(du, i, y);
    }
}
// bf16 pairs (n2 = n / 2 words; the host checks n is even and the buffers 4-byte aligned).
extern "C" __global__ void silu_mul_fwd_bf16x2(const unsigned* a, const unsigned* u, unsigned* y, long long n2) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n2; i += (long long)gridDim.x * blockDim.x) {
        unsigned wa = a[i], wu = u[i];
        y[i] = pack(silu_mul(lo(wa), lo(wu)), silu_mul(hi(wa), hi(wu)));
    }
}
extern "C" __global__ void silu_mul_bwd_bf16x2(const unsigned* a, const unsigned* u, const unsigned* g, unsigned* da, unsigned* du, long long n2) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n2; i += (long long)gridDim.x * blockDim.x) {
        unsigned wa = a[i], wu = u[i], wg = g[i];
        float a0, u0, a1, u1;
        silu_mul_grad(lo(wa), lo(wu), lo(wg), a0, u0);
        silu_mul_grad(hi(wa), hi(wu), hi(wg), a1, u1);
        da[i] = pack(a0, a1);
        du[i] = pack(u0, u1);
    }
}

#define GATE_KERNELS(T, NAME)                                                                                          \
    extern "C" __global__ void silu_mul_fwd_##NAME(const T* a, const T* u, T* y, long long n) {                       \
        silu_mul_fwd<T>(a, u, y, n);                                                                                    \
    }                                                                                                                  \
    extern "C" __global__ void silu_mul_bwd_##NAME(const T* a, const T* u, const T* g, T* da, T* du, long long n) {   \
        silu_mul_bwd<T>(a, u, g, da, du, n);                                                                            \
    }

GATE_KERNELS(float, f32)
GATE_KERNELS(bf16, bf16)
