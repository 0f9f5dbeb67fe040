// glu_bwd_gemm (cuda/glu_gemm.cu, emulated by emu.h: wgmma m64n128k16, cp.async, two warpgroups)
// against its formulas in f64 from the same bf16 inputs: gs = dy·wdᵀ rounded to bf16 as the kernel
// (and cuBLAS before glu_bwd) rounds it, then glu_bwd's da, du and s = silu(a)·u. Rows off the
// 128-row tile, K of several pipeline steps and of two, h's rows wider than 2F; dh's columns past
// 2F keep what they held: layouts, indices and tails (copies land at issue here, so the pipeline's
// waits and barriers are the GPU tests'). Exit status 1 on a difference above the bounds.
#include "emu.h"
#include "kernels.cu"
#include <random>
static void err(double& e, float got, double want) { e = std::max(e, std::abs(got - want) / (1 + std::abs(want))); }
static double round_bf16(double v) {
    bf16 b;
    st(&b, 0, (float)v);
    return ld(&b, 0);
}
static int check(int n, int F, int K, int ldh) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> U(-1, 1);
    std::vector<bf16> dy((size_t)n * K), wd((size_t)F * K), h((size_t)n * ldh), dh(h.size()), gs((size_t)n * F);
    for (auto& e : dy) st(&e, 0, U(rng));
    for (auto& e : wd) st(&e, 0, U(rng) / 4);
    for (auto& e : h) st(&e, 0, 4 * U(rng));
    for (auto& e : dh) st(&e, 0, 7.f);
    launch([&] { glu_bwd_gemm(dy.data(), wd.data(), h.data(), dh.data(), gs.data(), n, F, K, ldh); }, F / 128, (n + 127) / 128, 256);
    double e_y = 0, e_d = 0;
    int past = 0;
    for (int m = 0; m < n; m++) {
        for (int f = 0; f < F; f++) {
            double g = 0;
            for (int k = 0; k < K; k++) g += (double)ld(&dy[(size_t)m * K + k], 0) * ld(&wd[(size_t)f * K + k], 0);
            g = round_bf16(g);
            double a = ld(&h[(size_t)m * ldh + f], 0), u = ld(&h[(size_t)m * ldh + F + f], 0), s = 1 / (1 + std::exp(-a));
            err(e_y, ld(&gs[(size_t)m * F + f], 0), a * s * u);
            err(e_d, ld(&dh[(size_t)m * ldh + f], 0), g * u * s * (1 + a * (1 - s)));
            err(e_d, ld(&dh[(size_t)m * ldh + F + f], 0), g * a * s);
        }
        for (int c = 2 * F; c < ldh; c++) past += ld(&dh[(size_t)m * ldh + c], 0) != 7.f;
    }
    // bf16 outputs (2^-9 relative) from a gs that may round the other way at a tie of the sums
    bool ok = e_y < 8e-3 && e_d < 1.6e-2 && past == 0;
    printf("glu_bwd_gemm n %d F %d K %d ldh %d: s %.1e, da/du %.1e (%d written past 2F) %s\n", n, F, K, ldh, e_y, e_d, past, ok ? "ok" : "FAILED");
    return !ok;
}
int main() {
    int bad = 0;
    bad += check(300, 256, 512, 536);  // 3 × 2 tiles, rows off the tile, K of 8 steps, h's rows wider than 2F
    bad += check(130, 128, 128, 256);  // K of 2 steps (the pipeline's prologue alone)
    return bad;
}
