// The optimizer step's kernels: the global gradient norm (src/train/optim.rs) and AdamW
// (src/train/adamw.rs); compiled after common.cu, whose block_all they use.

// The tensors of one launch are cut into chunks of a fixed number of elements, a block each, tensor
// after tensor: `first[k]` is tensor k's first block (INT_MAX past the last tensor), so every block
// has the same work however the sizes differ (a grid per tensor's size left most blocks of the
// small tensors idle and the large ones few: AdamW 1.47 ms per pristine step on an H200).
__device__ __forceinline__ int block_tensor(const int* first, int most) {
    int k = 0;
    while (k + 1 < most && (int)blockIdx.x >= first[k + 1]) k++;
    return k;
}

// Σ x² over up to MT_MAX f32 tensors in one launch (the global gradient norm): each block sums its
// chunk of SS_CHUNK elements (16-byte loads where the tensor is aligned) and adds it to out[0] (zeroed).
#define MT_MAX 64
#define SS_THREADS 256
#define SS_LOADS 8                                  // 16-byte loads per thread, all issued before use
#define SS_CHUNK (SS_THREADS * SS_LOADS * 4)
struct Tensors {
    const float* ptr[MT_MAX];
    long long n[MT_MAX];
    int first[MT_MAX];
};
extern "C" __global__ void __launch_bounds__(SS_THREADS) sum_squares_f32(Tensors t, float* out) {
    GRID_DEPENDENCY();
    int k = block_tensor(t.first, MT_MAX);
    const float* p = t.ptr[k];
    long long e0 = (long long)(blockIdx.x - t.first[k]) * SS_CHUNK, e1 = min(e0 + SS_CHUNK, t.n[k]);
    float acc = 0.f;
    if (((unsigned long long)p & 15) == 0) {
        long long nv = (e1 - e0) / 4;
        float x[SS_LOADS][4];
#pragma unroll
        for (int u = 0; u < SS_LOADS; u++) {
            long long j = u * SS_THREADS + threadIdx.x;
            if (j < nv) Vec<float, 4>::load(p + e0 + 4 * j, x[u]);
            else x[u][0] = x[u][1] = x[u][2] = x[u][3] = 0.f;
        }
#pragma unroll
        for (int u = 0; u < SS_LOADS; u++) acc += x[u][0] * x[u][0] + x[u][1] * x[u][1] + x[u][2] * x[u][2] + x[u][3] * x[u][3];
        e0 += 4 * nv;  // the elements after the last whole group
    }
    for (long long e = e0 + threadIdx.x; e < e1; e += SS_THREADS) acc += p[e] * p[e];
    acc = block_all<false>(acc);
    if (threadIdx.x == 0) atomicAdd(out, acc);
}

// AdamW on up to ADAM_MAX f32 tensors in one launch (a chunk of ADAM_CHUNK elements per block; fewer
// tasks for cubecl's device thread than a launch per parameter): burn-optim's AdamW (adamw.rs) in its order
// of operations, one rounding per op (__fmul_rn/__fadd_rn: no fused multiply-add), with
// the gradient first scaled by the global-norm clip factor:  g ← g·clip;  m ← β1·m + (1−β1)·g;
// v ← β2·v + (1−β2)·g²;  p ← p·decay − lr·(m/bc1) / (√(v/bc2) + eps),  decay = 1 − lr·wd,  bc = 1 − βᵗ.
// `first`: no moments yet (m and v are not read; burn's first step is the same with m = v = 0).
// `stats` (if not null): the step's [loss, gradient norm] on the device. Then the clip factor is
// max_norm / (norm + 1e-6) for norms above max_norm (torch's clip_grad_norm_), and a non-finite loss
// or norm leaves p, m and v as they were: no host round trip before the update.
struct Adam {
    float lr, b1, c1, b2, c2, eps, decay, bc1, bc2, clip;  // c = 1 − β, as burn computes it (f32)
    float max_norm;                                        // with `stats`; 0 = no clipping
};
#define ADAM_MAX 32
#define ADAM_THREADS 256
#define ADAM_LOADS 4  // groups of 4 elements per thread, their loads all issued before use
#define ADAM_CHUNK (ADAM_THREADS * ADAM_LOADS * 4)
// per tensor: inputs p, g, m, v; outputs p, m, v; length; first block; and the new p's bf16 copy
// (null: none): p's row r, column j at c[r·ld + j], rows `cols` elements long (src/kernels/weight_copies.rs)
struct AdamTensors {
    const float* p[ADAM_MAX];
    const float* g[ADAM_MAX];
    const float* m[ADAM_MAX];
    const float* v[ADAM_MAX];
    float* po[ADAM_MAX];
    float* mo[ADAM_MAX];
    float* vo[ADAM_MAX];
    long long n[ADAM_MAX];
    int first[ADAM_MAX];
    bf16* c[ADAM_MAX];
    unsigned cols[ADAM_MAX];
    unsigned ld[ADAM_MAX];
};
// Element i of a row-major [·, cols] at its place in a copy with rows ld apart (32-bit: the host
// checks n < 2³²).
struct alignas(8) Word2 { unsigned x, y; };
__device__ __forceinline__ unsigned copy_at(unsigned i, unsigned cols, unsigned ld) { return i + (i / cols) * (ld - cols); }
__device__ __forceinline__ bool finite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }
// One element's update (outputs po, mo, vo), or with `skip` its state as it was.
__device__ __forceinline__ void adam_one(float p, float g, float m, float v, const Adam& h, int first, bool skip, float& po, float& mo, float& vo) {
    if (skip) {
        po = p, mo = first ? 0.f : m, vo = first ? 0.f : v;
        return;
    }
    float gi = h.clip == 1.f ? g : __fmul_rn(g, h.clip);
    float mi = __fmul_rn(gi, h.c1), vi = __fmul_rn(__fmul_rn(gi, gi), h.c2);
    if (!first) {
        mi = __fadd_rn(__fmul_rn(m, h.b1), mi);
        vi = __fadd_rn(__fmul_rn(v, h.b2), vi);
    }
    float step = __fdiv_rn(__fdiv_rn(mi, h.bc1), __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, h.bc2)), h.eps));
    po = __fsub_rn(h.decay == 1.f ? p : __fmul_rn(p, h.decay), __fmul_rn(step, h.lr));
    mo = mi, vo = vi;
}
extern "C" __global__ void __launch_bounds__(ADAM_THREADS) adamw_f32(AdamTensors t, Adam h, int first, const float* stats) {
    GRID_DEPENDENCY();
    int k = block_tensor(t.first, ADAM_MAX);
    const float *p = t.p[k], *g = t.g[k], *m = t.m[k], *v = t.v[k];
    float *po = t.po[k], *mo = t.mo[k], *vo = t.vo[k];
    bf16* c = t.c[k];
    unsigned cols = t.cols[k], ld = t.ld[k];
    bool skip = false;
    if (stats) {
        float loss = stats[0], norm = stats[1];
        skip = !(finite(loss) && finite(norm));
        h.clip = h.max_norm > 0.f && norm > h.max_norm ? h.max_norm / (norm + 1e-6f) : 1.f;
    }
    long long e0 = (long long)(blockIdx.x - t.first[k]) * ADAM_CHUNK, e1 = min(e0 + ADAM_CHUNK, t.n[k]);
    // 16-byte accesses where every pointer allows (pristine step on an H200: 1.47 ms against 1.64
    // with 4-byte ones), the same arithmetic per element
    unsigned long long any = (unsigned long long)p | (unsigned long long)g | (unsigned long long)po | (unsigned long long)mo | (unsigned long long)vo;
    if (!first) any |= (unsigned long long)m | (unsigned long long)v;
    if ((any & 15) == 0) {
        long long nv = (e1 - e0) / 4;
        float pv[ADAM_LOADS][4], gv[ADAM_LOADS][4], mv[ADAM_LOADS][4] = {}, vv[ADAM_LOADS][4] = {};
#pragma unroll
        for (int u = 0; u < ADAM_LOADS; u++) {
            long long j = u * ADAM_THREADS + threadIdx.x, at = e0 + 4 * j;
            if (j >= nv) continue;
            Vec<float, 4>::load(p + at, pv[u]);
            Vec<float, 4>::load(g + at, gv[u]);
            if (!first) Vec<float, 4>::load(m + at, mv[u]), Vec<float, 4>::load(v + at, vv[u]);
        }
#pragma unroll
        for (int u = 0; u < ADAM_LOADS; u++) {
            long long j = u * ADAM_THREADS + threadIdx.x, at = e0 + 4 * j;
            if (j >= nv) continue;
            float a[4], b[4], cv[4];
#pragma unroll
            for (int e = 0; e < 4; e++) adam_one(pv[u][e], gv[u][e], mv[u][e], vv[u][e], h, first, skip, a[e], b[e], cv[e]);
            Vec<float, 4>::store(po + at, a);
            Vec<float, 4>::store(mo + at, b);
            Vec<float, 4>::store(vo + at, cv);
            // 4 elements within one row (cols, ld and the place multiples of 4): one 8-byte store,
            // rounded as `cast_many` rounds
            if (c) *reinterpret_cast<Word2*>(c + copy_at((unsigned)at, cols, ld)) = Word2{pack(a[0], a[1]), pack(a[2], a[3])};
        }
        e0 += 4 * nv;  // the elements after the last whole group
    }
    for (long long i = e0 + threadIdx.x; i < e1; i += ADAM_THREADS) {
        adam_one(p[i], g[i], first ? 0.f : m[i], first ? 0.f : v[i], h, first, skip, po[i], mo[i], vo[i]);
        if (c) st(c, copy_at((unsigned)i, cols, ld), po[i]);
    }
}
