// The MLP's down projection backward fused with the gate's (mlp.rs `down_bwd`; after
// flash_bwd_wg.cu, whose wgmma helpers it uses; sm_90a only): gs = dy·wdᵀ [n, F] in tiles of 128
// rows × 128 columns with wgmma, each tile then taken through glu_bwd's formulas in the block's
// epilogue (da, du into dh; gs ← s = silu(a)·u) instead of being written for glu_bwd to read
// back: at the pristine shape 200 MB less traffic per layer. gs is rounded to bf16 before the
// gate's formulas as cuBLAS's output was, so the two paths differ at most in the GEMM's order of
// summation (on an H100 the same bits: the GPU test finds no difference at the pristine shape).

#if FA_WGMMA
#define WG_D64 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define WG_D64_OUT(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), \
    "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), \
    "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), \
    "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), \
    "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), \
    "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
// d (64 × 128, f32) = (acc ? d : 0) + A·B, A (64 × 16) and B (128 × 16) K-major from shared memory.
__device__ __forceinline__ void wgmma_n128(float* d, unsigned long long a, unsigned long long b, int acc) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\nwgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_D64
                 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : WG_D64_OUT(d)
                 : "l"(a), "l"(b), "r"(acc));
#endif
}
// A hint to bring the line holding p into L2.
__device__ __forceinline__ void prefetch_l2(const void* p) {
#if __CUDA_ARCH__ >= 800
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
#endif
}

#define GG_STAGE 32768  // bytes of a stage: A (128 rows × 64 k) then B (128 × 64), swizzled
#define GG_PITCH 136    // bf16 per row of the gs tile the epilogue reads (272 bytes: no bank conflicts)

// Starts loading rows [r0, r0 + 128) × columns [k0, k0 + 64) of x (rows `ld` apart; zeros from
// row `rows` on) into the swizzled tile at shared address s, with the block's 256 threads.
__device__ __forceinline__ void gg_load(unsigned s, const bf16* x, int r0, int rows, long long ld, int k0) {
    const int r = threadIdx.x >> 3, ch = threadIdx.x & 7;
    const unsigned d = s + r * 128 + ((ch ^ (r & 7)) << 4);
    const bf16* src = x + (long long)(r0 + r) * ld + k0 + ch * 8;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        bool in = r0 + r + 32 * i < rows;
        cp16(d + i * 4096, in ? src + 32 * i * ld : x, in);
    }
}
// Starts stage kt's loads: dy's rows [m0, m0 + 128) and wd's rows [f0, f0 + 128), columns 64kt..
__device__ __forceinline__ void gg_stage(unsigned s, const bf16* dy, const bf16* wd, int m0, int f0, int n, int F, int K, int kt) {
    gg_load(s, dy, m0, n, K, kt * 64);
    gg_load(s + 16384, wd, f0, F, K, kt * 64);
}
// The products of stage s into acc (warpgroup wg's 64 rows × 128 columns; acc = 0 first if !keep).
__device__ __forceinline__ void gg_mma(float* acc, unsigned s, int wg, bool keep) {
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wgmma_n128(acc, wg_desc(s + wg * 8192 + 32 * kk), wg_desc(s + 16384 + 32 * kk), keep || kk > 0);
    wg_commit();
}
// The finished tile (acc, after every warpgroup's products and every stage's last read) as bf16
// into shared memory at tile: warp w holds rows 16w + g and 16w + g + 8, columns 8j + 2t, + 1 of
// n-tile j.
__device__ __forceinline__ void gg_tile(const float* acc, bf16* tile) {
    const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        bf16* at = tile + (16 * warp + g) * GG_PITCH + 8 * j + 2 * t;
        *reinterpret_cast<unsigned*>(at) = pack(acc[4 * j], acc[4 * j + 1]);
        *reinterpret_cast<unsigned*>(at + 8 * GG_PITCH) = pack(acc[4 * j + 2], acc[4 * j + 3]);
    }
}
// The gate's backward of 8 columns (glu_bwd's formulas) from a, u and gs: da and du into dh at
// `at` and `at + F`, s = silu(a)·u into gs at `gat`.
__device__ __forceinline__ void gg_gate(float* av, float* uv, const float* gv, bf16* dh, bf16* gs, long long at, long long gat, int F) {
    float yv[8];
#pragma unroll
    for (int k = 0; k < 8; k++) silu_mul_grad(av[k], uv[k], gv[k], yv[k], av[k], uv[k]);
    Vec<bf16, 8>::store(dh + at, av);
    Vec<bf16, 8>::store(dh + at + F, uv);
    Vec<bf16, 8>::store(gs + gat, yv);
}

// Block (x, y): columns [128x, 128x + 128) of F and rows [128y, 128y + 128) of n; two warpgroups
// of 64 rows each, a three-stage cp.async pipeline over K in steps of 64, two blocks per SM, so
// that one's epilogue (memory-bound) may run while the other multiplies. K a multiple of 64, F of
// 128, ldh of 8, every pointer 16-byte aligned (the host checks). dy [n, K], wd [F, K], h's a at h
// and u at h + F (rows ldh apart, dh the same), gs [n, F].
// Measured on H100s (docs/performance.md), before the prefetch below: the products alone 0.169
// ms, the epilogue alone 0.185, the kernel 0.30 against 0.32 for cuBLAS's GEMM and glu_bwd. Then a
// and u prefetched into L2 four K-steps before the end: 0.3 ms per training step less (two steps
// before: the same; seven: 0.15 ms slower; at the start: slower than none). Not kept: persistent
// blocks running the last tile's epilogue during the next tile's products (0.36 ms), one block per
// SM copying a and u into shared memory with the stages (0.35 ms).
extern "C" __global__ void __launch_bounds__(256, 2)
    glu_bwd_gemm(const bf16* dy, const bf16* wd, const bf16* h, bf16* dh, bf16* gs, int n, int F, int K, long long ldh) {
    GRID_DEPENDENCY();
    extern __shared__ __align__(16) bf16 gg_dyn[];
    const unsigned raw = smem(gg_dyn), sa = (raw + 1023) & ~1023u;
    bf16* tile = gg_dyn + (sa - raw) / 2;  // the aligned base as a generic pointer
    const int f0 = blockIdx.x * 128, m0 = blockIdx.y * 128, tid = threadIdx.x, wg = tid >> 7, kts = K / 64;
#pragma unroll
    for (int kt = 0; kt < 2; kt++) {
        if (kt < kts) gg_stage(sa + kt * GG_STAGE, dy, wd, m0, f0, n, F, K, kt);
        cp_commit();
    }
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.f;
    for (int kt = 0; kt < kts; kt++) {
        cp_wait_but_newest();  // this stage's copies (the next one's may still run)
        fence_async();         // before wgmma reads them (the async proxy)
        __syncthreads();       // every thread's copies; every warpgroup done with the stage refilled below
        if (kt + 2 < kts) gg_stage(sa + ((kt + 2) % 3) * GG_STAGE, dy, wd, m0, f0, n, F, K, kt + 2);
        cp_commit();
        gg_mma(acc, sa + (kt % 3) * GG_STAGE, wg, kt > 0);
        if (kt == kts - 4 && m0 + (tid >> 1) < n) {  // the epilogue's a and u into L2, four steps ahead
            const bf16* a = h + (long long)(m0 + (tid >> 1)) * ldh + f0 + (tid & 1) * 64;
            prefetch_l2(a);
            prefetch_l2(a + F);
        }
        wg_wait<0>();
        wg_hold(acc);
        wg_hold(acc + 32);
    }
    __syncthreads();
    gg_tile(acc, tile);
    __syncthreads();
    // the gate's backward: thread t takes 8 columns (chunk t % 16) of rows t / 16 + 16i
    const int ch = tid & 15;
#pragma unroll 2
    for (int i = 0; i < 8; i++) {
        const int r = (tid >> 4) + 16 * i, m = m0 + r;
        if (m >= n) break;
        const long long at = (long long)m * ldh + f0 + 8 * ch;
        float av[8], uv[8], gv[8];
        Vec<bf16, 8>::load(h + at, av);
        Vec<bf16, 8>::load(h + at + F, uv);
        Vec<bf16, 8>::load(tile + r * GG_PITCH + 8 * ch, gv);
        gg_gate(av, uv, gv, dh, gs, at, (long long)m * F + f0 + 8 * ch, F);
    }
}
#endif
