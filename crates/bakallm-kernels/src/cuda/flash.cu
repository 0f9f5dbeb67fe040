// Flash attention (src/kernels/flash.rs): causal softmax(q·kᵀ·scale + bias)·v in bf16 on the tensor
// cores (mma.sync m16n8k16, f32 accumulators), never writing the [b·H, L, L] scores or
// probabilities: the forward keeps the output and each row's log-sum-exp, the backward recomputes
// the probabilities tile by tile from them (FlashAttention-2's scheme).
//
// Tiles: 64 keys per tile; blocks of 4 warps, 128 queries (32 rows per warp) in the forward, 64
// keys (16 per warp) in the backward; head dim HD (a multiple of 16). Shared rows are padded by 8
// elements (16 bytes) so that the fragment loads of a warp hit 32 different banks. Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): lane = 4·g + t;
// A (16×16, row-major): registers {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)};
// B (16×8, k × n): {(k 2t..2t+1, n g), (k 2t+8..2t+9, n g)}; C (16×8): {(g, 2t), (g, 2t+1),
// (g+8, 2t), (g+8, 2t+1)}. A pair's lower element sits in the lower 16 bits.

#define FA_B 64
#define FA_PAD 8
struct __align__(8) F2 { float x, y; };  // two f32 as one 8-byte shared-memory store

// The instructions below exist from sm_80 on (nvrtc.rs's `arch`; the host never picks these
// kernels below that). tests/flash_emulator.rs swaps each `#if __CUDA_ARCH__ >= 800` body for
// its CPU emulation (tests/emu/emu.h) to check the kernels without a GPU.
__device__ __forceinline__ void mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
}

// 2^x, the instruction __expf ends in too: with scores in log2 units (scale·log2 e folded in)
// each probability is one FMA and this, where exp(s·scale − m) was three instructions.
__device__ __forceinline__ float ex2(float x) {
#if __CUDA_ARCH__ >= 800
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
#else
    __trap();
    return 0.f;
#endif
}

// The shared-state-space address of a pointer into shared memory (what ldmatrix, cp.async and the
// bulk copies take), in bytes. The kernels convert each buffer's pointer once and address tiles
// by 32-bit offsets from it: through generic pointers every ldmatrix and cp.async cost a 64-bit
// address computation and a conversion: 28% of the backward's instructions (Nsight Compute).
__device__ __forceinline__ unsigned smem(const void* p) {
    unsigned a = 0;
#if __CUDA_ARCH__ >= 800
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
#else
    __trap();
#endif
    return a;
}

// ldmatrix: four 8×8 bf16 matrices of shared memory, lane l giving the address of row l % 8 of
// matrix l / 8; register i of each lane gets (row lane / 4, columns 2·(lane % 4) and + 1) of matrix
// i, or of its transpose (`trans`): one instruction for what takes four (eight) plain loads.
__device__ __forceinline__ void ldsm4(unsigned* r, unsigned a) {
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#else
    __trap();
#endif
}
__device__ __forceinline__ void ldsm4_t(unsigned* r, unsigned a) {
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#else
    __trap();
#endif
}

// B fragments of a [n][k] tile at shared address s (rows n, k contiguous: K in q·kᵀ): for n-tile
// n, k-steps kk and kk + 1: {b0, b1} of kk, then of kk + 1.
__device__ __forceinline__ void b_frags_nk(unsigned* r, unsigned s, int stride, int n, int kk) {
    int l = threadIdx.x & 31;
    ldsm4(r, s + 2 * ((n * 8 + (l & 7)) * stride + kk * 16 + (l >> 3) * 8));
}
// B fragments of a [k][n] tile (rows k, n contiguous: V in p·v): for k-step kk, n-tiles n and n + 1.
__device__ __forceinline__ void b_frags_kn(unsigned* r, unsigned s, int stride, int kk, int n) {
    int l = threadIdx.x & 31;
    ldsm4_t(r, s + 2 * ((kk * 16 + (l & 7) + ((l >> 3) & 1) * 8) * stride + (n + (l >> 4)) * 8));
}

// Two bf16 of shared memory as one word: row r, columns c and c + 1 (c even).
__device__ __forceinline__ unsigned pair(const bf16* s, int stride, int r, int c) {
    return *reinterpret_cast<const unsigned*>(s + r * stride + c);
}

// cp.async: 16 bytes global → shared without passing through registers, so a tile for the next
// iteration loads while this one computes; zeros instead where !valid. Then the group's commit
// and the wait for all groups.
__device__ __forceinline__ void cp16(unsigned dst, const bf16* src, bool valid) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
#else
    __trap();
#endif
}
// The same for 4 bytes (the rows' f32 statistics).
__device__ __forceinline__ void cp4(unsigned dst, const float* src, bool valid) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_wait_all() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::);
#else
    __trap();
#endif
}

// From sm_90 on the backward adds each dQ tile into its f32 accumulator with bulk reductions
// (the copy engine reads rows of shared memory and adds them in L2) instead of one atomic per
// element from registers: those filled the load/store queue, on which the next tile's loads then
// waited (Nsight Compute: 17% of the backward's stall samples at the atomics, L2 78% busy).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define FA_BULK_DQ 1
#else
#define FA_BULK_DQ 0
#endif
#if FA_BULK_DQ
// Orders this thread's shared-memory writes before the bulk copies that read them.
__device__ __forceinline__ void fence_async() {
#if __CUDA_ARCH__ >= 800
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
    __trap();
#endif
}
// dst[0, bytes / 4) += src[0, bytes / 4) (f32, shared → global, src and dst 16-byte aligned, bytes
// a multiple of 16), asynchronously, in this thread's current bulk group.
__device__ __forceinline__ void bulk_add(float* dst, unsigned src, int bytes) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src), "r"(bytes) : "memory");
#else
    __trap();
#endif
}
__device__ __forceinline__ void bulk_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#else
    __trap();
#endif
}
// Waits until this thread's bulk groups have read their shared memory (which may then be reused).
__device__ __forceinline__ void bulk_wait_read() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
#else
    __trap();
#endif
}
#endif

// Starts loading rows [r0, r0 + ROWS) of x [L, HD] (rows `ld` elements apart) into the padded
// tile at shared address s (zeros past L), with the blocks' 128 threads.
template <int HD, int ROWS = FA_B>
__device__ __forceinline__ void load_tile(unsigned s, const bf16* x, int r0, int L, int ld = HD) {
    const int chunks = HD / 8;
#pragma unroll
    for (int c = threadIdx.x; c < ROWS * chunks; c += 128) {
        int r = c / chunks, col = (c % chunks) * 8;
        bool in = r0 + r < L;
        cp16(s + 2 * (r * (HD + FA_PAD) + col), x + (in ? (long long)(r0 + r) * ld + col : 0), in);
    }
}

// Where head row-block bh of a [bh, L, HD] operand starts when HR heads share a row of `ld`
// elements: HR = 1, ld = HD for the heads' own layout [bh, L, HD]; HR = H, ld = H·HD for the heads
// side by side [b, L, H·HD] (o and dO as the output projection reads them); HR = H, ld = 3·H·HD
// for q, k or v inside the fused projection [b, L, 3·H·HD] (the pointer at its part).
template <int HD>
__device__ __forceinline__ long long row_base(int bh, int L, int hr, int ld) {
    return (long long)(bh / hr) * L * ld + (long long)(bh % hr) * HD;
}

// The A fragments of rows [r, r + 16) × all HD columns of a padded tile.
template <int HD>
__device__ __forceinline__ void a_frags(unsigned (*a)[4], const bf16* s, int r) {
    int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    const int S = HD + FA_PAD;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        a[kk][0] = pair(s, S, r + g, kk * 16 + 2 * t);
        a[kk][1] = pair(s, S, r + g + 8, kk * 16 + 2 * t);
        a[kk][2] = pair(s, S, r + g, kk * 16 + 8 + 2 * t);
        a[kk][3] = pair(s, S, r + g + 8, kk * 16 + 8 + 2 * t);
    }
}

// The A fragment of rows [r, r + 16) × columns [16·kk, 16·kk + 16) of a padded tile, by ldmatrix
// (lanes 0–15 address rows r.. at column 16·kk, lanes 16–31 the same rows at 16·kk + 8).
template <int HD>
__device__ __forceinline__ void a_frag(unsigned* a, unsigned s, int r, int kk) {
    int l = threadIdx.x & 31;
    ldsm4(a, s + 2 * ((r + (l & 15)) * (HD + FA_PAD) + kk * 16 + (l >> 4) * 8));
}

// The (row block, head) of this block in a grid (row blocks, bh). In grid order the GPU starts a
// head's row blocks together, whose K and V tiles then meet in L2. In a small grid (at most
// HEAVIEST_FIRST_BLOCKS blocks: about two and a half waves of three blocks on an H200's 132 SMs)
// the tail matters more: there the blocks are renumbered so that the heaviest start first, every
// head's largest row block, then every head's next largest, and the grid ends on light blocks
// (longest job first). Measured on an H200 (docs/performance.md): batch 8 (384 and 768 blocks)
// 12.01 vs 12.19 ms per step heaviest first; batch 32 (1,536 and 3,072) 36.93 vs 36.49, so grid
// order there. The forward's heaviest row block is the last (it sees every key), the backward's
// the first (`first_heaviest`).
#define HEAVIEST_FIRST_BLOCKS 1024
__device__ __forceinline__ void heaviest_first(int& rb, int& bh, bool first_heaviest) {
    if (gridDim.x * gridDim.y > HEAVIEST_FIRST_BLOCKS) {
        rb = first_heaviest ? blockIdx.x : gridDim.x - 1 - blockIdx.x, bh = blockIdx.y;
        return;
    }
    int lin = blockIdx.y * gridDim.x + blockIdx.x, rank = lin / gridDim.y;
    bh = lin % gridDim.y;
    rb = first_heaviest ? rank : gridDim.x - 1 - rank;
}

#define LOG2E 1.4426950408889634f

// The masked score of query i and key j in log2 units, s·sl with sl = scale·log2 e (−∞ where
// masked: j > i, or past L), plus the bias [L, L] if BIAS (ALiBi; without it the bias is the
// causal mask alone, which this applies).
template <bool BIAS>
__device__ __forceinline__ float fa_score(float s, const bf16* bias, int i, int j, int L, float sl) {
    if (j > i || i >= L) return NEG_INF;
    return BIAS ? fmaf(s, sl, ld(bias, (long long)i * L + j) * LOG2E) : s * sl;
}

// Queries per forward block: 32 rows per warp, so that every K and V fragment a warp loads feeds
// two row tiles' products (half the shared-memory reads per product of 16 rows a warp).
#define FA_BM 128

// One online-softmax step of a forward row tile (rows r0 and r0 + 8 of this thread, keys k0..):
// the scores s become probabilities, and the row maxima m (log2 units), sums l and output acc
// are rescaled. `edge`: the tile reaches past the diagonal or past L, so that it needs the mask;
// without mask or bias the scores stay raw and the scale goes into the exponent's FMA.
template <int HD, int NT, bool BIAS>
__device__ __forceinline__ void fa_online(float (*s)[4], float* m, float* l, float (*acc)[4], const bf16* b, int r0, int k0, int L,
                                          float sl, bool edge) {
    int t = threadIdx.x & 3;
    bool raw = !BIAS && !edge;
    float mx[2] = {NEG_INF, NEG_INF}, mul = raw ? sl : 1.f;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int i = r0 + (e >> 1) * 8, j = k0 + n * 8 + 2 * t + (e & 1);
            if (!raw) s[n][e] = fa_score<BIAS>(s[n][e], b, i, j, L, sl);
            mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
        }
    float alpha[2], base_m[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        float mn = fmaxf(m[r], mx[r] * mul);  // sl > 0: the maximum of the scaled scores
        base_m[r] = mn == NEG_INF ? 0.f : mn;  // all masked so far: 2^(−∞ − 0) = 0
        alpha[r] = ex2(m[r] - base_m[r]);
        m[r] = mn;
        l[r] *= alpha[r];
    }
#pragma unroll
    for (int d = 0; d < HD / 8; d++) acc[d][0] *= alpha[0], acc[d][1] *= alpha[0], acc[d][2] *= alpha[1], acc[d][3] *= alpha[1];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[n][e] = ex2(fmaf(s[n][e], mul, -base_m[e >> 1]));
            l[e >> 1] += s[n][e];
        }
}

// A forward row tile's output rows r0 and r0 + 8 (acc / l) and their log-sum-exp.
template <int HD>
__device__ __forceinline__ void fa_store(float (*acc)[4], const float* m, float* l, bf16* ob, int ld, float* lseb, int r0, int L) {
    int t = threadIdx.x & 3;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    float inv[2] = {l[0] > 0.f ? 1.f / l[0] : 0.f, l[1] > 0.f ? 1.f / l[1] : 0.f};
    int r1 = r0 + 8;
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        int c = d * 8 + 2 * t;
        if (r0 < L) *reinterpret_cast<unsigned*>(ob + (long long)r0 * ld + c) = pack(acc[d][0] * inv[0], acc[d][1] * inv[0]);
        if (r1 < L) *reinterpret_cast<unsigned*>(ob + (long long)r1 * ld + c) = pack(acc[d][2] * inv[1], acc[d][3] * inv[1]);
    }
    if (t == 0) {
        const float INF = __int_as_float(0x7f800000);
        // natural log: m is in log2 units
        if (r0 < L) lseb[r0] = l[0] > 0.f ? m[0] / LOG2E + __logf(l[0]) : INF;
        if (r1 < L) lseb[r1] = l[1] > 0.f ? m[1] / LOG2E + __logf(l[1]) : INF;
    }
}

// One half of a key tile in the forward (keys kh = k0 + 32·hk.., the tile's n-tiles 4·hk..) for
// this warp's row tiles H0..1 (rows r0s[h]..): scores, the online softmax, P·V. A template, so
// that a row tile that sees none of the keys costs no instructions (as a branch around each
// product it still issued them, predicated off).
template <int HD, bool BIAS, int H0>
__device__ __forceinline__ void fa_half(const unsigned (*qa)[HD / 16][4], float (*m)[2], float (*l)[2], float (*acc)[HD / 8][4],
                                        unsigned Ks, unsigned Vs, const bf16* b, const int* r0s, int hk, int kh, int L, float scale) {
    const int S = HD + FA_PAD;
    int g = (threadIdx.x & 31) >> 2;
    float s[2][4][4];
#pragma unroll
    for (int n = 0; n < 4; n++) {
#pragma unroll
        for (int h = H0; h < 2; h++) s[h][n][0] = s[h][n][1] = s[h][n][2] = s[h][n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk += 2) {
            unsigned bb[4];
            b_frags_nk(bb, Ks, S, 4 * hk + n, kk);
#pragma unroll
            for (int h = H0; h < 2; h++) {
                mma16816(s[h][n], qa[h][kk], bb[0], bb[1]);
                mma16816(s[h][n], qa[h][kk + 1], bb[2], bb[3]);
            }
        }
    }
#pragma unroll
    for (int h = H0; h < 2; h++) {
        int r0 = r0s[h];
        fa_online<HD, 4, BIAS>(s[h], m[h], l[h], acc[h], b, r0 + g, kh, L, scale * LOG2E, kh + 31 > r0 || r0 + 15 >= L);
    }
    // P (16 × 32, the C fragments of two adjacent n-tiles make one A fragment) · V
#pragma unroll
    for (int k2 = 0; k2 < 2; k2++) {
        unsigned pa[2][4];
#pragma unroll
        for (int h = H0; h < 2; h++) {
            pa[h][0] = pack(s[h][2 * k2][0], s[h][2 * k2][1]), pa[h][1] = pack(s[h][2 * k2][2], s[h][2 * k2][3]);
            pa[h][2] = pack(s[h][2 * k2 + 1][0], s[h][2 * k2 + 1][1]), pa[h][3] = pack(s[h][2 * k2 + 1][2], s[h][2 * k2 + 1][3]);
        }
#pragma unroll
        for (int d = 0; d < HD / 8; d += 2) {
            unsigned bb[4];
            b_frags_kn(bb, Vs, S, 2 * hk + k2, d);
#pragma unroll
            for (int h = H0; h < 2; h++) {
                mma16816(acc[h][d], pa[h], bb[0], bb[1]);
                mma16816(acc[h][d + 1], pa[h], bb[2], bb[3]);
            }
        }
    }
}

// Forward: q, k, v in row_base's layout (QH, QLD), o in (OH, OH·HD), and lse [bh, L] (f32, natural log of Σ exp over the row's scores; +∞ for
// a row whose every key is masked, whose output is zeros). Grid (⌈L/128⌉, bh), the heaviest query
// blocks (last, most keys) first (heaviest_first). Warp w owns the block's 16-row tiles w and 7 − w (h = 0, 1).
template <int HD, bool BIAS>
__device__ void flash_fwd(const bf16* q, const bf16* k, const bf16* v, const bf16* bias, bf16* o, float* lse, int L, int H,
                          long long bias_sb, long long bias_sh, float scale, int oh, int qh, int qld) {
    // Q (128 rows) | K | V; K and V double-buffered, the second buffer in Q's place once Q is in
    // registers: tile kb + 1 loads while tile kb computes
    const int S = HD + FA_PAD, T = FA_B * S;
    __shared__ __align__(16) bf16 sm[4 * T];
    const unsigned sa = smem(sm);  // shared addresses in bytes: Q at sa, K and V of buffer buf at kt(buf), kt(buf) + 2·T
    auto kt = [&](int buf) { return sa + (buf ? 0 : 4 * T); };
    int qb, bh;
    heaviest_first(qb, bh, false);
    int q0 = qb * FA_BM;
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2;
    long long base = row_base<HD>(bh, L, qh, qld);
    const bf16* b = bias + (bh / H) * bias_sb + (bh % H) * bias_sh;
    load_tile<HD, FA_BM>(sa, q + base, q0, L, qld);
    load_tile<HD>(kt(0), k + base, 0, L, qld);
    load_tile<HD>(kt(0) + 2 * T, v + base, 0, L, qld);
    cp_commit();
    cp_wait_all();
    __syncthreads();
    // warp w owns the block's 16-row tiles w and 7 − w: on the diagonal a row tile sees the fewer
    // keys the earlier it is, and each pair has the same work (5 units of 16 rows × 32 keys; warps
    // owning two adjacent tiles had 2 to 8, and three waited at the barriers for the fourth)
    int r0s[2] = {q0 + 16 * warp, q0 + 16 * (7 - warp)};
    unsigned qa[2][HD / 16][4];
    a_frags<HD>(qa[0], sm, 16 * warp);
    a_frags<HD>(qa[1], sm, 16 * (7 - warp));
    __syncthreads();  // Q is in registers: its place is the second K/V buffer's from here
    int last = ((q0 + FA_BM < L ? q0 + FA_BM : L) - 1) / FA_B;  // the last key tile
    float m[2][2] = {{NEG_INF, NEG_INF}, {NEG_INF, NEG_INF}}, l[2][2] = {{0.f, 0.f}, {0.f, 0.f}}, acc[2][HD / 8][4];
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int d = 0; d < HD / 8; d++) acc[h][d][0] = acc[h][d][1] = acc[h][d][2] = acc[h][d][3] = 0.f;
    for (int kb = 0; kb <= last; kb++) {
        int k0 = kb * FA_B, buf = kb & 1;
        if (kb < last) {
            load_tile<HD>(kt(buf ^ 1), k + base, k0 + FA_B, L, qld);
            load_tile<HD>(kt(buf ^ 1) + 2 * T, v + base, k0 + FA_B, L, qld);
            cp_commit();
        }
        // the tile in two halves of 32 keys: half the score registers live (three blocks per SM)
#pragma unroll
        for (int hk = 0; hk < 2; hk++) {
            int kh = k0 + 32 * hk;
            if (kh > r0s[1] + 15) continue;  // every key of the half is after this warp's rows
            if (kh <= r0s[0] + 15)
                fa_half<HD, BIAS, 0>(qa, m, l, acc, kt(buf), kt(buf) + 2 * T, b, r0s, hk, kh, L, scale);
            else  // the first row tile sees none of these keys
                fa_half<HD, BIAS, 1>(qa, m, l, acc, kt(buf), kt(buf) + 2 * T, b, r0s, hk, kh, L, scale);
        }
        cp_wait_all();
        __syncthreads();
    }
#pragma unroll
    for (int h = 0; h < 2; h++) fa_store<HD>(acc[h], m[h], l[h], o + row_base<HD>(bh, L, oh, oh * HD), oh * HD, lse + (long long)bh * L, r0s[h] + g, L);
}

// delta [bh·L] = Σ_d dO ⊙ O over each row of HD (f32; O and dO in row_base's layout (OH, OH·HD)): HD / 8 lanes per row, 16 bytes each, so
// that a warp's loads cover whole rows (with a thread per row each load instruction touched 32
// rows' 128-byte lines: 0.39 ms per pristine step, ~3× the time to read O and dO once).
template <int HD>
__device__ void flash_dot(const bf16* o, const bf16* dout, float* delta, long long rows, int L, int oh) {
    const int LANES = HD / 8;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x, row = i / LANES;
    int j = (int)(i % LANES) * 8;
    float s = 0.f;
    if (row < rows) {
        float a[8], b[8];
        long long at = row_base<HD>((int)(row / L), L, oh, oh * HD) + (row % L) * oh * HD + j;
        Vec<bf16, 8>::load(o + at, a);
        Vec<bf16, 8>::load(dout + at, b);
#pragma unroll
        for (int e = 0; e < 8; e++) s += a[e] * b[e];
    }
#pragma unroll
    for (int off = LANES / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);  // every lane: no early return
    if (row < rows && j == 0) delta[row] = s;
}

// Backward: one block per 64 keys (4 warps × 16 keys) and head, looping over the query blocks at
// or after them (causal). Per tile, with Sᵀ = K·Qᵀ: Pᵀ = exp(Sᵀ·scale + biasᵀ − lse),
// dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − delta), dK += dSᵀ·Q (registers, written once, × scale),
// dQ += dS·K (through shared memory, added into dq_acc [bh, L, HD] f32 with atomics, × scale).
// Registers: only dK and dV stay in them across tiles (64 at head dim 64); the K and V fragments
// come from shared memory, and each query tile goes in two halves of 32, so that three blocks fit
// an SM (at 254 registers two did, and the SM's issue slots were busy 39% of the time).
template <int HD, bool BIAS>
__device__ void flash_bwd(const bf16* q, const bf16* k, const bf16* v, const bf16* bias, const bf16* dout, const float* lse,
                          const float* delta, float* dq_acc, bf16* dk, bf16* dv, int L, int H, long long bias_sb, long long bias_sh,
                          float scale, int oh, int qh, int qld) {
    // dynamic shared memory (flash_bwd_smem bytes, flash.rs): K, V, dSᵀ; Q and dO side by side
    // and the rows' lse and delta, double-buffered (tile qb + 1 loads while qb computes); with
    // FA_BULK_DQ a tile's Q|dO buffer holds its dQ rows (f32, rows HD + FA_PAD apart: the same
    // bytes) once dK and dV have read it
    extern __shared__ __align__(16) bf16 fa_dyn[];
    const int S = HD + FA_PAD, SS = FA_B + FA_PAD, TD = FA_B * S;
    bf16 *dSs = fa_dyn + 2 * TD, *QDb = dSs + FA_B * SS;  // QDb: Q, dO of buffer 0, then of 1
    float* stats = reinterpret_cast<float*>(QDb + 4 * TD);  // lse[2][64], delta[2][64]
    // the same as shared addresses in bytes (K at Ks, V at Ks + 2·TD)
    const unsigned Ks = smem(fa_dyn), Vs = Ks + 2 * TD, dSa = smem(dSs), QDa = smem(QDb), sta = smem(stats);
    int kb, bh;
    heaviest_first(kb, bh, true);
    int k0 = kb * FA_B, nb = gridDim.x;
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
    long long base = row_base<HD>(bh, L, qh, qld), acc_base = (long long)bh * L * HD;
    const bf16* b = bias + (bh / H) * bias_sb + (bh % H) * bias_sh;
    auto prefetch = [&](int qb, int buf) {
        load_tile<HD>(QDa + buf * 4 * TD, q + base, qb * FA_B, L, qld);
        load_tile<HD>(QDa + buf * 4 * TD + 2 * TD, dout + row_base<HD>(bh, L, oh, oh * HD), qb * FA_B, L, oh * HD);
        // asynchronously too: plain loads here stalled every warp on global memory at each tile
        for (int i = threadIdx.x; i < 2 * FA_B; i += blockDim.x) {
            int row = qb * FA_B + i % FA_B;
            bool in = row < L;
            cp4(sta + 4 * (buf * 2 * FA_B + i), (i < FA_B ? lse : delta) + (long long)bh * L + (in ? row : 0), in);
        }
    };
    load_tile<HD>(Ks, k + base, k0, L, qld);
    load_tile<HD>(Vs, v + base, k0, L, qld);
    prefetch(kb, 0);
    cp_commit();
    cp_wait_all();
    __syncthreads();
    int j0 = k0 + warp * 16 + g, j1 = j0 + 8;  // this thread's two keys
    float dka[HD / 8][4], dva[HD / 8][4], sl = scale * LOG2E;
#pragma unroll
    for (int d = 0; d < HD / 8; d++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[d][e] = dva[d][e] = 0.f;
    for (int qb = kb; qb < nb; qb++) {
        int q0 = qb * FA_B, buf = (qb - kb) & 1;
        if (qb + 1 < nb) {
            prefetch(qb + 1, buf ^ 1);
            cp_commit();
        }
        const unsigned Qs = QDa + buf * 4 * TD, Ds = Qs + 2 * TD;
        const float *lse_s = stats + buf * 2 * FA_B, *delta_s = lse_s + FA_B;
        bool edge = BIAS || qb == kb || q0 + FA_B > L;  // the diagonal tile, or rows past L: the mask
#pragma unroll
        for (int half = 0; half < 2; half++) {  // queries q0 + 32·half + [0, 32): n-tiles 4·half + n
            float p[4][4], dp[4][4];
#pragma unroll
            for (int n = 0; n < 4; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) p[n][e] = dp[n][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk += 2) {
                unsigned ka[2][4], va[2][4];
                a_frag<HD>(ka[0], Ks, warp * 16, kk), a_frag<HD>(ka[1], Ks, warp * 16, kk + 1);
                a_frag<HD>(va[0], Vs, warp * 16, kk), a_frag<HD>(va[1], Vs, warp * 16, kk + 1);
#pragma unroll
                for (int n = 0; n < 4; n++) {
                    unsigned bq[4], bd[4];
                    b_frags_nk(bq, Qs, S, 4 * half + n, kk);
                    b_frags_nk(bd, Ds, S, 4 * half + n, kk);
                    mma16816(p[n], ka[0], bq[0], bq[1]);
                    mma16816(p[n], ka[1], bq[2], bq[3]);
                    mma16816(dp[n], va[0], bd[0], bd[1]);
                    mma16816(dp[n], va[1], bd[2], bd[3]);
                }
            }
#pragma unroll
            for (int n = 0; n < 4; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int il = (4 * half + n) * 8 + 2 * t + (e & 1), j = e < 2 ? j0 : j1;
                    // 2^(−∞) = 0 where masked; past L lse_s is 0
                    float lse2 = lse_s[il] * LOG2E;
                    p[n][e] = edge ? ex2(fa_score<BIAS>(p[n][e], b, q0 + il, j, L, sl) - lse2) : ex2(fmaf(p[n][e], sl, -lse2));
                    dp[n][e] = p[n][e] * (dp[n][e] - delta_s[il]);  // dSᵀ (without the scale)
                }
            // dV += Pᵀ·dO and dK += dSᵀ·Q over these 32 queries: A from the registers, B from the
            // [query][d] tiles
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int kk = 2 * half + h;
                unsigned pa[4] = {pack(p[2 * h][0], p[2 * h][1]), pack(p[2 * h][2], p[2 * h][3]), pack(p[2 * h + 1][0], p[2 * h + 1][1]),
                                  pack(p[2 * h + 1][2], p[2 * h + 1][3])};
                unsigned sa[4] = {pack(dp[2 * h][0], dp[2 * h][1]), pack(dp[2 * h][2], dp[2 * h][3]), pack(dp[2 * h + 1][0], dp[2 * h + 1][1]),
                                  pack(dp[2 * h + 1][2], dp[2 * h + 1][3])};
#pragma unroll
                for (int d = 0; d < HD / 8; d += 2) {
                    unsigned bd[4], bq[4];
                    b_frags_kn(bd, Ds, S, kk, d);
                    b_frags_kn(bq, Qs, S, kk, d);
                    mma16816(dva[d], pa, bd[0], bd[1]);
                    mma16816(dva[d + 1], pa, bd[2], bd[3]);
                    mma16816(dka[d], sa, bq[0], bq[1]);
                    mma16816(dka[d + 1], sa, bq[2], bq[3]);
                }
                // dSᵀ to shared ([key][query]) for dQ
                int kr = warp * 16 + g;
                *reinterpret_cast<unsigned*>(dSs + kr * SS + kk * 16 + 2 * t) = sa[0];
                *reinterpret_cast<unsigned*>(dSs + (kr + 8) * SS + kk * 16 + 2 * t) = sa[1];
                *reinterpret_cast<unsigned*>(dSs + kr * SS + kk * 16 + 8 + 2 * t) = sa[2];
                *reinterpret_cast<unsigned*>(dSs + (kr + 8) * SS + kk * 16 + 8 + 2 * t) = sa[3];
            }
        }
        __syncthreads();
        // dQ rows [q0 + 16·warp, +16) = dS (queries × 64 keys) · K: A[i][j] = dSᵀ[j][i]
        float dq[HD / 8][4];
#pragma unroll
        for (int d = 0; d < HD / 8; d++) dq[d][0] = dq[d][1] = dq[d][2] = dq[d][3] = 0.f;
        int qi = warp * 16 + g, lane = threadIdx.x & 31, m4 = lane >> 3;
#pragma unroll
        for (int kk = 0; kk < FA_B / 16; kk++) {
            // A[i][j] = dSᵀ[j][i]: the transposed 8×8 blocks (keys kk·16 + 0|8, queries 16·warp + 0|8)
            unsigned a[4];
            ldsm4_t(a, dSa + 2 * ((kk * 16 + (m4 >> 1) * 8 + (lane & 7)) * SS + warp * 16 + (m4 & 1) * 8));
#pragma unroll
            for (int d = 0; d < HD / 8; d += 2) {
                unsigned bk[4];
                b_frags_kn(bk, Ks, S, kk, d);
                mma16816(dq[d], a, bk[0], bk[1]);
                mma16816(dq[d + 1], a, bk[2], bk[3]);
            }
        }
        float* dqb = dq_acc + acc_base;
#if FA_BULK_DQ
        // the warp's 16 rows into this tile's Q|dO buffer (free: dK and dV have read it), two rows
        // (as dq_acc holds them) per chunk, the chunks 32 bytes apart so that the 8 rows of a store
        // fall on 4 different 32-byte bank windows (2 wavefronts, the least for 256 bytes); then
        // lane 0 adds the 8 chunks into dq_acc with one bulk reduction each
        const int CH = 2 * HD + 8;  // floats from one chunk to the next
        static_assert(4 * 8 * CH * 4 <= 2 * TD * 2, "the chunks fit a Q|dO buffer");
        float* stage = reinterpret_cast<float*>(QDb + buf * 2 * TD) + warp * 8 * CH;
        const unsigned stage_a = QDa + buf * 4 * TD + warp * 8 * CH * 4;
#pragma unroll
        for (int d = 0; d < HD / 8; d++) {
            int c = d * 8 + 2 * t;
            *reinterpret_cast<F2*>(stage + (g >> 1) * CH + (g & 1) * HD + c) = F2{dq[d][0] * scale, dq[d][1] * scale};
            *reinterpret_cast<F2*>(stage + (4 + (g >> 1)) * CH + (g & 1) * HD + c) = F2{dq[d][2] * scale, dq[d][3] * scale};
        }
        fence_async();
        __syncwarp();
        if (lane == 0) {
            int row = q0 + warp * 16;
#pragma unroll
            for (int i = 0; i < 8; i++)
                if (row + 2 * i < L) bulk_add(dqb + (long long)(row + 2 * i) * HD, stage_a + i * CH * 4, (row + 2 * i + 1 < L ? 2 : 1) * HD * 4);
            bulk_commit();
            bulk_wait_read();  // before the next tile's prefetch overwrites the chunks
        }
#else
        int i0 = q0 + qi, i1 = i0 + 8;
#pragma unroll
        for (int d = 0; d < HD / 8; d++) {
            int c = d * 8 + 2 * t;
            if (i0 < L) atomicAdd(dqb + (long long)i0 * HD + c, dq[d][0] * scale), atomicAdd(dqb + (long long)i0 * HD + c + 1, dq[d][1] * scale);
            if (i1 < L) atomicAdd(dqb + (long long)i1 * HD + c, dq[d][2] * scale), atomicAdd(dqb + (long long)i1 * HD + c + 1, dq[d][3] * scale);
        }
#endif
        cp_wait_all();
        __syncthreads();
    }
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        int c = d * 8 + 2 * t;
        if (j0 < L) {
            *reinterpret_cast<unsigned*>(dk + base + (long long)j0 * qld + c) = pack(dka[d][0] * scale, dka[d][1] * scale);
            *reinterpret_cast<unsigned*>(dv + base + (long long)j0 * qld + c) = pack(dva[d][0], dva[d][1]);
        }
        if (j1 < L) {
            *reinterpret_cast<unsigned*>(dk + base + (long long)j1 * qld + c) = pack(dka[d][2] * scale, dka[d][3] * scale);
            *reinterpret_cast<unsigned*>(dv + base + (long long)j1 * qld + c) = pack(dva[d][2], dva[d][3]);
        }
    }
}

// dq (bf16, row_base's layout (QH, QLD)) from its f32 accumulator [bh, L, hd] of n elements (hd a
// multiple of 8), 8 per thread.
extern "C" __global__ void flash_dq(const float* acc, bf16* dq, long long n, int L, int hd, int qh, int qld) {
    long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= n) return;
    long long row = i / hd, bh = row / L;
    long long at = (bh / qh) * L * qld + (bh % qh) * hd + (row % L) * qld + i % hd;
    float v[8];
    Vec<float, 4>::load(acc + i, v);
    Vec<float, 4>::load(acc + i + 4, v + 4);
    Vec<bf16, 8>::store(dq + at, v);
}

// NAME: hd<HD>, and _bias for the kernels that add a bias (ALiBi).
#define FLASH_KERNELS(HD, BIAS, NAME)                                                                                       \
    extern "C" __global__ void __launch_bounds__(128, 3)                                                                     \
        flash_fwd_##NAME(const bf16* q, const bf16* k, const bf16* v, const bf16* bias, bf16* o, float* lse, int L, int H,   \
                         long long bias_sb, long long bias_sh, float scale, int oh, int qh, int qld) {                       \
        flash_fwd<HD, BIAS>(q, k, v, bias, o, lse, L, H, bias_sb, bias_sh, scale, oh, qh, qld);                              \
    }                                                                                                                        \
    extern "C" __global__ void __launch_bounds__(128, 3)                                                                     \
        flash_bwd_##NAME(const bf16* q, const bf16* k, const bf16* v, const bf16* bias, const bf16* dout, const float* lse,  \
                         const float* delta, float* dq_acc, bf16* dk, bf16* dv, int L, int H, long long bias_sb,            \
                         long long bias_sh, float scale, int oh, int qh, int qld) {                                          \
        flash_bwd<HD, BIAS>(q, k, v, bias, dout, lse, delta, dq_acc, dk, dv, L, H, bias_sb, bias_sh, scale, oh, qh, qld);    \
    }

FLASH_KERNELS(32, false, hd32)
FLASH_KERNELS(64, false, hd64)
FLASH_KERNELS(32, true, hd32_bias)
FLASH_KERNELS(64, true, hd64_bias)
extern "C" __global__ void flash_dot_hd32(const bf16* o, const bf16* dout, float* delta, long long rows, int L, int oh) {
    flash_dot<32>(o, dout, delta, rows, L, oh);
}
extern "C" __global__ void flash_dot_hd64(const bf16* o, const bf16* dout, float* delta, long long rows, int L, int oh) {
    flash_dot<64>(o, dout, delta, rows, L, oh);
}
