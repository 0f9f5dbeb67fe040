// bakallm's own CUDA kernels, compiled at run time with NVRTC (src/kernels/nvrtc.rs) and launched on
// cubecl's stream. No headers: bf16 is handled as its bit pattern (round-to-nearest-even on store,
// as __float2bfloat16), so the same source compiles with any toolkit. All math is in f32.
// Each `extern "C"` kernel is instantiated per element type by the macros at the bottom; the Rust
// side picks the name (`<kernel>_<float type>[_<int type>]`). gate.cu (the MLP gate) and optim.cu
// (gradient norm, AdamW) follow this file in the same NVRTC module and use its helpers.

typedef unsigned short bf16;
#define NEG_INF __int_as_float(0xff800000)  // no math.h under NVRTC

__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16* p, long long i) { return __uint_as_float(((unsigned)p[i]) << 16); }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ bf16 to_bf16(float v) {
    unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}
__device__ __forceinline__ void st(bf16* p, long long i, float v) { p[i] = to_bf16(v); }
// Two bf16 in one 32-bit word (element 2i low, 2i + 1 high): half the load/store instructions.
__device__ __forceinline__ float lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ unsigned pack(float a, float b) { return (unsigned)to_bf16(a) | ((unsigned)to_bf16(b) << 16); }

// The row of a [rows, L] matrix this warp handles (one warp per row), −1 past the end.
__device__ __forceinline__ long long warp_row(long long rows) {
    long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    return row < rows ? row : -1;
}
// Row i of the attention bias for row `row` of the scores [b·H, L, L] (strides 0 broadcast).
template <typename T>
__device__ __forceinline__ const T* bias_row(const T* bias, long long row, int L, int H, long long sb, long long sh) {
    long long bh = row / L;
    return bias + (bh / H) * sb + (bh % H) * sh + (row % L) * L;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Causal attention probabilities: p = softmax(s · scale + bias) over each row i of s [bh, L, L]
// (one warp per row), keys j > i masked: they are neither read nor summed, and get exact zeros.
// bias is [*, *, L, L] with strides (bias_sb, bias_sh) for batch and head (0 = broadcast); its −∞
// entries give zeros too, and a row that is all −∞ gives all zeros.
template <typename T>
__device__ void softmax_fwd(const T* s, const T* bias, T* p, long long rows, int L, int H, long long bias_sb, long long bias_sh, float scale) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31, i = (int)(row % L);
    const T* sr = s + row * L;
    const T* br = bias_row(bias, row, L, H, bias_sb, bias_sh);
    T* pr = p + row * L;
    float m = NEG_INF;
    for (int j = lane; j <= i; j += 32) m = fmaxf(m, ld(sr, j) * scale + ld(br, j));
    m = warp_max(m);
    float sum = 0.f;
    if (m != NEG_INF)
        for (int j = lane; j <= i; j += 32) sum += __expf(ld(sr, j) * scale + ld(br, j) - m);
    sum = warp_sum(sum);
    float inv = sum > 0.f ? 1.f / sum : 0.f;
    for (int j = lane; j < L; j += 32) st(pr, j, (j > i || m == NEG_INF) ? 0.f : __expf(ld(sr, j) * scale + ld(br, j) - m) * inv);
}

// Its backward: ds = scale · p ⊙ (dp − Σ_j dp_j p_j), row by row (one warp per row); p is zero for
// j > i, so those entries are written as zeros without reading p or dp.
template <typename T>
__device__ void softmax_bwd(const T* p, const T* dp, T* ds, long long rows, int L, float scale) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31, i = (int)(row % L);
    const T* pr = p + row * L;
    const T* dr = dp + row * L;
    T* out = ds + row * L;
    float dot = 0.f;
    for (int j = lane; j <= i; j += 32) dot += ld(pr, j) * ld(dr, j);
    dot = warp_sum(dot);
    for (int j = lane; j < L; j += 32) st(out, j, j > i ? 0.f : scale * ld(pr, j) * (ld(dr, j) - dot));
}

// The same two, for rows of at most 32·K keys: each lane keeps its K scores in registers, so the
// row is read once instead of once per pass.
template <typename T, int K>
__device__ void softmax_fwd_reg(const T* s, const T* bias, T* p, long long rows, int L, int H, long long bias_sb, long long bias_sh, float scale) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31, i = (int)(row % L);
    const T* sr = s + row * L;
    const T* br = bias_row(bias, row, L, H, bias_sb, bias_sh);
    float v[K];
    float m = NEG_INF;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int j = lane + 32 * k;
        v[k] = j <= i ? ld(sr, j) * scale + ld(br, j) : NEG_INF;
        m = fmaxf(m, v[k]);
    }
    m = warp_max(m);
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        v[k] = (v[k] == NEG_INF) ? 0.f : __expf(v[k] - m);
        sum += v[k];
    }
    sum = warp_sum(sum);
    float inv = sum > 0.f ? 1.f / sum : 0.f;
    T* pr = p + row * L;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int j = lane + 32 * k;
        if (j < L) st(pr, j, v[k] * inv);
    }
}

template <typename T, int K>
__device__ void softmax_bwd_reg(const T* p, const T* dp, T* ds, long long rows, int L, float scale) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31, i = (int)(row % L);
    const T* pr = p + row * L;
    const T* dr = dp + row * L;
    float pv[K], dv[K];
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int j = lane + 32 * k;
        pv[k] = j <= i ? ld(pr, j) : 0.f;
        dv[k] = j <= i ? ld(dr, j) : 0.f;
        dot += pv[k] * dv[k];
    }
    dot = warp_sum(dot);
    T* out = ds + row * L;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int j = lane + 32 * k;
        if (j < L) st(out, j, scale * pv[k] * (dv[k] - dot));
    }
}

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

// Token cross-entropy, one block per row of logits x [n, V]: lse[r] = log Σ exp x[r, :] and
// loss[r] = lse[r] − x[r, t[r]], both f32, in one online pass over the row.
template <typename T, typename I>
__device__ void ce_fwd(const T* x, const I* t, float* loss, float* lse, int V) {
    long long r = blockIdx.x;
    const T* xr = x + r * V;
    float m = NEG_INF, s = 0.f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float v = ld(xr, j);
        if (v > m) { s = s * __expf(m - v) + 1.f; m = v; } else { s += __expf(v - m); }
    }
    block_logsumexp(m, s);
    if (threadIdx.x == 0) {
        float l = m + __logf(s);
        lse[r] = l;
        loss[r] = l - ld(xr, (long long)t[r]);
    }
}

// Its backward, one block per row: dx[r, j] = (exp(x[r, j] − lse[r]) − [j = t[r]]) · g[r].
template <typename T, typename I>
__device__ void ce_bwd(const T* x, const I* t, const float* lse, const float* g, T* dx, int V) {
    long long r = blockIdx.x;
    const T* xr = x + r * V;
    T* dr = dx + r * V;
    float l = lse[r], gr = g[r];
    long long target = (long long)t[r];
    for (int j = threadIdx.x; j < V; j += blockDim.x) st(dr, j, (__expf(ld(xr, j) - l) - (j == target ? 1.f : 0.f)) * gr);
}

// Embedding gradient: dw[ids[r], c] += g[r, c] for g [n, D], into a zeroed f32 dw [V, D].
template <typename T, typename I>
__device__ void embed_bwd(const I* ids, const T* g, float* dw, long long n, int D) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * D) return;
    long long r = e / D;
    atomicAdd(dw + (long long)ids[r] * D + (e % D), ld(g, e));
}

// Head split with an optional rotation (RoPE, xPos): y [b·H, L, hd] from x [b, L, H·hd],
// y = x·c + rotate_half(x)·s with rotate_half([x1, x2]) = [−x2, x1] and tables c, s [L, hd];
// rot = 0: a plain split (c, s unused). Index math in 32 bits where it fits (I = unsigned): 64-bit
// division is a software routine, and these kernels are all index math and copies.
template <typename T, typename I>
__device__ void heads_split(const T* x, const T* c, const T* s, T* y, I n, I L, I H, I hd, int rot) {
    I e = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    I j = e % hd, r = e / hd, t = r % L, bh = r / L;
    I src = ((bh / H) * L + t) * H * hd + (bh % H) * hd;
    float v = ld(x, src + j);
    if (rot) {
        I half = hd / 2;
        float partner = j < half ? -ld(x, src + j + half) : ld(x, src + j - half);
        v = v * ld(c, t * hd + j) + partner * ld(s, t * hd + j);
    }
    st(y, e, v);
}

// Its adjoint: the split's backward, and (rot = 0) the head merge. dx [b, L, H·hd] from
// g [b·H, L, hd]: dx_j = g_j·c_j + (j < half ? g_{j+half}·s_{j+half} : −g_{j−half}·s_{j−half}).
template <typename T, typename I>
__device__ void heads_merge(const T* g, const T* c, const T* s, T* dx, I n, I L, I H, I hd, int rot) {
    I e = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    I col = e % (H * hd), r = e / (H * hd);
    I t = r % L, h = col / hd, j = col % hd;
    I src = (((r / L) * H + h) * L + t) * hd;
    float v = ld(g, src + j);
    if (rot) {
        I half = hd / 2, p = j < half ? j + half : j - half;
        v = v * ld(c, t * hd + j) + (j < half ? 1.f : -1.f) * ld(g, src + p) * ld(s, t * hd + p);
    }
    st(dx, e, v);
}

// LayerNorm (rms = 0) or RMSNorm (rms = 1) over the last dim of x [rows, D], one warp per row, in
// f32: y = (x − mean)·rstd·w + b (RMSNorm: mean = 0, no b), rstd = 1/√(var + eps); keeps mean and
// rstd per row for the backward. w, b are f32 (the master weights).
template <typename T>
__device__ void norm_fwd(const T* x, const float* w, const float* b, T* y, float* mean, float* rstd, long long rows, int D, float eps, int rms) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31;
    const T* xr = x + row * D;
    float mu = 0.f;
    if (!rms) {
        for (int j = lane; j < D; j += 32) mu += ld(xr, j);
        mu = warp_sum(mu) / D;
    }
    float var = 0.f;
    for (int j = lane; j < D; j += 32) { float c = ld(xr, j) - mu; var += c * c; }
    float r = rsqrtf(warp_sum(var) / D + eps);
    T* yr = y + row * D;
    for (int j = lane; j < D; j += 32) st(yr, j, (ld(xr, j) - mu) * r * w[j] + (rms ? 0.f : b[j]));
    if (lane == 0) { mean[row] = mu; rstd[row] = r; }
}

// Its backward: dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂)) (RMSNorm: without the first mean),
// x̂ = (x − mean)·rstd; dw += Σ_rows g·x̂ and db += Σ_rows g into zeroed f32 [D] (a block's rows
// summed in shared memory, 2·D floats, then one atomic per column). Rows are split over warps.
template <typename T>
__device__ void norm_bwd(const T* g, const T* x, const float* w, const float* mean, const float* rstd, T* dx, float* dw, float* db, long long rows, int D, int rms, int rows_per_block) {
    extern __shared__ float acc[];  // [2·D]: dw then db partial sums
    for (int j = threadIdx.x; j < 2 * D; j += blockDim.x) acc[j] = 0.f;
    __syncthreads();
    int lane = threadIdx.x & 31, warps = blockDim.x / 32;
    long long first = (long long)blockIdx.x * rows_per_block;
    for (long long row = first + threadIdx.x / 32; row < first + rows_per_block && row < rows; row += warps) {
        const T* gr = g + row * D;
        const T* xr = x + row * D;
        float mu = mean[row], r = rstd[row], s1 = 0.f, s2 = 0.f;
        for (int j = lane; j < D; j += 32) {
            float gw = ld(gr, j) * w[j], xh = (ld(xr, j) - mu) * r;
            s1 += gw;
            s2 += gw * xh;
        }
        s1 = rms ? 0.f : warp_sum(s1) / D;
        s2 = warp_sum(s2) / D;
        T* dr = dx + row * D;
        for (int j = lane; j < D; j += 32) {
            float gj = ld(gr, j), xh = (ld(xr, j) - mu) * r;
            st(dr, j, r * (gj * w[j] - s1 - xh * s2));
            atomicAdd(acc + j, gj * xh);
            atomicAdd(acc + D + j, gj);
        }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        atomicAdd(dw + j, acc[j]);
        if (db) atomicAdd(db + j, acc[D + j]);
    }
}

#define FLOAT_KERNELS(T, NAME)                                                                                         \
    extern "C" __global__ void softmax_fwd_##NAME(const T* s, const T* bias, T* p, long long rows, int L, int H,       \
                                                  long long bias_sb, long long bias_sh, float scale) {                 \
        if (L <= 512) softmax_fwd_reg<T, 16>(s, bias, p, rows, L, H, bias_sb, bias_sh, scale);                          \
        else if (L <= 1024) softmax_fwd_reg<T, 32>(s, bias, p, rows, L, H, bias_sb, bias_sh, scale);                    \
        else softmax_fwd<T>(s, bias, p, rows, L, H, bias_sb, bias_sh, scale);                                           \
    }                                                                                                                  \
    extern "C" __global__ void softmax_bwd_##NAME(const T* p, const T* dp, T* ds, long long rows, int L, float scale) { \
        if (L <= 512) softmax_bwd_reg<T, 16>(p, dp, ds, rows, L, scale);                                                \
        else if (L <= 1024) softmax_bwd_reg<T, 32>(p, dp, ds, rows, L, scale);                                          \
        else softmax_bwd<T>(p, dp, ds, rows, L, scale);                                                                 \
    }                                                                                                                  \
    extern "C" __global__ void heads_split_##NAME(const T* x, const T* c, const T* s, T* y, long long n, int L, int H,  \
                                                  int hd, int rot) {                                                   \
        if (n < 0xffffffffLL) heads_split<T, unsigned>(x, c, s, y, n, L, H, hd, rot);                                    \
        else heads_split<T, long long>(x, c, s, y, n, L, H, hd, rot);                                                   \
    }                                                                                                                  \
    extern "C" __global__ void heads_merge_##NAME(const T* g, const T* c, const T* s, T* dx, long long n, int L, int H, \
                                                  int hd, int rot) {                                                   \
        if (n < 0xffffffffLL) heads_merge<T, unsigned>(g, c, s, dx, n, L, H, hd, rot);                                   \
        else heads_merge<T, long long>(g, c, s, dx, n, L, H, hd, rot);                                                  \
    }                                                                                                                  \
    extern "C" __global__ void norm_fwd_##NAME(const T* x, const float* w, const float* b, T* y, float* mean,          \
                                               float* rstd, long long rows, int D, float eps, int rms) {               \
        norm_fwd<T>(x, w, b, y, mean, rstd, rows, D, eps, rms);                                                         \
    }                                                                                                                  \
    extern "C" __global__ void norm_bwd_##NAME(const T* g, const T* x, const float* w, const float* mean,              \
                                               const float* rstd, T* dx, float* dw, float* db, long long rows, int D,  \
                                               int rms, int rows_per_block) {                                          \
        norm_bwd<T>(g, x, w, mean, rstd, dx, dw, db, rows, D, rms, rows_per_block);                                     \
    }
#define INDEXED_KERNELS(T, NAME, I, INAME)                                                                             \
    extern "C" __global__ void ce_fwd_##NAME##_##INAME(const T* x, const I* t, float* loss, float* lse, int V) {       \
        ce_fwd<T, I>(x, t, loss, lse, V);                                                                               \
    }                                                                                                                  \
    extern "C" __global__ void ce_bwd_##NAME##_##INAME(const T* x, const I* t, const float* lse, const float* g, T* dx, \
                                                       int V) {                                                        \
        ce_bwd<T, I>(x, t, lse, g, dx, V);                                                                              \
    }                                                                                                                  \
    extern "C" __global__ void embed_bwd_##NAME##_##INAME(const I* ids, const T* g, float* dw, long long n, int D) {   \
        embed_bwd<T, I>(ids, g, dw, n, D);                                                                              \
    }

FLOAT_KERNELS(float, f32)
FLOAT_KERNELS(bf16, bf16)
INDEXED_KERNELS(float, f32, int, i32)
INDEXED_KERNELS(bf16, bf16, int, i32)
INDEXED_KERNELS(float, f32, long long, i64)
INDEXED_KERNELS(bf16, bf16, long long, i64)
