// LayerNorm and RMSNorm (src/kernels/norm.rs), forward and backward.

// LayerNorm (rms = 0) or RMSNorm (rms = 1) over the last dim of x [rows, D], one warp per row, in
// f32: y = (x − mean)·rstd·w + b (RMSNorm: mean = 0, no b), rstd = 1/√(var + eps); keeps mean and
// rstd per row for the backward. w, b are f32 (the master weights). W elements per access (the
// host checks D is a multiple of W).

// W f32 of a weight from p (16-byte aligned where W is a multiple of 4: the host picks W > 1 only
// for aligned weights, norm.rs).
template <int W>
__device__ __forceinline__ void load_w(const float* p, float* v) {
    if constexpr (W % 4 == 0) {
#pragma unroll
        for (int q = 0; q < W; q += 4) Vec<float, 4>::load(p + q, v + q);
    } else {
#pragma unroll
        for (int k = 0; k < W; k++) v[k] = p[k];
    }
}

// norm_fwd where D = 32·W·NI: the row stays in registers (lane l holds accesses l, l + 32, ...),
// so x is read once where the loop below reads it three times (twice for RMSNorm), and w, b by whole
// accesses
// (pristine step on an H200: 0.21 ms against 0.48).
template <typename T, int W, int NI>
__device__ void norm_fwd_reg(const T* xr, const float* w, const float* b, T* yr, float* mean, float* rstd, long long row, int D, float eps, int rms) {
    int lane = threadIdx.x & 31;
    float a[NI][W], mu = 0.f, var = 0.f;
#pragma unroll
    for (int i = 0; i < NI; i++) Vec<T, W>::load(xr + (i * 32 + lane) * W, a[i]);
    if (!rms) {
#pragma unroll
        for (int i = 0; i < NI; i++)
#pragma unroll
            for (int k = 0; k < W; k++) mu += a[i][k];
        mu = warp_sum(mu) / D;
    }
#pragma unroll
    for (int i = 0; i < NI; i++)
#pragma unroll
        for (int k = 0; k < W; k++) var += (a[i][k] - mu) * (a[i][k] - mu);
    float r = rsqrtf(warp_sum(var) / D + eps);
#pragma unroll
    for (int i = 0; i < NI; i++) {
        int j = (i * 32 + lane) * W;
        float wv[W], bv[W];
        load_w<W>(w + j, wv);
        if (!rms) load_w<W>(b + j, bv);
#pragma unroll
        for (int k = 0; k < W; k++) a[i][k] = (a[i][k] - mu) * r * wv[k] + (rms ? 0.f : bv[k]);
        Vec<T, W>::store(yr + j, a[i]);
    }
    if (lane == 0) mean[row] = mu, rstd[row] = r;
}

// The register forms above (and norm_bwd_reg below) apply where D = 32·W·NI with NI in 1..4 or 6
// and NI·W ≤ 24 (768 = 32·8·3 in bf16, 32·4·6 in f32): this NI, else 0. (A kernel's registers are
// those of its largest path: wider rows in registers would cost every width occupancy.) FIT(N)
// names the instance of a case that can only be taken where it fits. Measured at 768 only (the
// register paths raise the backward's registers for the any-width form too: 119 in bf16).
template <int W>
__device__ __forceinline__ int reg_ni(int D) {
    int ni = D % (32 * W) ? 0 : D / (32 * W);
    return (ni >= 1 && ni <= 4) || ni == 6 ? (ni * W <= 24 ? ni : 0) : 0;
}
#define FIT(N) (N * W <= 24 ? N : 1)

template <typename T, int W>
__device__ void norm_fwd(const T* x, const float* w, const float* b, T* y, float* mean, float* rstd, long long rows, int D, float eps, int rms) {
    long long row = warp_row(rows);
    if (row < 0) return;
    switch (reg_ni<W>(D)) {
#define NORM_FWD_REG(N) return norm_fwd_reg<T, W, FIT(N)>(x + row * D, w, b, y + row * D, mean, rstd, row, D, eps, rms)
        case 1: NORM_FWD_REG(1);
        case 2: NORM_FWD_REG(2);
        case 3: NORM_FWD_REG(3);
        case 4: NORM_FWD_REG(4);
        case 6: NORM_FWD_REG(6);
#undef NORM_FWD_REG
    }
    int lane = threadIdx.x & 31;
    const T* xr = x + row * D;
    float a[W], mu = 0.f, var = 0.f;
    if (!rms) {
        for (int j = lane * W; j < D; j += 32 * W) {
            Vec<T, W>::load(xr + j, a);
#pragma unroll
            for (int k = 0; k < W; k++) mu += a[k];
        }
        mu = warp_sum(mu) / D;
    }
    for (int j = lane * W; j < D; j += 32 * W) {
        Vec<T, W>::load(xr + j, a);
#pragma unroll
        for (int k = 0; k < W; k++) var += (a[k] - mu) * (a[k] - mu);
    }
    float r = rsqrtf(warp_sum(var) / D + eps);
    T* yr = y + row * D;
    for (int j = lane * W; j < D; j += 32 * W) {
        Vec<T, W>::load(xr + j, a);
#pragma unroll
        for (int k = 0; k < W; k++) a[k] = (a[k] - mu) * r * w[j + k] + (rms ? 0.f : b[j + k]);
        Vec<T, W>::store(yr + j, a);
    }
    if (lane == 0) { mean[row] = mu; rstd[row] = r; }
}

// Its backward: dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂)) (+ res, if given: the residual's
// gradient, in the layer op) (RMSNorm: without the first mean),
// x̂ = (x − mean)·rstd; dw += Σ_rows g·x̂ and db += Σ_rows g into zeroed f32 [D] (a block's rows
// summed in shared memory, then one atomic per column). Rows are split over warps. With W > 1 a
// lane's W columns are consecutive, so the shared sums leave one float of padding after every W
// (`pad`): without it the lanes of a warp hit the same banks W-fold (Nsight Compute, pristine
// step: 2.9 ms with the conflicts, 0.78 ms padded).
template <int W>
__device__ __forceinline__ int pad(int j) { return W > 1 ? j + j / W : j; }
// norm_bwd where D = 32·W·NI: a lane's columns are the same in every row, so it sums its dw and db
// over the warp's rows in registers and adds them into the shared sums once per warp, where the
// any-width form (norm_bwd_rows) adds twice per element (pristine step on an H200: 0.49 ms against 0.90).
// Its registers leave 16 warps per SM, each with one row's loads in flight at a time; the next
// row is prefetched into L1 meanwhile.
template <typename T, int W, int NI>
__device__ void norm_bwd_reg(const T* g, const T* x, const float* w, const float* mean, const float* rstd, const T* res, T* dx, float* acc,
                             long long rows, int D, int rms, int rows_per_block) {
    int lane = threadIdx.x & 31, warps = blockDim.x / 32;
    float sw[NI][W], sb[NI][W];
#pragma unroll
    for (int i = 0; i < NI; i++)
#pragma unroll
        for (int k = 0; k < W; k++) sw[i][k] = sb[i][k] = 0.f;
    long long first = (long long)blockIdx.x * rows_per_block, end = min(first + rows_per_block, rows);
    for (long long row = first + threadIdx.x / 32; row < end; row += warps) {
        // the warp's next row on its way to L1 while this one is worked on (no registers held)
        if (row + warps < end) {
#pragma unroll
            for (int i = 0; i < NI; i++) {
                long long at = (row + warps) * D + (i * 32 + lane) * W;
                prefetch_l1(g + at);
                prefetch_l1(x + at);
                if (res) prefetch_l1(res + at);
            }
        }
        float mu = mean[row], r = rstd[row], s1 = 0.f, s2 = 0.f;
#pragma unroll
        for (int i = 0; i < NI; i++) {
            int j = (i * 32 + lane) * W;
            float gv[W], xv[W], wv[W];
            Vec<T, W>::load(g + row * D + j, gv);
            Vec<T, W>::load(x + row * D + j, xv);
            load_w<W>(w + j, wv);
#pragma unroll
            for (int k = 0; k < W; k++) {
                float gw = gv[k] * wv[k];
                s1 += gw;
                s2 += gw * (xv[k] - mu) * r;
            }
        }
        s1 = rms ? 0.f : warp_sum(s1) / D;
        s2 = warp_sum(s2) / D;
        // the row again (from L1/L2: keeping it in registers cost occupancy)
#pragma unroll
        for (int i = 0; i < NI; i++) {
            int j = (i * 32 + lane) * W;
            float gv[W], xv[W], wv[W], rv[W];
            Vec<T, W>::load(g + row * D + j, gv);
            Vec<T, W>::load(x + row * D + j, xv);
            load_w<W>(w + j, wv);
            if (res) Vec<T, W>::load(res + row * D + j, rv);
#pragma unroll
            for (int k = 0; k < W; k++) {
                float xh = (xv[k] - mu) * r;
                sw[i][k] += gv[k] * xh;
                sb[i][k] += gv[k];
                xv[k] = r * (gv[k] * wv[k] - s1 - xh * s2) + (res ? rv[k] : 0.f);
            }
            Vec<T, W>::store(dx + row * D + j, xv);
        }
    }
    const int half = pad<W>(D);
#pragma unroll
    for (int i = 0; i < NI; i++)
#pragma unroll
        for (int k = 0; k < W; k++) {
            int j = (i * 32 + lane) * W;
            atomicAdd(acc + pad<W>(j) + k, sw[i][k]);
            atomicAdd(acc + half + pad<W>(j) + k, sb[i][k]);
        }
}

// norm_bwd's rows at any width: sums of g·x̂ and g added into the shared sums per element.
template <typename T, int W>
__device__ void norm_bwd_rows(const T* g, const T* x, const float* w, const float* mean, const float* rstd, const T* res, T* dx, float* acc,
                              long long rows, int D, int rms, int rows_per_block) {
    const int half = pad<W>(D);
    int lane = threadIdx.x & 31, warps = blockDim.x / 32;
    long long first = (long long)blockIdx.x * rows_per_block;
    for (long long row = first + threadIdx.x / 32; row < first + rows_per_block && row < rows; row += warps) {
        const T* gr = g + row * D;
        const T* xr = x + row * D;
        float mu = mean[row], r = rstd[row], s1 = 0.f, s2 = 0.f, gv[W], xv[W];
        for (int j = lane * W; j < D; j += 32 * W) {
            Vec<T, W>::load(gr + j, gv);
            Vec<T, W>::load(xr + j, xv);
#pragma unroll
            for (int k = 0; k < W; k++) {
                float gw = gv[k] * w[j + k];
                s1 += gw;
                s2 += gw * (xv[k] - mu) * r;
            }
        }
        s1 = rms ? 0.f : warp_sum(s1) / D;
        s2 = warp_sum(s2) / D;
        T* dr = dx + row * D;
        for (int j = lane * W; j < D; j += 32 * W) {
            float rv[W];
            Vec<T, W>::load(gr + j, gv);
            Vec<T, W>::load(xr + j, xv);
            if (res) Vec<T, W>::load(res + row * D + j, rv);
#pragma unroll
            for (int k = 0; k < W; k++) {
                float xh = (xv[k] - mu) * r;
                atomicAdd(acc + pad<W>(j) + k, gv[k] * xh);
                atomicAdd(acc + half + pad<W>(j) + k, gv[k]);
                xv[k] = r * (gv[k] * w[j + k] - s1 - xh * s2) + (res ? rv[k] : 0.f);
            }
            Vec<T, W>::store(dr + j, xv);
        }
    }
}

template <typename T, int W>
__device__ void norm_bwd(const T* g, const T* x, const float* w, const float* mean, const float* rstd, const T* res, T* dx, float* dw, float* db, long long rows, int D, int rms, int rows_per_block) {
    extern __shared__ float acc[];  // [2·pad(D)]: dw then db partial sums
    const int half = pad<W>(D);
    for (int j = threadIdx.x; j < 2 * half; j += blockDim.x) acc[j] = 0.f;
    __syncthreads();
    switch (reg_ni<W>(D)) {
#define NORM_BWD_REG(N) norm_bwd_reg<T, W, FIT(N)>(g, x, w, mean, rstd, res, dx, acc, rows, D, rms, rows_per_block)
        case 1: NORM_BWD_REG(1); break;
        case 2: NORM_BWD_REG(2); break;
        case 3: NORM_BWD_REG(3); break;
        case 4: NORM_BWD_REG(4); break;
        case 6: NORM_BWD_REG(6); break;
#undef NORM_BWD_REG
        default: norm_bwd_rows<T, W>(g, x, w, mean, rstd, res, dx, acc, rows, D, rms, rows_per_block);
    }
    __syncthreads();
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        atomicAdd(dw + j, acc[pad<W>(j)]);
        if (db) atomicAdd(db + j, acc[half + pad<W>(j)]);
    }
}

// Zeroes norm_bwd's dw and db (null for RMSNorm) [D] before it adds into them, in one launch.
extern "C" __global__ void norm_zero(float* dw, float* db, int D) {
    GRID_DEPENDENCY();
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < D; j += gridDim.x * blockDim.x) {
        dw[j] = 0.f;
        if (db) db[j] = 0.f;
    }
}

#define NORM_KERNELS(T, NAME, W)                                                                                       \
    extern "C" __global__ void norm_fwd_##NAME(const T* x, const float* w, const float* b, T* y, float* mean,          \
                                               float* rstd, long long rows, int D, float eps, int rms) {               \
        GRID_DEPENDENCY();                                                                                              \
        norm_fwd<T, W>(x, w, b, y, mean, rstd, rows, D, eps, rms);                                                      \
    }                                                                                                                  \
    extern "C" __global__ void norm_bwd_##NAME(const T* g, const T* x, const float* w, const float* mean,              \
                                               const float* rstd, const T* res, T* dx, float* dw, float* db,           \
                                               long long rows, int D, int rms, int rows_per_block) {                   \
        GRID_DEPENDENCY();                                                                                              \
        norm_bwd<T, W>(g, x, w, mean, rstd, res, dx, dw, db, rows, D, rms, rows_per_block);                             \
    }

NORM_KERNELS(float, f32, 1)
NORM_KERNELS(bf16, bf16, 1)
NORM_KERNELS(float, f32_v, 4)
NORM_KERNELS(bf16, bf16_v, 8)
