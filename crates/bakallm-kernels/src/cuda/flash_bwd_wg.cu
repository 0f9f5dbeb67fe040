// Flash attention's backward with wgmma (sm_90a, head dim 64; after flash_bwd.cu in the NVRTC
// module), dQ's conversion to bf16 from its accumulator, and the backward's kernels, which pick
// flash_bwd_wg or flash_bwd (mma.sync) by target and head dim.

#if FA_WGMMA
// dq_acc at head dim 64 with wgmma: a head's full tiles of 64 rows (q0 + 64 ≤ L) hold their 4,096
// floats in the order the backward's warps hold them, not in rows: warp w's 1,024 (rows 16w..16w +
// 15) as 8 chunks, one per n-tile d, of the 32 lanes' C fragments (rows g, g + 8 × columns 8d +
// 2t, + 1; 4 floats) in lane order. A warp stages its rows with conflict-free 16-byte stores and
// adds them in one 4 KiB bulk reduction where rows took 8 of 512 bytes (FlashAttention-3 adds a
// warpgroup's dQ tile the same way). flash_dq reads this order back; a partial last tile stays in
// rows.
template <int W>
__device__ __forceinline__ void bulk_dq_frag(unsigned stage_a, float* dqt) {
    bulk_add(dqt + W * 1024, stage_a + W * 4096, 4096);
    bulk_commit();
    bulk_wait_read();
}
// Adds this warp's dQ fragments (dq: 8 n-tiles × 4, times `scale`) into the full tile at dqt,
// staged at `stage` (generic pointer; shared address stage_a; 16 KiB).
__device__ __forceinline__ void add_dq_frag(const float* dq, float scale, float* stage, unsigned stage_a, float* dqt) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* ws = stage + warp * 1024 + lane * 4;
#pragma unroll
    for (int d = 0; d < 8; d++) {
        const float v[4] = {dq[4 * d] * scale, dq[4 * d + 1] * scale, dq[4 * d + 2] * scale, dq[4 * d + 3] * scale};
        Vec<float, 4>::store(ws + d * 128, v);
    }
    fence_async();
    __syncwarp();
    if (lane == 0) switch (warp) {
            case 0: bulk_dq_frag<0>(stage_a, dqt); break;
            case 1: bulk_dq_frag<1>(stage_a, dqt); break;
            case 2: bulk_dq_frag<2>(stage_a, dqt); break;
            default: bulk_dq_frag<3>(stage_a, dqt); break;
        }
}

// The backward at head dim 64 with wgmma: the same blocks (64 keys and a head, query tiles of 64
// at or after them), queries as the rows of S = Q·Kᵀ and dP = dO·Vᵀ (Q, K, dO and V from shared
// memory); P and dS from registers into shared memory as [query][key] tiles for dV += Pᵀ·dO and
// dK += dSᵀ·Q (A MN-major there, B = dO and Q MN-major), and dQ = dS·K with dS's A fragments in
// registers (K MN-major), added into dq_acc as flash_bwd adds it. Shared memory (flash.rs's
// `bwd_smem`), from a 1,024-byte aligned base: K | V | P | dS (8 KiB each) | two Q|dO buffers of
// 18 KiB (Q, dO, then room for the dQ chunks) | lse[2][64], delta[2][64].
template <bool BIAS>
__device__ void flash_bwd_wg(const bf16* q, const bf16* k, const bf16* v, const float* alibi, const bf16* dout, const float* lse,
                             const float* delta, float* dq_acc, bf16* dk, bf16* dv, const bf16* ck, const bf16* sk, int L, int H,
                             float scale, int oh, int qh, int qld) {
    extern __shared__ __align__(16) bf16 fa_dyn[];
    const unsigned raw = smem(fa_dyn), sa = (raw + 1023) & ~1023u;
    char* gen = reinterpret_cast<char*>(fa_dyn) + (sa - raw);  // the aligned base as a generic pointer
    auto at = [&](unsigned a) { return gen + (a - sa); };
    const int TK = 8192, TB = 18432;  // bytes of a 64 × 64 tile, of a Q|dO buffer
    const unsigned Ks = sa, Vs = sa + TK, Ps = sa + 2 * TK, dSs = sa + 3 * TK, QD = sa + 4 * TK, sta = QD + 2 * TB;
    const float* stats = reinterpret_cast<const float*>(at(sta));
    int kb, bh;
    heaviest_first(kb, bh, true);
    int k0 = kb * FA_B, nb = gridDim.x;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int r = 16 * warp + g;  // this thread's rows r and r + 8 of a tile: queries of S, dP, dQ; keys of dK, dV
    long long base = row_base<64>(bh, L, qh, qld), acc_base = (long long)bh * L * 64;
    Alibi b = fa_alibi(alibi, bh, H);
    auto prefetch = [&](int qb, int buf) {
        load_sw<FA_B>(QD + buf * TB, q + base, qb * FA_B, L, qld);
        load_sw<FA_B>(QD + buf * TB + TK, dout + row_base<64>(bh, L, oh, oh * 64), qb * FA_B, L, oh * 64);
        load_stats(sta + 4 * buf * 2 * FA_B, lse, delta, bh, L, qb * FA_B);
    };
    load_sw<FA_B>(Ks, k + base, k0, L, qld);
    load_sw<FA_B>(Vs, v + base, k0, L, qld);
    prefetch(kb, 0);
    cp_commit();
    float dka[32], dva[32], sl = scale * LOG2E;
#pragma unroll
    for (int i = 0; i < 32; i++) dka[i] = dva[i] = 0.f;
    for (int qb = kb; qb < nb; qb++) {
        int q0 = qb * FA_B, buf = (qb - kb) & 1;
        cp_wait_all();
        fence_async();
        __syncthreads();  // tile qb is in; the last tile's products and dQ chunks are done with its buffer
        if (qb + 1 < nb) {
            prefetch(qb + 1, buf ^ 1);
            cp_commit();
        } else if (ck) {  // the last tile: k's rotation tables for the epilogue into the free buffer
            load_tile<64>(QD + (buf ^ 1) * TB, ck, k0, L, 64);
            load_tile<64>(QD + (buf ^ 1) * TB + FA_B * (64 + FA_PAD) * 2, sk, k0, L, 64);
            cp_commit();
        }
        const unsigned Qs = QD + buf * TB, Ds = Qs + TK;
        const float *lse_s = stats + buf * 2 * FA_B, *delta_s = lse_s + FA_B;
        float s[32], dp[32];
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_ss<0, 0>(s, wg_desc(Qs + 32 * kk), wg_desc(Ks + 32 * kk), kk);
        wg_commit();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_ss<0, 0>(dp, wg_desc(Ds + 32 * kk), wg_desc(Vs + 32 * kk), kk);
        wg_commit();
        wg_wait<1>();  // S: P is computed while dP's products run
        wg_hold(s);
        bool edge = BIAS || qb == kb || q0 + FA_B > L;  // the diagonal tile, or rows past L: the mask
        // 2^(−∞) = 0 where masked; past L lse_s is 0
        float lse2[2] = {lse_s[r] * LOG2E, lse_s[r + 8] * LOG2E}, dl[2] = {delta_s[r], delta_s[r + 8]};
        unsigned da[4][4];  // dS's A fragments for dQ, per 16 keys
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int i = q0 + r + (e >> 1) * 8, j = k0 + 8 * n + 2 * t + (e & 1);
                s[4 * n + e] = edge ? ex2(fa_score<BIAS>(s[4 * n + e], b, i, j, L, sl) - lse2[e >> 1]) : ex2(fmaf(s[4 * n + e], sl, -lse2[e >> 1]));
            }
        wg_wait<0>();
        wg_hold(dp);
        // (P's base through an opaque move: as a constant, the 16 store addresses below were computed
        // once above the loop and held in registers across it)
        unsigned ps = Ps;
        asm volatile("" : "+r"(ps));
#pragma unroll
        for (int n = 0; n < 8; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) dp[4 * n + e] = s[4 * n + e] * (dp[4 * n + e] - dl[e >> 1]);  // dS (without the scale)
            unsigned o = r * 128 + ((n ^ (r & 7)) << 4) + 4 * t;  // row r, columns 8n + 2t..; row r + 8 at o + 1,024
            unsigned d0 = pack(dp[4 * n], dp[4 * n + 1]), d1 = pack(dp[4 * n + 2], dp[4 * n + 3]);
            *reinterpret_cast<unsigned*>(at(ps + o)) = pack(s[4 * n], s[4 * n + 1]);
            *reinterpret_cast<unsigned*>(at(ps + o + 1024)) = pack(s[4 * n + 2], s[4 * n + 3]);
            *reinterpret_cast<unsigned*>(at(ps + TK + o)) = d0;
            *reinterpret_cast<unsigned*>(at(ps + TK + o + 1024)) = d1;
            da[n >> 1][2 * (n & 1)] = d0, da[n >> 1][2 * (n & 1) + 1] = d1;
        }
        fence_async();
        __syncthreads();  // every warp's P and dS rows, before the products read them
        float dq[32];
#pragma unroll
        for (int i = 0; i < 32; i++) dq[i] = 0.f;
        wg_hold(dva), wg_hold(dka), wg_hold(dq);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_ss<1, 1>(dva, wg_desc(Ps + 2048 * kk), wg_desc(Ds + 2048 * kk), 1);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_ss<1, 1>(dka, wg_desc(dSs + 2048 * kk), wg_desc(Qs + 2048 * kk), 1);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_rs<1>(dq, da[kk], wg_desc(Ks + 2048 * kk), 1);
        wg_commit();
        wg_wait<0>();
        wg_hold(dva), wg_hold(dka), wg_hold(dq);
        __syncthreads();  // every warp's products are done with Q and dO: the buffer takes the dQ chunks
        static_assert(4 * 8 * FA_DQ_CHUNK(64) * 4 <= TB, "the chunks fit a Q|dO buffer");
        if (q0 + FA_B <= L)
            add_dq_frag(dq, scale, reinterpret_cast<float*>(at(Qs)), Qs, dq_acc + acc_base + (long long)q0 * 64);
        else
            add_dq_rows<64>(reinterpret_cast<const float(*)[4]>(dq), scale, reinterpret_cast<float*>(at(Qs)), Qs, dq_acc + acc_base, q0, L);
    }
    // dV and dK through shared memory (V's and K's tiles, free now; 128-byte swizzled rows, so that
    // both the fragments' 4-byte stores and the rows' 16-byte loads are conflict-free), then out
    // in 16-byte pieces: 8 global stores per thread where the fragments took 32 of 4 bytes; k's
    // rotation tables from shared memory (padded rows from k0, loaded during the last tile)
    static_assert(2 * FA_B * (64 + FA_PAD) * 2 <= TB, "both tables fit a Q|dO buffer");
    cp_wait_all();
    __syncthreads();  // every warp's products are done with K and V; the tables are in
    const bf16* tc = ck ? reinterpret_cast<const bf16*>(at(QD + (((nb - 1 - kb) & 1) ^ 1) * TB)) : nullptr;
    const bf16* ts = ck ? tc + FA_B * (64 + FA_PAD) : nullptr;
    dk_dv_pairs<64>(reinterpret_cast<const float(*)[4]>(dka), reinterpret_cast<const float(*)[4]>(dva), k0 + r, L, scale, tc, ts,
                    64 + FA_PAD, k0, [&](int h, int d, bool is_dk, unsigned pair) {
                        int row = r + 8 * h;
                        *reinterpret_cast<unsigned*>(at((is_dk ? Ks : Vs) + row * 128 + ((d ^ (row & 7)) << 4) + 4 * t)) = pair;
                    });
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 8; i++) {  // chunk threadIdx.x % 8 of row threadIdx.x / 8 + 16·(i % 4), dV then dK
        int row = threadIdx.x / 8 + 16 * (i & 3), c = threadIdx.x & 7;
        if (k0 + row >= L) continue;
        Word4 piece = *reinterpret_cast<const Word4*>(at((i < 4 ? Vs : Ks) + row * 128 + ((c ^ (row & 7)) << 4)));
        *reinterpret_cast<Word4*>((i < 4 ? dv : dk) + base + (long long)(k0 + row) * qld + c * 8) = piece;
    }
}
#endif

// The backward of head dim HD: with wgmma where FA_WGMMA and HD = 64, else with mma.sync.
template <int HD, bool BIAS>
__device__ void flash_bwd_any(const bf16* q, const bf16* k, const bf16* v, const float* alibi, const bf16* dout, const float* lse,
                              const float* delta, float* dq_acc, bf16* dk, bf16* dv, const bf16* ck, const bf16* sk, int L, int H,
                              float scale, int oh, int qh, int qld) {
#if FA_WGMMA
    if constexpr (HD == 64) {
        flash_bwd_wg<BIAS>(q, k, v, alibi, dout, lse, delta, dq_acc, dk, dv, ck, sk, L, H, scale, oh, qh, qld);
        return;
    } else
#endif
        flash_bwd<HD, BIAS>(q, k, v, alibi, dout, lse, delta, dq_acc, dk, dv, ck, sk, L, H, scale, oh, qh, qld);
}

// rotate_qk's adjoint on 8 columns x of a row (from column j) and their partners y (j + half),
// from q's tables c, s at tj (the row's position, column j): (x, y) → (x·cos_j + y·sin_{j+half},
// y·cos_{j+half} − x·sin_j), as unrotate_pairs does for dK.
__device__ __forceinline__ void unrotate8(float* x, float* y, const bf16* c, const bf16* s, long long tj, int half) {
    float ca[8], cb[8], sa[8], sb[8];
    Vec<bf16, 8>::load(c + tj, ca);
    Vec<bf16, 8>::load(c + tj + half, cb);
    Vec<bf16, 8>::load(s + tj, sa);
    Vec<bf16, 8>::load(s + tj + half, sb);
#pragma unroll
    for (int e = 0; e < 8; e++) {
        float a = x[e], b = y[e];
        x[e] = a * ca[e] + b * sb[e], y[e] = b * cb[e] - a * sa[e];
    }
}

#if FA_WGMMA
// flash_dq at head dim 64 from the backward's order (add_dq_frag), a tile of 64 rows per block of
// 256 threads in turn (grid-stride over the heads' tiles): the tile's floats into shared memory in
// rows (thread v copies warp v / 64's n-tiles 2k, 2k + 1, 2k + 4, 2k + 5 of lane v % 32, k = v / 32
// % 2, each a contiguous 512 bytes per warp; a partial last tile is in rows already), then thread
// v takes row v / 4, columns j..j + 7 and their rotation partners j + 32.. (j = 8·(v % 4)): rotated
// back by q's tables and written as two 16-byte pieces, so a warp writes whole 128-byte rows.
__device__ void flash_dq_frag(const float* acc, bf16* dq, long long n, int L, int qh, int qld, const bf16* cq, const bf16* sq) {
    __shared__ __align__(16) float rows[64][64 + 4];  // (+ 4: the row phase's reads spread over the banks)
    if (L <= 0) return;
    const int tiles = (L + 63) / 64, all = (int)(n / ((long long)L * 64)) * tiles;
    const int v = threadIdx.x, w = v >> 6, k = (v >> 5) & 1, lane = v & 31, g = lane >> 2, t = lane & 3;
    for (int tile = blockIdx.x; tile < all; tile += gridDim.x) {
        const int bh = tile / tiles, q0 = (tile - bh * tiles) * 64;
        const float* at = acc + ((long long)bh * L + q0) * 64;
        if (q0 + 64 <= L) {
#pragma unroll
            for (int h = 0; h < 4; h++) {
                int d = 2 * k + (h & 1) + 4 * (h >> 1), r = 16 * w + g, c = 8 * d + 2 * t;
                float a[4];
                Vec<float, 4>::load(at + w * 1024 + d * 128 + lane * 4, a);
                *reinterpret_cast<F2*>(&rows[r][c]) = F2{a[0], a[1]};
                *reinterpret_cast<F2*>(&rows[r + 8][c]) = F2{a[2], a[3]};
            }
        } else {
            for (int i = 4 * v; i < 64 * 64; i += 4 * 256) {
                float a[4] = {0.f, 0.f, 0.f, 0.f};
                if (q0 + i / 64 < L) Vec<float, 4>::load(at + i, a);
                Vec<float, 4>::store(&rows[i / 64][i % 64], a);
            }
        }
        __syncthreads();
        const int r = v >> 2, j = (v & 3) * 8, pos = q0 + r;
        if (pos < L) {
            float x[8], y[8];
            Vec<float, 4>::load(&rows[r][j], x);
            Vec<float, 4>::load(&rows[r][j + 4], x + 4);
            Vec<float, 4>::load(&rows[r][j + 32], y);
            Vec<float, 4>::load(&rows[r][j + 36], y + 4);
            if (cq) unrotate8(x, y, cq, sq, (long long)pos * 64 + j, 32);
            bf16* o = dq + (long long)(bh / qh) * L * qld + (long long)(bh % qh) * 64 + (long long)pos * qld + j;
            Vec<bf16, 8>::store(o, x);
            Vec<bf16, 8>::store(o + 32, y);
        }
        __syncthreads();  // rows is free for the next tile
    }
}
#endif

// dq (bf16, row_base's layout (QH, QLD)) from its f32 accumulator [bh, L, hd] of n elements (hd a
// multiple of 16): per thread 8 columns j of a row's first half and the 8 at j + hd/2, rotated
// back by q's tables cq, sq [L, hd] if given (rotate_qk's adjoint, as store_dk_dv's for dK); at
// head dim 64 with wgmma from the backward's fragment order (flash_dq_frag).
extern "C" __global__ void flash_dq(const float* acc, bf16* dq, long long n, int L, int hd, int qh, int qld, const bf16* cq, const bf16* sq) {
    GRID_DEPENDENCY();
#if FA_WGMMA
    if (hd == 64) return flash_dq_frag(acc, dq, n, L, qh, qld, cq, sq);
#endif
    long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;  // over the rows' first halves
    int half = hd / 2;
    if (i >= n / 2) return;
    long long row = i / half, bh = row / L;
    int j = (int)(i % half), pos = (int)(row % L);
    long long at = (bh / qh) * L * qld + (bh % qh) * hd + pos * qld + j;
    const float* src = acc + row * hd + j;
    float a[8], b[8];
    Vec<float, 4>::load(src, a);
    Vec<float, 4>::load(src + 4, a + 4);
    Vec<float, 4>::load(src + half, b);
    Vec<float, 4>::load(src + half + 4, b + 4);
    if (cq) unrotate8(a, b, cq, sq, (long long)pos * hd + j, half);
    Vec<bf16, 8>::store(dq + at, a);
    Vec<bf16, 8>::store(dq + at + half, b);
}

// NAME: hd<HD>, and _alibi for the kernels that add ALiBi's bias.
#define FLASH_BWD_KERNELS(HD, BIAS, NAME)                                                                                \
    extern "C" __global__ void __launch_bounds__(128, 3)                                                                 \
        flash_bwd_##NAME(const bf16* q, const bf16* k, const bf16* v, const float* alibi, const bf16* dout, const float* lse, \
                         const float* delta, float* dq_acc, bf16* dk, bf16* dv, const bf16* ck, const bf16* sk, int L,   \
                         int H, float scale, int oh, int qh, int qld) {                                                  \
        GRID_DEPENDENCY();                                                                                               \
        flash_bwd_any<HD, BIAS>(q, k, v, alibi, dout, lse, delta, dq_acc, dk, dv, ck, sk, L, H, scale, oh, qh,           \
                                qld);                                                                                    \
    }

FLASH_BWD_KERNELS(32, false, hd32)
FLASH_BWD_KERNELS(64, false, hd64)
FLASH_BWD_KERNELS(32, true, hd32_alibi)
FLASH_BWD_KERNELS(64, true, hd64_alibi)
extern "C" __global__ void flash_dot_hd32(const bf16* o, const bf16* dout, float* delta, float* acc, long long rows, int L, int oh) {
    GRID_DEPENDENCY();
    flash_dot<32>(o, dout, delta, acc, rows, L, oh);
}
extern "C" __global__ void flash_dot_hd64(const bf16* o, const bf16* dout, float* delta, float* acc, long long rows, int L, int oh) {
    GRID_DEPENDENCY();
    flash_dot<64>(o, dout, delta, acc, rows, L, oh);
}
