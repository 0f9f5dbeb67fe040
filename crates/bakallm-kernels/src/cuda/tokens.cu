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

// ce_grad with the rows in shared memory (dynamic, NB · V · sizeof(T) bytes; the host picks it
// where that fits, from sm_80 on): each block loops over rows r = blockIdx.x, + gridDim.x. A row's
// logits are copied into shared memory by cp.async (every copy in flight at once, no registers
// held), read from there for the log-sum-exp (a running max and Σ exp per thread, rescaled when a
// word raises the max) and for the gradient, which is written over the row in global memory. With
// NB = 2 buffers the next row's copies are issued before this row's work starts, so the reads of
// the logits never wait on the gradient's writes; with NB = 1 (a row too long for two) they are
// issued after it. The same quantities as ce_grad's (they differ by rounding only).
template <typename T, typename I, int W, int NB>
__device__ void ce_grad_rows(T* x, const I* t, float* loss, float scale, int V, int rows) {
    extern __shared__ Word4 row[];  // NB buffers of V / W words of W logits
    __shared__ float row_lse;
    int n = V / W;
    auto copy = [&](long long r, int b) {  // row r into buffer b, one commit group
        if (r < rows) {
            const Word4* src = reinterpret_cast<const Word4*>(x + r * V);
            unsigned dst = smem(row + b * n);
            for (int i = threadIdx.x; i < n; i += blockDim.x) cp16(dst + i * 16, reinterpret_cast<const bf16*>(src + i), true);
        }
        cp_commit();
    };
    long long r = blockIdx.x;
    copy(r, 0);
    for (int b = 0; r < rows; r += gridDim.x, b = (b + 1) % NB) {
        if (NB == 2) {
            copy(r + gridDim.x, 1 - b);  // buffer 1 − b was freed by the last iteration's final barrier
            cp_wait_but_newest();
        } else {
            cp_wait_all();
        }
        __syncthreads();  // every thread's copies of row r have landed
        const Word4* words = row + b * n;
        float m = NEG_INF, s = 0.f;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float a[W];
            Vec<T, W>::load(reinterpret_cast<const T*>(words + i), a);
            float top = a[0];
#pragma unroll
            for (int k = 1; k < W; k++) top = fmaxf(top, a[k]);
            if (top > m) s *= ex2((m - top) * LOG2E), m = top;  // from m = −∞: s stays 0
            if (m == NEG_INF) continue;
            float m2 = m * LOG2E;
#pragma unroll
            for (int k = 0; k < W; k++) s += ex2(fmaf(a[k], LOG2E, -m2));
        }
        block_logsumexp(m, s);
        long long target = (long long)t[r];
        if (threadIdx.x == 0) {
            row_lse = m + __logf(s);
            loss[r] = row_lse - ld(reinterpret_cast<const T*>(words), target);
        }
        __syncthreads();
        float lse2 = row_lse * LOG2E;
        T* xr = x + r * V;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float a[W];
            Vec<T, W>::load(reinterpret_cast<const T*>(words + i), a);
            long long j = (long long)i * W;
#pragma unroll
            for (int k = 0; k < W; k++) a[k] = ex2(fmaf(a[k], LOG2E, -lse2)) * scale;
            if (target - j >= 0 && target - j < W)  // the one word holding the target: − scale there
#pragma unroll
                for (int k = 0; k < W; k++) a[k] -= j + k == target ? scale : 0.f;
            Vec<T, W>::store(xr + j, a);
        }
        __syncthreads();  // buffer b, row_lse and block_logsumexp's slots are free again
        if (NB == 1) copy(r + gridDim.x, 0);
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
#define CE_ROWS_KERNEL(T, NAME, I, INAME, W, NB)                                                                       \
    extern "C" __global__ void __launch_bounds__(1024)                                                                 \
        ce_grad_rows##NB##_##NAME##_##INAME(T* x, const I* t, float* loss, float scale, int V, int rows) {             \
        GRID_DEPENDENCY();                                                                                              \
        ce_grad_rows<T, I, W, NB>(x, t, loss, scale, V, rows);                                                          \
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
    CE_ROWS_KERNEL(float, f32_v, I, INAME, 4, 1)                                                                       \
    CE_ROWS_KERNEL(float, f32_v, I, INAME, 4, 2)                                                                       \
    CE_ROWS_KERNEL(bf16, bf16_v, I, INAME, 8, 1)                                                                       \
    CE_ROWS_KERNEL(bf16, bf16_v, I, INAME, 8, 2)                                                                       \
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
