// The vocabulary-side kernels: the token cross-entropy (src/kernels/cross_entropy.rs), the LM
// head's gradients scaled by the loss's upstream gradient (scale_by) and the embedding's gradient
// (embedding.rs).

// Block-wide (max, sum of exp) merge for the cross-entropy (blockDim.x a multiple of 32, ≤ 1024).
__device__ void block_logsumexp(float& m, float& s) {
    __shared__ float sm[32], ss[32];
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        float mm = fmaxf(m, m2);
        s = (mm == NEG_INF) ? 0.f : s * __expf(m - mm) + s2 * __expf(m2 - mm);
        m = mm;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nw = blockDim.x / 32;
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    if (warp == 0) {
        m = lane < nw ? sm[lane] : NEG_INF;
        s = lane < nw ? ss[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            float mm = fmaxf(m, m2);
            s = (mm == NEG_INF) ? 0.f : s * __expf(m - mm) + s2 * __expf(m2 - mm);
            m = mm;
        }
    }
}

// log Σ exp of the row xr [V] in one online pass (W logits per access; the host checks V is a
// multiple of W), one block per row; the result is valid in thread 0.
template <typename T, int W>
__device__ float row_logsumexp(const T* xr, int V) {
    float m = NEG_INF, s = 0.f;
    for (int j = threadIdx.x * W; j < V; j += blockDim.x * W) {
        float a[W];
        Vec<T, W>::load(xr + j, a);
#pragma unroll
        for (int k = 0; k < W; k++) {
            float v = a[k];
            if (v > m) { s = s * __expf(m - v) + 1.f; m = v; } else { s += __expf(v - m); }
        }
    }
    block_logsumexp(m, s);
    return m + __logf(s);
}

// dr[j] = (exp(xr[j] − lse) − [j = target]) · g over one row (dr may be xr: each thread reads
// its elements before it writes them).
template <typename T, int W>
__device__ void softmax_grad_row(const T* xr, T* dr, float lse, long long target, float g, int V) {
    for (int j = threadIdx.x * W; j < V; j += blockDim.x * W) {
        float a[W];
        Vec<T, W>::load(xr + j, a);
#pragma unroll
        for (int k = 0; k < W; k++) a[k] = (__expf(a[k] - lse) - (j + k == target ? 1.f : 0.f)) * g;
        Vec<T, W>::store(dr + j, a);
    }
}

// Token cross-entropy, one block per row of logits x [n, V]: lse[r] = log Σ exp x[r, :] and
// loss[r] = lse[r] − x[r, t[r]], both f32.
template <typename T, typename I, int W>
__device__ void ce_fwd(const T* x, const I* t, float* loss, float* lse, int V) {
    long long r = blockIdx.x;
    const T* xr = x + r * V;
    float l = row_logsumexp<T, W>(xr, V);
    if (threadIdx.x == 0) {
        lse[r] = l;
        loss[r] = l - ld(xr, (long long)t[r]);
    }
}

// Its backward, one block per row: dx[r, j] = (exp(x[r, j] − lse[r]) − [j = t[r]]) · g[r].
template <typename T, typename I, int W>
__device__ void ce_bwd(const T* x, const I* t, const float* lse, const float* g, T* dx, int V) {
    long long r = blockIdx.x;
    softmax_grad_row<T, W>(x + r * V, dx + r * V, lse[r], (long long)t[r], g[r], V);
}

// Both at once, for one row chunk of the LM head's logits (src/kernels/head.rs), one block per
// row: loss[r] as ce_fwd's, then x[r, :] overwritten by its gradient under a uniform upstream
// `scale` (the mean's 1/n).
template <typename T, typename I, int W>
__device__ void ce_grad(T* x, const I* t, float* loss, float scale, int V) {
    __shared__ float row_lse;
    long long r = blockIdx.x, target = (long long)t[r];
    T* xr = x + r * V;
    float l = row_logsumexp<T, W>(xr, V);
    if (threadIdx.x == 0) {
        row_lse = l;
        loss[r] = l - ld(xr, target);  // read before the row is overwritten below
    }
    __syncthreads();
    softmax_grad_row<T, W>(xr, xr, row_lse, target, scale, V);
}

// ce_grad with the row kept in shared memory (V·sizeof(T) bytes, dynamic; the host picks it where
// that fits): the logits are read from global memory once instead of twice. As they arrive, each
// thread keeps a running max and Σ exp over its logits (rescaled when a round of loads raises the
// max), so the log-sum-exp needs no pass of its own over shared memory; then the gradient is
// written over them. The same quantities as ce_grad's (they differ by rounding only).
#define CE_ROW_LOADS 4
template <typename T, typename I, int W>
__device__ void ce_grad_row(T* x, const I* t, float* loss, float scale, int V) {
    extern __shared__ Word4 row[];  // V / W words of W logits
    __shared__ float row_lse;
    long long r = blockIdx.x, target = (long long)t[r];
    T* xr = x + r * V;
    const T* sr = reinterpret_cast<const T*>(row);
    float xt = threadIdx.x == 0 ? ld(xr, target) : 0.f;  // read before any thread writes the row
    int n = V / W;
    float m = NEG_INF, s = 0.f;
    for (int i0 = threadIdx.x; i0 < n; i0 += CE_ROW_LOADS * blockDim.x) {
        Word4 w[CE_ROW_LOADS];  // these loads all issued before any is used
#pragma unroll
        for (int u = 0; u < CE_ROW_LOADS; u++)
            if (i0 + u * blockDim.x < n) w[u] = reinterpret_cast<const Word4*>(xr)[i0 + u * blockDim.x];
        float top = NEG_INF;
#pragma unroll
        for (int u = 0; u < CE_ROW_LOADS; u++) {
            if (i0 + u * blockDim.x >= n) break;
            row[i0 + u * blockDim.x] = w[u];
            float a[W];
            Vec<T, W>::load(reinterpret_cast<const T*>(&w[u]), a);
#pragma unroll
            for (int k = 0; k < W; k++) top = fmaxf(top, a[k]);
        }
        if (top > m) s *= __expf(m - top), m = top;  // from m = −∞: s stays 0
        if (m == NEG_INF) continue;
        // the words again (registers: unpacking once for both kept 32 floats live, and two blocks
        // of 512 threads per SM leave 64 registers a thread)
#pragma unroll
        for (int u = 0; u < CE_ROW_LOADS; u++) {
            if (i0 + u * blockDim.x >= n) break;
            float a[W];
            Vec<T, W>::load(reinterpret_cast<const T*>(&w[u]), a);
#pragma unroll
            for (int k = 0; k < W; k++) s += __expf(a[k] - m);
        }
    }
    block_logsumexp(m, s);  // its barrier also makes the row visible to every thread
    if (threadIdx.x == 0) {
        row_lse = m + __logf(s);
        loss[r] = row_lse - xt;
    }
    __syncthreads();
    float lse = row_lse;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float a[W];
        Vec<T, W>::load(sr + i * W, a);
        int j = i * W;
#pragma unroll
        for (int k = 0; k < W; k++) a[k] = (__expf(a[k] - lse) - (j + k == target ? 1.f : 0.f)) * scale;
        Vec<T, W>::store(xr + j, a);
    }
}

// Embedding gradient: dw[ids[r], c] += g[r, c] for g [n, D], into a zeroed f32 dw [V, D].
template <typename T, typename I>
__device__ void embed_bwd(const I* ids, const T* g, float* dw, long long n, int D) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * D) return;
    long long r = e / D;
    atomicAdd(dw + (long long)ids[r] * D + (e % D), ld(g, e));
}

#define CE_KERNELS(T, NAME, I, INAME, W)                                                                               \
    extern "C" __global__ void ce_fwd_##NAME##_##INAME(const T* x, const I* t, float* loss, float* lse, int V) {       \
        GRID_DEPENDENCY();                                                                                              \
        ce_fwd<T, I, W>(x, t, loss, lse, V);                                                                            \
    }                                                                                                                  \
    extern "C" __global__ void ce_bwd_##NAME##_##INAME(const T* x, const I* t, const float* lse, const float* g, T* dx, \
                                                       int V) {                                                        \
        GRID_DEPENDENCY();                                                                                              \
        ce_bwd<T, I, W>(x, t, lse, g, dx, V);                                                                           \
    }                                                                                                                  \
    extern "C" __global__ void ce_grad_##NAME##_##INAME(T* x, const I* t, float* loss, float scale, int V) {           \
        GRID_DEPENDENCY();                                                                                              \
        ce_grad<T, I, W>(x, t, loss, scale, V);                                                                         \
    }
#define CE_ROW_KERNEL(T, NAME, I, INAME, W)                                                                            \
    extern "C" __global__ void ce_grad_row_##NAME##_##INAME(T* x, const I* t, float* loss, float scale, int V) {       \
        GRID_DEPENDENCY();                                                                                              \
        ce_grad_row<T, I, W>(x, t, loss, scale, V);                                                                     \
    }
#define EMBED_KERNELS(T, NAME, I, INAME)                                                                               \
    extern "C" __global__ void embed_bwd_##NAME##_##INAME(const I* ids, const T* g, float* dw, long long n, int D) {   \
        GRID_DEPENDENCY();                                                                                              \
        embed_bwd<T, I>(ids, g, dw, n, D);                                                                              \
    }
#define TOKEN_KERNELS(I, INAME)                                                                                        \
    CE_KERNELS(float, f32, I, INAME, 1)                                                                                \
    CE_KERNELS(bf16, bf16, I, INAME, 1)                                                                                \
    CE_KERNELS(float, f32_v, I, INAME, 4)                                                                              \
    CE_KERNELS(bf16, bf16_v, I, INAME, 8)                                                                              \
    CE_ROW_KERNEL(float, f32_v, I, INAME, 4)                                                                           \
    CE_ROW_KERNEL(bf16, bf16_v, I, INAME, 8)                                                                           \
    EMBED_KERNELS(float, f32, I, INAME)                                                                                \
    EMBED_KERNELS(bf16, bf16, I, INAME)

TOKEN_KERNELS(int, i32)
TOKEN_KERNELS(long long, i64)

// y = x · g[0] (FusedBackend::scale_by: the LM head's dx and dw, formed in the forward); in place
// (y = x) nothing is done where g[0] is 1.
template <typename T>
__device__ void scale_by(const T* x, T* y, const float* g, long long n) {
    float s = *g;
    if (s == 1.f && x == y) return;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) st(y, i, ld(x, i) * s);
}
extern "C" __global__ void scale_by_f32(const float* x, float* y, const float* g, long long n) { GRID_DEPENDENCY(); scale_by(x, y, g, n); }
extern "C" __global__ void scale_by_bf16(const bf16* x, bf16* y, const float* g, long long n) { GRID_DEPENDENCY(); scale_by(x, y, g, n); }
