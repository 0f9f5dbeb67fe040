// Flash attention (src/kernels/flash.rs): causal softmax(q·kᵀ·scale + bias)·v in bf16 on the tensor
// cores (f32 accumulators), never writing the [b·H, L, L] scores or probabilities: the forward
// keeps the output and each row's log-sum-exp, the backward recomputes the probabilities tile by
// tile from them (FlashAttention-2's scheme). Two forms of the products: mma.sync m16n8k16 (sm_80
// on, and head dim 32), and on Hopper at head dim 64 wgmma (FA_WGMMA below: a warpgroup's 64 rows
// per instruction, operands from shared memory by descriptor; flash_fwd_wg, flash_bwd_wg).
//
// Tiles: 64 keys per tile; blocks of 4 warps, 128 queries (32 rows per warp) in the forward, 64
// keys (16 per warp) in the backward; head dim HD (a multiple of 16). Shared rows (of the mma.sync
// kernels; the wgmma tiles below are swizzled instead) are padded by 8
// elements (16 bytes) so that the fragment loads of a warp hit 32 different banks. Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): lane = 4·g + t;
// A (16×16, row-major): registers {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)};
// B (16×8, k × n): {(k 2t..2t+1, n g), (k 2t+8..2t+9, n g)}; C (16×8): {(g, 2t), (g, 2t+1),
// (g+8, 2t), (g+8, 2t+1)}. A pair's lower element sits in the lower 16 bits.
//
// Three files, one after the other in the NVRTC module (nvrtc.rs): this one, the tiles and the
// instructions both directions use; flash_fwd.cu, the forward; flash_bwd.cu, the backward.

#define FA_B 64
#define FA_PAD 8
struct __align__(8) F2 { float x, y; };  // two f32 as one 8-byte shared-memory store

// The instructions below exist from sm_80 on (nvrtc.rs's `arch`; the host never picks these
// kernels below that). tests/kernel_emulator.rs swaps each `#if __CUDA_ARCH__ >= 800` body for
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

// The A fragment (16 rows × 16 columns) made of the C fragments of two adjacent n-tiles (c0 the
// columns 0..7, c1 8..15): how P and dS, computed as C, feed the next product as A.
__device__ __forceinline__ void c_to_a(unsigned* a, const float* c0, const float* c1) {
    a[0] = pack(c0[0], c0[1]), a[1] = pack(c0[2], c0[3]), a[2] = pack(c1[0], c1[1]), a[3] = pack(c1[2], c1[3]);
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

// cp.async of 4 bytes (the rows' f32 statistics; cp16 and the group's commit and waits are in common.cu).
__device__ __forceinline__ void cp4(unsigned dst, const float* src, bool valid) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0));
#else
    __trap();
#endif
}

// From sm_90 on the backward adds each dQ tile into its f32 accumulator with bulk reductions
// (the copy engine reads rows of shared memory and adds them in L2) instead of one atomic per
// element from registers: those filled the load/store queue, on which the next tile's loads then
// waited (Nsight Compute: a quarter of the backward's stall samples in its dQ step, L2 79% busy;
// docs/performance.md). The `#if __CUDA_ARCH__ >= 800` inside the wrappers below is always true
// here: it marks their bodies for the emulator's swap (tests/kernel_emulator.rs).
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

// From sm_90a on (NVRTC's `compute_90a` target on a 9.0 device, nvrtc.rs) the head-dim-64 kernels
// take their products with `wgmma`: a warpgroup (the block's 4 warps) multiplies 64 rows at once,
// with B, and A unless it comes from registers, read from shared memory by a descriptor, so no
// ldmatrix feeds the tensor cores. Operands in shared memory are tiles of rows of 64 bf16 (128
// bytes) in the 128-byte swizzle: 16-byte chunk c of row r sits at chunk c ^ (r % 8), tiles 1,024-byte
// aligned (the pattern's period). Fragment layouts (PTX ISA, wgmma m64nNk16): warp w of the
// warpgroup holds rows 16w.. of A (from registers) and D, each as mma.m16n8k16's A and C above,
// D's n-tiles i = 0..N/8 − 1 in registers 4i..4i + 3. flash.rs's `wgmma` says when the host expects
// this path (its shared-memory size).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FA_WGMMA 1
#else
#define FA_WGMMA 0
#endif
#if FA_WGMMA
// Starts loading rows [r0, r0 + ROWS) of x [L, 64] (rows `ld` elements apart) into the swizzled
// tile at shared address s (zeros past L), with the block's 128 threads.
// A thread's chunks are 16 rows apart, so its swizzle (row mod 8) and column stay the same and a
// fixed trip count unrolls to one predicate, one address step and one copy per chunk (a loop from
// threadIdx.x compiled to ~40 instructions per chunk, a third of the forward's issued instructions).
template <int ROWS>
__device__ __forceinline__ void load_sw(unsigned s, const bf16* x, int r0, int L, int ld) {
    static_assert(ROWS % 16 == 0, "load_sw: rows in steps of 16");
    const int r = threadIdx.x >> 3, ch = threadIdx.x & 7;
    const unsigned d = s + r * 128 + ((ch ^ (r & 7)) << 4);
    const bf16* src = x + (long long)(r0 + r) * ld + ch * 8;
#pragma unroll
    for (int i = 0; i < ROWS / 16; i++) {
        bool in = r0 + r + 16 * i < L;
        cp16(d + i * 2048, in ? src + (long long)(16 * i) * ld : x, in);
    }
}
// The descriptor of a swizzled tile at shared address s for one k-step: a K-major operand (rows of
// the tile are M or N, k contiguous; step kk at s + 32·kk) or an MN-major one (rows are k, M or N
// contiguous; step kk at s + 2048·kk). Either way 8 rows of 128 bytes make a 1,024-byte group
// (stride byte offset), the leading byte offset is unused, layout type 1 = 128-byte swizzle.
__device__ __forceinline__ unsigned long long wg_desc(unsigned s) {
    return (unsigned long long)((s & 0x3ffff) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}
// Orders the registers of in-flight products: the compiler may not move accesses to d across it.
__device__ __forceinline__ void wg_hold(float* d) {
#if __CUDA_ARCH__ >= 800
#pragma unroll
    for (int i = 0; i < 32; i++) asm volatile("" : "+f"(d[i])::"memory");
#endif
}
__device__ __forceinline__ void wg_fence() {
#if __CUDA_ARCH__ >= 800
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wg_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

#define WG_D32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define WG_D32_OUT(d)                                                                                                              \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), \
        "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),             \
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),             \
        "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
// d (64 × 64, f32) = (acc ? d : 0) + A·B, A and B from shared memory (descriptors; TA, TB: the
// operand is MN-major).
template <int TA, int TB>
__device__ __forceinline__ void wgmma_ss(float* d, unsigned long long a, unsigned long long b, int acc) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_D32
                 ", %32, %33, p, 1, 1, %35, %36;\n}\n"
                 : WG_D32_OUT(d)
                 : "l"(a), "l"(b), "r"(acc), "n"(TA), "n"(TB));
#endif
}
// The same with A (64 × 16) from registers (a: mma.m16n8k16's A fragment of this warp's 16 rows).
template <int TB>
__device__ __forceinline__ void wgmma_rs(float* d, const unsigned* a, unsigned long long b, int acc) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_D32
                 ", {%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
                 : WG_D32_OUT(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(TB));
#endif
}
#endif

// Starts loading rows [r0, r0 + ROWS) of x [L, HD] (rows `ld` elements apart) into the padded
// tile at shared address s (zeros past L), with the blocks' 128 threads.
template <int HD, int ROWS = FA_B>
__device__ __forceinline__ void load_tile(unsigned s, const bf16* x, int r0, int L, int ld = HD) {
    // as load_sw: a fixed trip count, each thread's chunks 128 / (HD / 8) rows apart in one column
    const int chunks = HD / 8, step = 128 / chunks;
    static_assert(ROWS % step == 0, "load_tile: whole steps of rows");
    const int r = threadIdx.x / chunks, col = (threadIdx.x % chunks) * 8;
    const unsigned d = s + 2 * (r * (HD + FA_PAD) + col);
    const bf16* src = x + (long long)(r0 + r) * ld + col;
#pragma unroll
    for (int i = 0; i < ROWS / step; i++) {
        bool in = r0 + r + step * i < L;
        cp16(d + 2 * step * i * (HD + FA_PAD), in ? src + (long long)(step * i) * ld : x, in);
    }
}

// Where head row-block bh of a [bh, L, HD] operand starts when HR heads share a row of `ld`
// elements: HR = 1, ld = HD for the heads' own layout [bh, L, HD]; HR = H, ld = H·HD for the heads
// side by side [b, L, H·HD] (o and dO as the output projection reads them); HR = H, ld = 3·H·HD
// for q, k or v inside the fused projection [b, L, 3·H·HD] (the pointer at its part), or ld wider
// where the fused projection lies within the parallel layer's input projections.
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

// ALiBi (Press et al.), the one bias beyond the causal mask, computed per score instead of read
// from a [H, L, L] table (a 2-byte load per score from 6 MB at the pristine shape: 1.4 ms of the
// ALiBi step's 7.4 ms of attention on an H200). `alibi` (f32, flash.rs) holds the heads' slopes
// [H], then each slot's position [L], NaN where a slot has none (a memory token); the bias of query
// i and key j is slope·(p_j − p_i), 0 where either has no position. Null: no bias.
struct Alibi {
    const float* pos;
    float slope;
};
__device__ __forceinline__ Alibi fa_alibi(const float* alibi, int bh, int H) {
    Alibi a = {nullptr, 0.f};
    if (alibi) a.pos = alibi + H, a.slope = alibi[bh % H];
    return a;
}

// The masked score of query i and key j in log2 units, s·sl with sl = scale·log2 e (−∞ where
// masked: j > i, or past L), plus ALiBi's bias if BIAS.
template <bool BIAS>
__device__ __forceinline__ float fa_score(float s, const Alibi& a, int i, int j, int L, float sl) {
    if (j > i || i >= L) return NEG_INF;
    if (!BIAS) return s * sl;
    float b = a.slope * (a.pos[j] - a.pos[i]);
    return fmaf(s, sl, b == b ? b * LOG2E : 0.f);  // NaN: a slot without a position
}

