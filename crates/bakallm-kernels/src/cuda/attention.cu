// The attention's kernels (src/kernels/attention.rs, heads.rs): the causal softmax and its
// backward, and the head split/merge with the RoPE/xPos rotation folded in.

// Row i of the attention bias for row `row` of the scores [b·H, L, L] (strides 0 broadcast).
template <typename T>
__device__ __forceinline__ const T* bias_row(const T* bias, long long row, int L, int H, long long sb, long long sh) {
    long long bh = row / L;
    return bias + (bh / H) * sb + (bh % H) * sh + (row % L) * L;
}

// Causal attention probabilities: p = softmax(s · scale + bias) over each row i of s [bh, L, L]
// (one warp per row), keys j > i masked: they are neither read nor summed, and get exact zeros.
// bias is [*, *, L, L] with strides (bias_sb, bias_sh) for batch and head (0 = broadcast); its −∞
// entries give zeros too, and a row that is all −∞ gives all zeros. This one is for long rows.
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

// The same two for rows of at most 32·K keys: each lane keeps its K scores in registers, so the
// row is read once instead of once per pass. Lane l holds the chunks of W keys starting at
// (l + 32c)·W; a chunk wholly past the diagonal is not read.
template <typename T, int K, int W>
__device__ void softmax_fwd_reg(const T* s, const T* bias, T* p, long long rows, int L, int H, long long bias_sb, long long bias_sh, float scale) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31, i = (int)(row % L);
    const T* sr = s + row * L;
    const T* br = bias_row(bias, row, L, H, bias_sb, bias_sh);
    float v[K];
    float m = NEG_INF;
#pragma unroll
    for (int c = 0; c < K / W; c++) {
        int j = (lane + 32 * c) * W;
        float a[W], b[W];
        if (j <= i) {
            Vec<T, W>::load(sr + j, a);
            Vec<T, W>::load(br + j, b);
        }
#pragma unroll
        for (int k = 0; k < W; k++) {
            v[c * W + k] = j + k <= i ? a[k] * scale + b[k] : NEG_INF;
            m = fmaxf(m, v[c * W + k]);
        }
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
    for (int c = 0; c < K / W; c++) {
        int j = (lane + 32 * c) * W;
#pragma unroll
        for (int k = 0; k < W; k++) v[c * W + k] *= inv;
        if (j < L) Vec<T, W>::store(pr + j, v + c * W);
    }
}

template <typename T, int K, int W>
__device__ void softmax_bwd_reg(const T* p, const T* dp, T* ds, long long rows, int L, float scale) {
    long long row = warp_row(rows);
    if (row < 0) return;
    int lane = threadIdx.x & 31, i = (int)(row % L);
    const T* pr = p + row * L;
    const T* dr = dp + row * L;
    float pv[K], dv[K];
    float dot = 0.f;
#pragma unroll
    for (int c = 0; c < K / W; c++) {
        int j = (lane + 32 * c) * W;
        float a[W], b[W];
        if (j <= i) {
            Vec<T, W>::load(pr + j, a);
            Vec<T, W>::load(dr + j, b);
        }
#pragma unroll
        for (int k = 0; k < W; k++) {
            pv[c * W + k] = j + k <= i ? a[k] : 0.f;
            dv[c * W + k] = j + k <= i ? b[k] : 0.f;
            dot += pv[c * W + k] * dv[c * W + k];
        }
    }
    dot = warp_sum(dot);
    T* out = ds + row * L;
#pragma unroll
    for (int c = 0; c < K / W; c++) {
        int j = (lane + 32 * c) * W;
#pragma unroll
        for (int k = 0; k < W; k++) pv[c * W + k] = scale * pv[c * W + k] * (dv[c * W + k] - dot);
        if (j < L) Vec<T, W>::store(out + j, pv + c * W);
    }
}

// Head split with an optional rotation (RoPE, xPos): y [b·H, L, hd] from x [b, L, H·hd] (rows
// ld elements apart: the fused attention op reads q, k, v side by side from one [b, L, 3·H·hd]),
// y = x·c + rotate_half(x)·s with rotate_half([x1, x2]) = [−x2, x1] and tables c, s [L, hd];
// rot = 0: a plain split (c, s unused). Each thread moves W consecutive elements of one head
// (the host checks hd, and hd / 2 with a rotation, are multiples of W). Index math in 32 bits
// where it fits (I = unsigned): 64-bit division is a software routine, and these kernels are all
// index math and copies.
template <typename T, typename I, int W>
__device__ void heads_split(const T* x, const T* c, const T* s, T* y, I n, I L, I H, I hd, I ld, int rot) {
    I e = ((I)blockIdx.x * blockDim.x + threadIdx.x) * W;
    if (e >= n) return;
    I j = e % hd, r = e / hd, t = r % L, bh = r / L;
    I src = ((bh / H) * L + t) * ld + (bh % H) * hd;
    float v[W];
    Vec<T, W>::load(x + src + j, v);
    if (rot) {
        I half = hd / 2;
        float xp[W], cv[W], sv[W], sign = j < half ? -1.f : 1.f;
        Vec<T, W>::load(x + src + (j < half ? j + half : j - half), xp);
        Vec<T, W>::load(c + t * hd + j, cv);
        Vec<T, W>::load(s + t * hd + j, sv);
#pragma unroll
        for (int k = 0; k < W; k++) v[k] = v[k] * cv[k] + sign * xp[k] * sv[k];
    }
    Vec<T, W>::store(y + e, v);
}

// Its adjoint: the split's backward, and (rot = 0) the head merge. dx [b, L, H·hd] (rows ld apart) from
// g [b·H, L, hd]: dx_j = g_j·c_j + (j < half ? g_{j+half}·s_{j+half} : −g_{j−half}·s_{j−half}).
template <typename T, typename I, int W>
__device__ void heads_merge(const T* g, const T* c, const T* s, T* dx, I n, I L, I H, I hd, I ld, int rot) {
    I e = ((I)blockIdx.x * blockDim.x + threadIdx.x) * W;
    if (e >= n) return;
    I col = e % (H * hd), r = e / (H * hd);
    I t = r % L, h = col / hd, j = col % hd;
    I src = (((r / L) * H + h) * L + t) * hd;
    float v[W];
    Vec<T, W>::load(g + src + j, v);
    if (rot) {
        I half = hd / 2, p = j < half ? j + half : j - half;
        float gp[W], cv[W], sp[W], sign = j < half ? 1.f : -1.f;
        Vec<T, W>::load(g + src + p, gp);
        Vec<T, W>::load(c + t * hd + j, cv);
        Vec<T, W>::load(s + t * hd + p, sp);
#pragma unroll
        for (int k = 0; k < W; k++) v[k] = v[k] * cv[k] + sign * gp[k] * sp[k];
    }
    Vec<T, W>::store(dx + r * ld + col, v);
}

// NAME is the kernel suffix, W the elements per access (1, or 16 bytes' worth for `_v`).
#define ATTENTION_KERNELS(T, NAME, W)                                                                                 \
    extern "C" __global__ void softmax_fwd_##NAME(const T* s, const T* bias, T* p, long long rows, int L, int H,       \
                                                  long long bias_sb, long long bias_sh, float scale) {                 \
        GRID_DEPENDENCY();                                                                                              \
        if (L <= 512) softmax_fwd_reg<T, 16, W>(s, bias, p, rows, L, H, bias_sb, bias_sh, scale);                       \
        else if (L <= 1024) softmax_fwd_reg<T, 32, W>(s, bias, p, rows, L, H, bias_sb, bias_sh, scale);                 \
        else softmax_fwd<T>(s, bias, p, rows, L, H, bias_sb, bias_sh, scale);                                           \
    }                                                                                                                  \
    extern "C" __global__ void softmax_bwd_##NAME(const T* p, const T* dp, T* ds, long long rows, int L, float scale) { \
        GRID_DEPENDENCY();                                                                                              \
        if (L <= 512) softmax_bwd_reg<T, 16, W>(p, dp, ds, rows, L, scale);                                             \
        else if (L <= 1024) softmax_bwd_reg<T, 32, W>(p, dp, ds, rows, L, scale);                                       \
        else softmax_bwd<T>(p, dp, ds, rows, L, scale);                                                                 \
    }                                                                                                                  \
    extern "C" __global__ void heads_split_##NAME(const T* x, const T* c, const T* s, T* y, long long n, int L, int H,  \
                                                  int hd, int ld, int rot) {                                           \
        GRID_DEPENDENCY();                                                                                               \
        if (n < 0xffff0000LL / 3) heads_split<T, unsigned, W>(x, c, s, y, n, L, H, hd, ld, rot);                         \
        else heads_split<T, long long, W>(x, c, s, y, n, L, H, hd, ld, rot);                                            \
    }                                                                                                                  \
    extern "C" __global__ void heads_merge_##NAME(const T* g, const T* c, const T* s, T* dx, long long n, int L, int H, \
                                                  int hd, int ld, int rot) {                                           \
        GRID_DEPENDENCY();                                                                                               \
        if (n < 0xffff0000LL / 3) heads_merge<T, unsigned, W>(g, c, s, dx, n, L, H, hd, ld, rot);                        \
        else heads_merge<T, long long, W>(g, c, s, dx, n, L, H, hd, ld, rot);                                           \
    }

ATTENTION_KERNELS(float, f32, 1)
ATTENTION_KERNELS(bf16, bf16, 1)
ATTENTION_KERNELS(float, f32_v, 4)
ATTENTION_KERNELS(bf16, bf16_v, 8)

// A key term added to every sequence (linspace's ramp times its scale): the key columns of the
// fused projection x [n, 3d] (its rows xld elements apart: 3d, or wider within the parallel layer's
// input projections) get a [L, d] at row r % L; its gradient sums dx's key columns over the B
// sequences (in f32). One thread per element of the key columns / of a.
template <typename T>
__device__ void add_key(T* x, const T* a, long long n, int L, int d, int xld) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * d) return;
    long long r = e / d;
    int c = (int)(e % d);
    T* p = x + r * xld + d + c;
    st(p, 0, ld(p, 0) + ld(a, (r % L) * d + c));
}
template <typename T>
__device__ void sum_key(const T* dx, T* g, int B, int L, int d, int xld) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (long long)L * d) return;
    long long t = e / d;
    int c = (int)(e % d);
    float sum = 0.f;
    for (int b = 0; b < B; b++) sum += ld(dx, ((long long)b * L + t) * xld + d + c);
    st(g, e, sum);
}
#define KEY_KERNELS(T, NAME)                                                                                           \
    extern "C" __global__ void add_key_##NAME(T* x, const T* a, long long n, int L, int d, int xld) {                  \
        GRID_DEPENDENCY();                                                                                              \
        add_key<T>(x, a, n, L, d, xld);                                                                                 \
    }                                                                                                                  \
    extern "C" __global__ void sum_key_##NAME(const T* dx, T* g, int B, int L, int d, int xld) {                       \
        GRID_DEPENDENCY();                                                                                              \
        sum_key<T>(dx, g, B, L, d, xld);                                                                                \
    }
KEY_KERNELS(float, f32)
KEY_KERNELS(bf16, bf16)

// RoPE / xPos in place on the q and k columns of the fused projection x [rows, 3·H·hd] (its rows
// xld elements apart), blockIdx.y picking q (0) or k (1), each rotated by its tables c, s [L, hd]
// where given (null: left as it is): the pair (j, j + hd/2) of a head becomes
// (x_j·c_j − x_{j+h}·s_j, x_{j+h}·c_{j+h} + x_j·s_{j+h}), heads_split's rotation (its adjoint, for
// the gradients, is applied by the flash backward as it writes dq and dk: store_dk_dv, flash_dq).
// One thread per W consecutive j of a pair's first half (the host checks hd / 2 is a multiple of W).
template <typename T, int W>
__device__ void rotate_qk(T* x, const T* cq, const T* sq, const T* ck, const T* sk, long long rows, int L, int H, int hd, int xld) {
    int p = blockIdx.y, half = hd / 2;
    const T* c = p == 0 ? cq : ck;
    const T* s = p == 0 ? sq : sk;
    long long e = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * W;  // over rows · H · half
    if (c == nullptr || e >= rows * H * half) return;
    int j = (int)(e % half);
    long long rh = e / half;
    int h = (int)(rh % H), t = (int)((rh / H) % L);
    T* a = x + (rh / H) * xld + (long long)(p * H + h) * hd + j;
    float xa[W], xb[W], ca[W], sa[W], cb[W], sb[W];
    Vec<T, W>::load(a, xa);
    Vec<T, W>::load(a + half, xb);
    Vec<T, W>::load(c + t * hd + j, ca);
    Vec<T, W>::load(s + t * hd + j, sa);
    Vec<T, W>::load(c + t * hd + j + half, cb);
    Vec<T, W>::load(s + t * hd + j + half, sb);
    float ya[W], yb[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
        ya[k] = xa[k] * ca[k] - xb[k] * sa[k];
        yb[k] = xb[k] * cb[k] + xa[k] * sb[k];
    }
    Vec<T, W>::store(a, ya);
    Vec<T, W>::store(a + half, yb);
}
#define ROTATE_KERNELS(T, NAME, W)                                                                                     \
    extern "C" __global__ void rotate_qk_##NAME(T* x, const T* cq, const T* sq, const T* ck, const T* sk, long long rows, \
                                                int L, int H, int hd, int xld) {                                       \
        GRID_DEPENDENCY();                                                                                              \
        rotate_qk<T, W>(x, cq, sq, ck, sk, rows, L, H, hd, xld);                                                        \
    }
ROTATE_KERNELS(float, f32, 1)
ROTATE_KERNELS(bf16, bf16, 1)
ROTATE_KERNELS(float, f32_v, 4)
ROTATE_KERNELS(bf16, bf16_v, 8)
