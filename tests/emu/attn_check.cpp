// The GEMM + softmax attention's kernels (cuda/attention.cu, emulated by emu.h) against their
// formulas in f64: the causal softmax over s·scale + bias (a per-head bias with −∞ entries and a
// fully masked row, which gives zeros) and its backward, for rows in registers (L ≤ 512, ≤ 1024)
// and longer ones; the head split with and without the RoPE/xPos rotation from rows of the fused
// projection, and its adjoint (the merge). f32 and bf16, 16-byte and one-element accesses. Exit
// status 1 on a difference above the bounds.
#include "emu.h"
#include "kernels.cu"
#include <random>
template <typename T>
static std::vector<T> random(size_t n, std::mt19937& rng, float lo, float hi) {
    std::uniform_real_distribution<float> U(lo, hi);
    std::vector<T> v(n);
    for (auto& e : v) st(&e, 0, U(rng));
    return v;
}
template <typename T>
static double val(const std::vector<T>& v, size_t i) { return ld(&v[i], 0); }
// bf16 stores: half an ulp, relative 2^-9; f32: a few ulps of the f32 arithmetic
template <typename T>
static double bound() { return sizeof(T) == 2 ? 4e-3 : 2e-5; }

template <typename T, int W>
static int softmax(const char* name, int L) {
    const int H = 2, BH = 2;
    const float scale = 0.3f;
    std::mt19937 rng(4);
    size_t n = (size_t)BH * L * L;
    auto s = random<T>(n, rng, -3, 3), dp = random<T>(n, rng, -1, 1);
    std::vector<T> bias((size_t)H * L * L), p(n), ds(n);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < L; i++)
            for (int j = 0; j < L; j++) st(&bias[((size_t)h * L + i) * L + j], 0, (i * 5 + j) % 13 == 0 && j != i ? NEG_INF : (h == 1 && i == 2 ? NEG_INF : -0.01f * (h + 1) * (i - j)));
    long long rows = (long long)BH * L;
    unsigned blocks = (unsigned)((rows + 3) / 4);
    // the ATTENTION_KERNELS dispatch on L
    auto fwd = [&] {
        if (L <= 512) softmax_fwd_reg<T, 16, W>(s.data(), bias.data(), p.data(), rows, L, H, 0, (long long)L * L, scale);
        else if (L <= 1024) softmax_fwd_reg<T, 32, W>(s.data(), bias.data(), p.data(), rows, L, H, 0, (long long)L * L, scale);
        else softmax_fwd<T>(s.data(), bias.data(), p.data(), rows, L, H, 0, (long long)L * L, scale);
    };
    auto bwd = [&] {
        if (L <= 512) softmax_bwd_reg<T, 16, W>(p.data(), dp.data(), ds.data(), rows, L, scale);
        else if (L <= 1024) softmax_bwd_reg<T, 32, W>(p.data(), dp.data(), ds.data(), rows, L, scale);
        else softmax_bwd<T>(p.data(), dp.data(), ds.data(), rows, L, scale);
    };
    launch(fwd, blocks, 1, 128);
    launch(bwd, blocks, 1, 128);
    double e_p = 0, e_ds = 0;
    for (int bh = 0; bh < BH; bh++)
        for (int i = 0; i < L; i++) {
            size_t row = ((size_t)bh * L + i) * L;
            const T* br = &bias[((size_t)(bh % H) * L + i) * L];
            double m = -INFINITY, z = 0, dot = 0;
            for (int j = 0; j <= i; j++) m = std::max(m, val(s, row + j) * scale + ld(br, j));
            for (int j = 0; j <= i && m > -INFINITY; j++) z += std::exp(val(s, row + j) * scale + ld(br, j) - m);
            std::vector<double> want(L, 0.0);
            for (int j = 0; j <= i && z > 0; j++) want[j] = std::exp(val(s, row + j) * scale + ld(br, j) - m) / z;
            // the backward from the kernel's own (rounded) p, as the training step feeds it
            for (int j = 0; j <= i; j++) dot += val(p, row + j) * val(dp, row + j);
            for (int j = 0; j < L; j++) {
                e_p = std::max(e_p, std::abs(val(p, row + j) - want[j]));
                double wd = j > i ? 0 : scale * val(p, row + j) * (val(dp, row + j) - dot);
                e_ds = std::max(e_ds, std::abs(val(ds, row + j) - wd));
            }
        }
    bool ok = e_p < bound<T>() && e_ds < bound<T>();
    printf("softmax %s L %d: p within %.1e, ds within %.1e %s\n", name, L, e_p, e_ds, ok ? "ok" : "FAILED");
    return !ok;
}

template <typename T, int W>
static int heads(const char* name, int rot) {
    const int B = 2, H = 3, L = 5, hd = 16, ld = 3 * H * hd;  // q, k, v side by side; this reads k
    std::mt19937 rng(8);
    auto x = random<T>((size_t)B * L * ld, rng, -2, 2), c = random<T>((size_t)L * hd, rng, -1, 1), s = random<T>((size_t)L * hd, rng, -1, 1);
    const T* xk = x.data() + H * hd;
    long long n = (long long)B * H * L * hd;
    std::vector<T> y(n), dx((size_t)B * L * ld);
    auto g = random<T>(n, rng, -2, 2);
    unsigned blocks = (unsigned)((n / W + 255) / 256);
    launch([&] { heads_split<T, unsigned, W>(xk, c.data(), s.data(), y.data(), (unsigned)n, L, H, hd, ld, rot); }, blocks, 1, 256);
    launch([&] { heads_merge<T, long long, W>(g.data(), c.data(), s.data(), dx.data() + H * hd, n, L, H, hd, ld, rot); }, blocks, 1, 256);
    double e_y = 0, e_dx = 0;
    const int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++)
                for (int j = 0; j < hd; j++) {
                    size_t xi = ((size_t)b * L + t) * ld + H * hd + h * hd, yi = (((size_t)b * H + h) * L + t) * hd;
                    int q = j < half ? j + half : j - half;
                    double cj = val(c, t * hd + j), sj = val(s, t * hd + j), sq = val(s, t * hd + q);
                    double wy = rot ? val(x, xi + j) * cj + (j < half ? -1 : 1) * val(x, xi + q) * sj : val(x, xi + j);
                    double wdx = rot ? val(g, yi + j) * cj + (j < half ? 1 : -1) * val(g, yi + q) * sq : val(g, yi + j);
                    e_y = std::max(e_y, std::abs(val(y, yi + j) - wy) / (1 + std::abs(wy)));
                    e_dx = std::max(e_dx, std::abs(val(dx, xi + j) - wdx) / (1 + std::abs(wdx)));
                }
    bool ok = e_y < bound<T>() && e_dx < bound<T>();
    printf("heads %s rot %d: split within %.1e, merge within %.1e %s\n", name, rot, e_y, e_dx, ok ? "ok" : "FAILED");
    return !ok;
}

int main() {
    int bad = 0;
    for (int L : {104, 600}) {  // multiples of 8, as the host takes the 16-byte kernels
        bad += softmax<float, 4>("f32 16-byte", L);
        bad += softmax<bf16, 8>("bf16 16-byte", L);
    }
    bad += softmax<float, 4>("f32, rows past 1,024", 1096);
    bad += softmax<bf16, 1>("bf16 one element", 70);
    for (int rot : {0, 1}) {
        bad += heads<bf16, 8>("bf16 16-byte", rot);
        bad += heads<float, 4>("f32 16-byte", rot);
        bad += heads<bf16, 1>("bf16 one element", rot);
    }
    return bad ? 1 : 0;
}
