// LayerNorm and RMSNorm (src/kernels/norm.rs), forward and backward.

// LayerNorm (rms = 0) or RMSNorm (rms = 1) over the last dim of x [rows, D], one warp per row, in
// f32: y = (x − mean)·rstd·w + b (RMSNorm: mean = 0, no b), rstd = 1/√(var + eps); keeps mean and
// rstd per row for the backward. w, b are f32 (the master weights). W elements per access (the
// host checks D is a multiple of W).
template <typename T, int W>
__device__ void norm_fwd(const T* x, const float* w, const float* b, T* y, float* mean, float* rstd, long long rows, int D, float eps, int rms) {
    long long row = warp_row(rows);
    if (row < 0) return;
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
template <typename T, int W>
__device__ void norm_bwd(const T* g, const T* x, const float* w, const float* mean, const float* rstd, const T* res, T* dx, float* dw, float* db, long long rows, int D, int rms, int rows_per_block) {
    extern __shared__ float acc[];  // [2·pad(D)]: dw then db partial sums
    const int half = pad<W>(D);
    for (int j = threadIdx.x; j < 2 * half; j += blockDim.x) acc[j] = 0.f;
    __syncthreads();
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
    __syncthreads();
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        atomicAdd(dw + j, acc[pad<W>(j)]);
        if (db) atomicAdd(db + j, acc[half + pad<W>(j)]);
    }
}

#define NORM_KERNELS(T, NAME, W)                                                                                       \
    extern "C" __global__ void norm_fwd_##NAME(const T* x, const float* w, const float* b, T* y, float* mean,          \
                                               float* rstd, long long rows, int D, float eps, int rms) {               \
        norm_fwd<T, W>(x, w, b, y, mean, rstd, rows, D, eps, rms);                                                      \
    }                                                                                                                  \
    extern "C" __global__ void norm_bwd_##NAME(const T* g, const T* x, const float* w, const float* mean,              \
                                               const float* rstd, const T* res, T* dx, float* dw, float* db,           \
                                               long long rows, int D, int rms, int rows_per_block) {                   \
        norm_bwd<T, W>(g, x, w, mean, rstd, res, dx, dw, db, rows, D, rms, rows_per_block);                             \
    }

NORM_KERNELS(float, f32, 1)
NORM_KERNELS(bf16, bf16, 1)
NORM_KERNELS(float, f32_v, 4)
NORM_KERNELS(bf16, bf16_v, 8)
