// Flash attention's backward (after flash_tiles.cu and flash_fwd.cu in the NVRTC module): the row
// dots delta = Σ dO ⊙ O, the steps both backwards share (the statistics' loads, dQ's rows added into
// its f32 accumulator, dK and dV out of their fragments) and the backward with mma.sync (sm_80 on,
// and every head dim but 64 on sm_90a). flash_bwd_wg.cu follows: the wgmma backward and the kernels.

// delta [bh·L] = Σ_d dO ⊙ O over each row of HD (f32; O and dO in row_base's layout (OH, OH·HD)): HD / 8 lanes per row, 16 bytes each, so
// that a warp's loads cover whole rows (with a thread per row each load instruction touched 32
// rows' 128-byte lines: 0.39 ms per pristine step, ~3× the time to read O and dO once). Each lane
// also zeroes its 8 columns of the row's dQ accumulator (acc [rows, HD] f32), which the backward
// then adds into: no separate memset, whose scheduling gaps cost more than the writes.
template <int HD>
__device__ void flash_dot(const bf16* o, const bf16* dout, float* delta, float* acc, long long rows, int L, int oh) {
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
        const float zero[4] = {0.f, 0.f, 0.f, 0.f};
        Vec<float, 4>::store(acc + row * HD + j, zero);
        Vec<float, 4>::store(acc + row * HD + j + 4, zero);
    }
#pragma unroll
    for (int off = LANES / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);  // every lane: no early return
    if (row < rows && j == 0) delta[row] = s;
}

// Starts loading the lse and delta of query rows [q0, q0 + 64) (f32; zeros past L) into
// lse[64], delta[64] at shared address s, asynchronously: plain loads here stalled every warp on
// global memory at each tile.
__device__ __forceinline__ void load_stats(unsigned s, const float* lse, const float* delta, int bh, int L, int q0) {
    static_assert(2 * FA_B == 128, "load_stats: a float per thread");
    int i = threadIdx.x, row = q0 + i % FA_B;
    bool in = row < L;
    cp4(s + 4 * i, (i < FA_B ? lse : delta) + (long long)bh * L + (in ? row : 0), in);
}

// Floats from one staged dQ chunk (two rows) to the next: a warp's 8 chunks take 8·FA_DQ_CHUNK.
#define FA_DQ_CHUNK(HD) (2 * (HD) + 8)
#if FA_BULK_DQ
// Lane 0 of warp W adds the warp's 8 staged chunks (rows q0 + 16·W + 2i, i < 8) from the block's
// staging area at shared address `stage_a` into dq_acc's rows dqb, one bulk reduction per chunk,
// and waits until they have been read. W is a template argument so that every operand is the
// same for the whole block: the reductions take uniform registers, and from a warp-dependent
// address ptxas wrapped each in a loop that elects a lane and moves its operands over (~36
// instructions per reduction, a quarter of the backward's issued instructions per tile).
template <int HD, int W>
__device__ __forceinline__ void bulk_dq_rows(unsigned stage_a, float* dqb, int q0, int L) {
    const int CH = FA_DQ_CHUNK(HD);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int r = q0 + 16 * W + 2 * i;
        if (r < L) bulk_add(dqb + (long long)r * HD, stage_a + (W * 8 + i) * CH * 4, (r + 1 < L ? 2 : 1) * HD * 4);
    }
    bulk_commit();
    bulk_wait_read();
}

// Adds this warp's 16 dQ rows [q0 + 16·warp, + 16) (C fragments, dq[d] the n-tile d, times
// `scale`) into dq_acc's rows dqb (HD f32 each; rows past L left out): staged in the block's
// staging area (generic pointer `stage`, shared address `stage_a`; each warp's 8 chunks take
// 8·FA_DQ_CHUNK floats), two rows (as dq_acc holds them) per chunk, 32 bytes of padding between
// chunks so that the 8 rows of a store fall on 4 different 32-byte bank windows (2 wavefronts,
// the least for 256 bytes); then lane 0 adds the chunks (bulk_dq_rows); the caller's next loads
// may overwrite them after a barrier.
template <int HD>
__device__ __forceinline__ void add_dq_rows(const float (*dq)[4], float scale, float* stage, unsigned stage_a, float* dqb, int q0, int L) {
    const int CH = FA_DQ_CHUNK(HD);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float* ws = stage + warp * 8 * CH;
#pragma unroll
    for (int d = 0; d < HD / 8; d++) {
        int c = d * 8 + 2 * t;
        *reinterpret_cast<F2*>(ws + (g >> 1) * CH + (g & 1) * HD + c) = F2{dq[d][0] * scale, dq[d][1] * scale};
        *reinterpret_cast<F2*>(ws + (4 + (g >> 1)) * CH + (g & 1) * HD + c) = F2{dq[d][2] * scale, dq[d][3] * scale};
    }
    fence_async();
    __syncwarp();
    if (lane == 0) switch (warp) {
            case 0: bulk_dq_rows<HD, 0>(stage_a, dqb, q0, L); break;
            case 1: bulk_dq_rows<HD, 1>(stage_a, dqb, q0, L); break;
            case 2: bulk_dq_rows<HD, 2>(stage_a, dqb, q0, L); break;
            default: bulk_dq_rows<HD, 3>(stage_a, dqb, q0, L); break;
        }
}
#endif

// rotate_qk's adjoint on two adjacent columns c, c + 1 (x) and their partners c + HD/2, + 1 (y),
// from the tables' packed bf16 words (cos at c | c + HD/2: ca | cb; sin: sa | sb):
// (x, y) → (x·cos_c + y·sin_{c+h}, y·cos_{c+h} − x·sin_c).
__device__ __forceinline__ void unrotate_pairs(float& x0, float& x1, float& y0, float& y1, unsigned ca, unsigned cb, unsigned sa, unsigned sb) {
    float a0 = x0, a1 = x1, b0 = y0, b1 = y1;
    x0 = a0 * lo(ca) + b0 * lo(sb), x1 = a1 * hi(ca) + b1 * hi(sb);
    y0 = b0 * lo(cb) - a0 * lo(sa), y1 = b1 * hi(cb) - a1 * hi(sa);
}

// This thread's rows j0 and j0 + 8 of a 64-key block's dK (× scale) and dV from their C fragments
// (n-tile d: columns d·8 + 2t, 2t + 1; elements 0, 1 of row j0, 2, 3 of row j0 + 8), each pair of
// columns as two packed bf16 handed to put(h, d, is_dk, pair) (row j0 + 8h; rows past L left out).
// With k's rotation tables ck, sk (RoPE, xPos; null: none; row j at (j − tab0)·tld) dK is rotated
// back, rotate_qk's adjoint: the pair (c, c + HD/2) lies in n-tiles d and d + HD/16 of the same
// thread, (a, b) → (a·c_c + b·s_{c+h}, b·c_{c+h} − a·s_c) at the key's position.
template <int HD, typename Put>
__device__ __forceinline__ void dk_dv_pairs(const float (*dka)[4], const float (*dva)[4], int j0, int L, float scale, const bf16* ck, const bf16* sk,
                                            int tld, int tab0, Put put) {
    const int t = threadIdx.x & 3, HT = HD / 16;  // n-tiles per half
    // both rows' table words first (cos, sin of columns c and c + HD/2), then dV, then dK: the
    // loads are in flight while dV is written, and no dK store sits between them (dk may alias
    // the tables as far as the compiler knows, which kept the second row's loads behind the first
    // row's stores)
    unsigned tab[2][HT][4];
    if (ck) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int j = j0 + 8 * h < L ? j0 + 8 * h : L - 1;  // rows past L load row L − 1, unused
#pragma unroll
            for (int d = 0; d < HT; d++) {
                const bf16 *cr = ck + (long long)(j - tab0) * tld + d * 8 + 2 * t, *sr = sk + (long long)(j - tab0) * tld + d * 8 + 2 * t;
                tab[h][d][0] = *reinterpret_cast<const unsigned*>(cr), tab[h][d][1] = *reinterpret_cast<const unsigned*>(cr + HD / 2);
                tab[h][d][2] = *reinterpret_cast<const unsigned*>(sr), tab[h][d][3] = *reinterpret_cast<const unsigned*>(sr + HD / 2);
            }
        }
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (j0 + 8 * h >= L) continue;
#pragma unroll
        for (int d = 0; d < HD / 8; d++) put(h, d, false, pack(dva[d][2 * h], dva[d][2 * h + 1]));
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (j0 + 8 * h >= L) continue;
        float a[HD / 8][2];
#pragma unroll
        for (int d = 0; d < HD / 8; d++) a[d][0] = dka[d][2 * h] * scale, a[d][1] = dka[d][2 * h + 1] * scale;
        if (ck) {
#pragma unroll
            for (int d = 0; d < HT; d++) {
                unrotate_pairs(a[d][0], a[d][1], a[d + HT][0], a[d + HT][1], tab[h][d][0], tab[h][d][1], tab[h][d][2], tab[h][d][3]);
            }
        }
#pragma unroll
        for (int d = 0; d < HD / 8; d++) put(h, d, true, pack(a[d][0], a[d][1]));
    }
}

// dk_dv_pairs straight into dk and dv (row_base's layout, rows qld apart from `base`).
template <int HD>
__device__ __forceinline__ void store_dk_dv(const float (*dka)[4], const float (*dva)[4], bf16* dk, bf16* dv, long long base, int qld, int j0,
                                            int L, float scale, const bf16* ck, const bf16* sk) {
    const int t = threadIdx.x & 3;
    dk_dv_pairs<HD>(dka, dva, j0, L, scale, ck, sk, HD, 0, [&](int h, int d, bool is_dk, unsigned pair) {
        *reinterpret_cast<unsigned*>((is_dk ? dk : dv) + base + (long long)(j0 + 8 * h) * qld + d * 8 + 2 * t) = pair;
    });
}

// Backward: one block per 64 keys (4 warps × 16 keys) and head, looping over the query blocks at
// or after them (causal). Per tile, with Sᵀ = K·Qᵀ: Pᵀ = exp(Sᵀ·scale + ALiBiᵀ − lse),
// dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − delta), dK += dSᵀ·Q (registers, written once, × scale),
// dQ += dS·K (through shared memory, added into dq_acc [bh, L, HD] f32, × scale: from sm_90 by
// bulk reductions, FA_BULK_DQ; before by atomics).
// Registers: only dK and dV stay in them across tiles (64 at head dim 64); the K and V fragments
// come from shared memory, and each query tile goes in two halves of 32, so that three blocks fit
// an SM (at 254 registers two did, and the SM's issue slots were busy 39% of the time).
template <int HD, bool BIAS>
__device__ void flash_bwd(const bf16* q, const bf16* k, const bf16* v, const float* alibi, const bf16* dout, const float* lse,
                          const float* delta, float* dq_acc, bf16* dk, bf16* dv, const bf16* ck, const bf16* sk, int L, int H,
                          float scale, int oh, int qh, int qld) {
    // dynamic shared memory (flash_bwd_smem bytes, flash.rs): K, V, dSᵀ; Q and dO side by side
    // and the rows' lse and delta, double-buffered (tile qb + 1 loads while qb computes); with
    // FA_BULK_DQ a tile's Q|dO buffer holds its dQ rows once dK and dV have read it (f32, in
    // chunks of two rows with 32 bytes of padding between chunks; see the dQ step below)
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
    Alibi b = fa_alibi(alibi, bh, H);
    auto prefetch = [&](int qb, int buf) {
        load_tile<HD>(QDa + buf * 4 * TD, q + base, qb * FA_B, L, qld);
        load_tile<HD>(QDa + buf * 4 * TD + 2 * TD, dout + row_base<HD>(bh, L, oh, oh * HD), qb * FA_B, L, oh * HD);
        load_stats(sta + 4 * buf * 2 * FA_B, lse, delta, bh, L, qb * FA_B);
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
                unsigned pa[4], sa[4];
                c_to_a(pa, p[2 * h], p[2 * h + 1]);
                c_to_a(sa, dp[2 * h], dp[2 * h + 1]);
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
        int lane = threadIdx.x & 31, m4 = lane >> 3;
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
        // the warp's 16 rows into this tile's Q|dO buffer (free: dK and dV have read it)
        static_assert(4 * 8 * FA_DQ_CHUNK(HD) * 4 <= 2 * TD * 2, "the chunks fit a Q|dO buffer");
        add_dq_rows<HD>(dq, scale, reinterpret_cast<float*>(QDb + buf * 2 * TD), QDa + buf * 4 * TD, dqb, q0, L);
#else
        int i0 = q0 + warp * 16 + g, i1 = i0 + 8;  // this thread's two dQ rows
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
    store_dk_dv<HD>(dka, dva, dk, dv, base, qld, j0, L, scale, ck, sk);
}
