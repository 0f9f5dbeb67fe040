// Flash attention's forward (after flash_tiles.cu in the NVRTC module): per block of 128 queries
// and head, the output and each row's log-sum-exp, the keys in tiles of 64 with an online softmax.

// Queries per forward block: 32 rows per warp, so that every K and V fragment a warp loads feeds
// two row tiles' products (half the shared-memory reads per product of 16 rows a warp).
#define FA_BM 128

// One online-softmax step of a forward row tile (rows r0 and r0 + 8 of this thread, keys k0..):
// the scores s become probabilities, and the row maxima m (log2 units), sums l and output acc
// are rescaled. `edge`: the tile reaches past the diagonal or past L, so that it needs the mask;
// without mask or bias the scores stay raw and the scale goes into the exponent's FMA.
template <int HD, int NT, bool BIAS>
__device__ __forceinline__ void fa_online(float (*s)[4], float* m, float* l, float (*acc)[4], const Alibi& b, int r0, int k0, int L,
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
                                        unsigned Ks, unsigned Vs, const Alibi& b, const int* r0s, int hk, int kh, int L, float scale) {
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
            c_to_a(pa[h], s[h][2 * k2], s[h][2 * k2 + 1]);
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

// Forward: q, k, v in row_base's layout (QH, QLD), o in (OH, OH·HD), and lse [bh, L] (f32, natural log of Σ exp over the row's scores; a row
// whose every key were masked would get +∞ and zeros, but causal rows always see their own key). Grid (⌈L/128⌉, bh), the heaviest query
// blocks (last, most keys) first (heaviest_first). Warp w owns the block's 16-row tiles w and 7 − w (h = 0, 1).
template <int HD, bool BIAS>
__device__ void flash_fwd(const bf16* q, const bf16* k, const bf16* v, const float* alibi, bf16* o, float* lse, int L, int H,
                          float scale, int oh, int qh, int qld) {
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
    Alibi b = fa_alibi(alibi, bh, H);
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

#if FA_WGMMA
// The forward at head dim 64 with wgmma: the same blocks of 128 queries, as two groups of 64 rows
// (h = 0, 1) that the warpgroup takes one after the other per key tile: S = Q·Kᵀ (Q and K from
// shared memory), the online softmax on S's registers, then O += P·V (P from registers, V
// MN-major). Q | K, V of buffer 0 | K, V of buffer 1, all swizzled: 48 KiB.
template <bool BIAS>
__device__ void flash_fwd_wg(const bf16* q, const bf16* k, const bf16* v, const float* alibi, bf16* o, float* lse, int L, int H,
                             float scale, int oh, int qh, int qld) {
    const int TQ = FA_BM * 128, TK = FA_B * 128;  // bytes of the Q tile, of a K or V tile
    __shared__ __align__(1024) bf16 sm[(TQ + 4 * TK) / 2];
    const unsigned sa = smem(sm);
    auto kt = [&](int buf) { return sa + TQ + buf * 2 * TK; };  // K of buffer buf; V at kt + TK
    int qb, bh;
    heaviest_first(qb, bh, false);
    int q0 = qb * FA_BM;
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2;
    long long base = row_base<64>(bh, L, qh, qld);
    Alibi b = fa_alibi(alibi, bh, H);
    load_sw<FA_BM>(sa, q + base, q0, L, qld);
    load_sw<FA_B>(kt(0), k + base, 0, L, qld);
    load_sw<FA_B>(kt(0) + TK, v + base, 0, L, qld);
    cp_commit();
    int last = ((q0 + FA_BM < L ? q0 + FA_BM : L) - 1) / FA_B;
    float m[2][2] = {{NEG_INF, NEG_INF}, {NEG_INF, NEG_INF}}, l[2][2] = {{0.f, 0.f}, {0.f, 0.f}}, acc[2][32];
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[h][i] = 0.f;
    for (int kb = 0; kb <= last; kb++) {
        int k0 = kb * FA_B, buf = kb & 1;
        cp_wait_all();
        fence_async();  // the tiles cp.async wrote, before wgmma reads them (the async proxy)
        __syncthreads();
        if (kb < last) {  // the other buffer: its products finished in the last iteration
            load_sw<FA_B>(kt(buf ^ 1), k + base, k0 + FA_B, L, qld);
            load_sw<FA_B>(kt(buf ^ 1) + TK, v + base, k0 + FA_B, L, qld);
            cp_commit();
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int g0 = q0 + 64 * h;  // the group's first row
            if (k0 > g0 + 63) continue;  // every key of the tile is after the group's rows
            float s[32];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_ss<0, 0>(s, wg_desc(sa + h * 8192 + 32 * kk), wg_desc(kt(buf) + 32 * kk), kk);
            wg_commit();
            wg_wait<0>();
            wg_hold(s);
            int r0 = g0 + 16 * warp + g;
            fa_online<64, 8, BIAS>(reinterpret_cast<float(*)[4]>(s), m[h], l[h], reinterpret_cast<float(*)[4]>(acc[h]), b, r0, k0, L,
                                   scale * LOG2E, k0 + 63 > g0 || g0 + 63 >= L);
            unsigned pa[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) c_to_a(pa[kk], s + 8 * kk, s + 8 * kk + 4);
            wg_hold(acc[h]);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_rs<1>(acc[h], pa[kk], wg_desc(kt(buf) + TK + 2048 * kk), 1);
            wg_commit();
            wg_wait<0>();
            wg_hold(acc[h]);
        }
    }
#pragma unroll
    for (int h = 0; h < 2; h++)
        fa_store<64>(reinterpret_cast<float(*)[4]>(acc[h]), m[h], l[h], o + row_base<64>(bh, L, oh, oh * 64), oh * 64, lse + (long long)bh * L,
                     q0 + 64 * h + 16 * warp + g, L);
}
#endif

// The forward of head dim HD: with wgmma where FA_WGMMA and HD = 64, else with mma.sync.
template <int HD, bool BIAS>
__device__ void flash_fwd_any(const bf16* q, const bf16* k, const bf16* v, const float* alibi, bf16* o, float* lse, int L, int H,
                              float scale, int oh, int qh, int qld) {
#if FA_WGMMA
    if constexpr (HD == 64) {
        flash_fwd_wg<BIAS>(q, k, v, alibi, o, lse, L, H, scale, oh, qh, qld);
        return;
    } else
#endif
        flash_fwd<HD, BIAS>(q, k, v, alibi, o, lse, L, H, scale, oh, qh, qld);
}

// Blocks per SM the kernels are built for: four with wgmma (at most 128 registers; 48 KiB of shared
// memory each: 0.923 vs 0.966 ms per step at three on an H200, docs/performance.md), else three.
#if FA_WGMMA
#define FA_FWD_BLOCKS(HD) (HD == 64 ? 4 : 3)
#else
#define FA_FWD_BLOCKS(HD) 3
#endif

// NAME: hd<HD>, and _alibi for the kernels that add ALiBi's bias.
#define FLASH_FWD_KERNELS(HD, BIAS, NAME)                                                                                \
    extern "C" __global__ void __launch_bounds__(128, FA_FWD_BLOCKS(HD))                                                 \
        flash_fwd_##NAME(const bf16* q, const bf16* k, const bf16* v, const float* alibi, bf16* o, float* lse, int L, int H, \
                         float scale, int oh, int qh, int qld) {                                                         \
        GRID_DEPENDENCY();                                                                                               \
        flash_fwd_any<HD, BIAS>(q, k, v, alibi, o, lse, L, H, scale, oh, qh, qld);                                       \
    }

FLASH_FWD_KERNELS(32, false, hd32)
FLASH_FWD_KERNELS(64, false, hd64)
FLASH_FWD_KERNELS(32, true, hd32_alibi)
FLASH_FWD_KERNELS(64, true, hd64_alibi)
