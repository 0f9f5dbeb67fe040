// add_key / sum_key (cuda/attention.cu: linspace's key term on the fused projection, emulated by
// emu.h) against their formulas, computed here with the same operations: x[r, d + c] += a[r % L, c]
// over the key columns of x [B·L, 3d] (the q and v columns untouched), and g[t, c] = Σ_b x[b·L + t,
// d + c], in f32 and in bf16. Then rotate_qk (RoPE / xPos in place on the q and k columns) against
// heads_split's formula. Each with x's rows 3d apart and wider (`extra` columns after the
// projection, as within the parallel layer's input projections; left untouched). Exit status 1 on
// a difference.
#include "emu.h"
#include "kernels.cu"
#include <random>
// Runs `f` once per thread of a 1-D grid of 256-thread blocks covering `total` elements.
template <typename F> static void grid_1d(long long total, F f) {
    blockDim.x = 256;
    for (long long blk = 0; blk * 256 < total; blk++)
        for (unsigned t = 0; t < 256; t++) blockIdx.x = (unsigned)blk, threadIdx.x = t, f();
}
template <typename T, typename Add, typename Sum>
static int check(const char* name, int B, int L, int d, int extra, Add add, Sum sum) {
    long long n = (long long)B * L, w = 3LL * d + extra;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> U(-2, 2);
    std::vector<T> x(n * w), a((size_t)L * d), g((size_t)L * d);
    for (auto& e : x) st(&e, 0, U(rng));
    for (auto& e : a) st(&e, 0, U(rng));
    auto x0 = x;
    grid_1d(n * d, [&] { add(x.data(), a.data(), n, L, d, (int)w); });
    int bad = 0;
    for (long long r = 0; r < n; r++)
        for (int c = 0; c < w; c++) {
            T want = x0[r * w + c];
            if (c >= d && c < 2 * d) st(&want, 0, ld(&x0[r * w + c], 0) + ld(&a[(r % L) * d + c - d], 0));
            bad += ld(&x[r * w + c], 0) != ld(&want, 0);
        }
    grid_1d((long long)L * d, [&] { sum(x.data(), g.data(), B, L, d, (int)w); });
    for (int t = 0; t < L; t++)
        for (int c = 0; c < d; c++) {
            float s = 0.f;
            for (int b = 0; b < B; b++) s += ld(&x[((long long)b * L + t) * w + d + c], 0);
            T want;
            st(&want, 0, s);
            bad += ld(&g[(size_t)t * d + c], 0) != ld(&want, 0);
        }
    printf("%s: B %d, L %d, d %d, row %lld: %d differences\n", name, B, L, d, w, bad);
    return bad;
}
// Runs `f` once per thread of a grid (⌈total / (256·W)⌉, 2) of 256-thread blocks.
template <typename F> static void grid_2d(long long total, int W, F f) {
    blockDim.x = 256;
    for (unsigned y = 0; y < 2; y++)
        for (long long blk = 0; blk * 256 * W < total; blk++)
            for (unsigned t = 0; t < 256; t++) blockIdx.x = (unsigned)blk, blockIdx.y = y, threadIdx.x = t, f();
}
// rotate_qk on x [B·L, 3·H·hd + extra] with tables for q and k (`tables` 2), for q alone (1) or
// none (0), W elements per thread.
template <typename T, typename Rot>
static int check_rotate(const char* name, int B, int L, int H, int hd, int extra, int W, int tables, Rot rot) {
    long long rows = (long long)B * L, w = 3LL * H * hd + extra;
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> U(-1, 1);
    std::vector<T> x(rows * w), cq((size_t)L * hd), sq((size_t)L * hd), ck((size_t)L * hd), sk((size_t)L * hd);
    for (auto* v : {&x, &cq, &sq, &ck, &sk}) for (auto& e : *v) st(&e, 0, U(rng));
    auto x0 = x;
    const T* tq[2] = {tables ? cq.data() : nullptr, sq.data()};
    const T* tk[2] = {tables == 2 ? ck.data() : nullptr, sk.data()};
    grid_2d(rows * H * hd / 2, W, [&] { rot(x.data(), tq[0], tq[1], tk[0], tk[1], rows, L, H, hd, (int)w); });
    int bad = 0, half = hd / 2;
    for (long long r = 0; r < rows; r++)
        for (int c = 0; c < w; c++) {
            int part = c < 3 * H * hd ? c / (H * hd) : 3, j = c % hd, t = (int)(r % L);
            T want = x0[r * w + c];
            if (part < tables) {
                const std::vector<T>& cs = part == 0 ? cq : ck;
                const std::vector<T>& sn = part == 0 ? sq : sk;
                float a = ld(&x0[r * w + c], 0), pr = ld(&x0[r * w + c + (j < half ? half : -half)], 0);
                float v = j < half ? a * ld(&cs[t * hd + j], 0) - pr * ld(&sn[t * hd + j], 0) : a * ld(&cs[t * hd + j], 0) + pr * ld(&sn[t * hd + j], 0);
                st(&want, 0, v);
            }
            bad += ld(&x[r * w + c], 0) != ld(&want, 0);
        }
    printf("rotate_qk %s W %d: B %d, L %d, H %d, hd %d, row %lld, tables %d: %d differences\n", name, W, B, L, H, hd, w, tables, bad);
    return bad;
}
int main() {
    int bad = 0;
    for (auto [B, L, H, hd, extra] : {std::tuple{2, 37, 2, 64, 0}, std::tuple{1, 5, 3, 32, 0}, std::tuple{2, 9, 2, 64, 48}}) {
        for (int tables : {2, 1, 0}) {
            bad += check_rotate<float>("f32", B, L, H, hd, extra, 1, tables, rotate_qk_f32);
            bad += check_rotate<float>("f32", B, L, H, hd, extra, 4, tables, rotate_qk_f32_v);
            bad += check_rotate<bf16>("bf16", B, L, H, hd, extra, 1, tables, rotate_qk_bf16);
            bad += check_rotate<bf16>("bf16", B, L, H, hd, extra, 8, tables, rotate_qk_bf16_v);
        }
    }
    for (auto [B, L, d, extra] : {std::tuple{3, 70, 64, 0}, std::tuple{1, 5, 8, 0}, std::tuple{4, 257, 96, 0}, std::tuple{2, 33, 64, 40}}) {
        bad += check<float>("f32", B, L, d, extra, add_key_f32, sum_key_f32);
        bad += check<bf16>("bf16", B, L, d, extra, add_key_bf16, sum_key_bf16);
    }
    return bad ? 1 : 0;
}
