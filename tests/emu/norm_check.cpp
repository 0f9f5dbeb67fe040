// norm_fwd, norm_zero and norm_bwd (cuda/norm.cu, emulated by emu.h) against LayerNorm and
// RMSNorm computed here in f64 from the same inputs: y, the per-row mean and 1/std, dx (plus the
// residual's gradient where given), and dw, db summed over rows. Launched as norm.rs launches them
// (norm_fwd: 128-thread blocks, a warp per row; norm_bwd: 256 threads, 64 rows per block, so the
// rows below end mid-block). Widths that take the register paths (D = 32·W·NI) and the any-width
// loops, 16-byte and one-element accesses, f32 and bf16. Exit status 1 on a difference above the
// bounds.
#include <cmath>
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
#include "emu.h"
#include "kernels.cu"
#include <random>
template <typename T, int W>
static int check(const char* name, int rows, int D, bool rms, bool with_res) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> U(-2, 2);
    std::vector<T> x((size_t)rows * D), g(x.size()), res(x.size()), y(x.size()), dx(x.size());
    for (auto* v : {&x, &g, &res})
        for (auto& e : *v) st(&e, 0, U(rng));
    for (int r = 0; r < rows; r++)  // rows off zero mean and unit scale
        for (int j = 0; j < D; j++) st(&x[(size_t)r * D + j], 0, ld(&x[(size_t)r * D + j], 0) * (1 + r % 3) + (r % 5) - 2);
    std::vector<float> w(D), b(D), mean(rows), rstd(rows), dw(D, 7.f), db(D, 7.f);  // 7: norm_zero must clear them
    for (int j = 0; j < D; j++) w[j] = 0.5f + U(rng) / 4, b[j] = U(rng) / 4;
    const float eps = 1e-5f;
    float* bp = rms ? nullptr : b.data();
    launch([&] { norm_fwd<T, W>(x.data(), w.data(), bp, y.data(), mean.data(), rstd.data(), rows, D, eps, rms); }, (rows + 3) / 4, 1, 128);
    float* dbp = rms ? nullptr : db.data();
    launch([&] { norm_zero(dw.data(), dbp, D); }, 1, 1, 256);
    launch([&] { norm_bwd<T, W>(g.data(), x.data(), w.data(), mean.data(), rstd.data(), with_res ? res.data() : nullptr, dx.data(), dw.data(), dbp, rows, D, rms, 64); }, (rows + 63) / 64, 1, 256);
    double e_y = 0, e_stat = 0, e_dx = 0, e_dw = 0, e_db = 0;
    std::vector<double> sw(D, 0), sb(D, 0);
    for (int r = 0; r < rows; r++) {
        auto X = [&](int j) { return (double)ld(&x[(size_t)r * D + j], 0); };
        auto G = [&](int j) { return (double)ld(&g[(size_t)r * D + j], 0); };
        double mu = 0, var = 0, s1 = 0, s2 = 0;
        if (!rms)
            for (int j = 0; j < D; j++) mu += X(j) / D;
        for (int j = 0; j < D; j++) var += (X(j) - mu) * (X(j) - mu) / D;
        double rs = 1 / std::sqrt(var + eps);
        e_stat = std::max({e_stat, std::abs(mean[r] - mu), std::abs(rstd[r] - rs) / rs});
        for (int j = 0; j < D; j++) {
            double xh = (X(j) - mu) * rs;
            e_y = std::max(e_y, std::abs(ld(&y[(size_t)r * D + j], 0) - (xh * w[j] + (rms ? 0 : b[j]))));
            s1 += G(j) * w[j] / D, s2 += G(j) * w[j] * xh / D;
            sw[j] += G(j) * xh, sb[j] += G(j);
        }
        for (int j = 0; j < D; j++) {
            double xh = (X(j) - mu) * rs;
            double want = rs * (G(j) * w[j] - (rms ? 0 : s1) - xh * s2) + (with_res ? ld(&res[(size_t)r * D + j], 0) : 0);
            e_dx = std::max(e_dx, std::abs(ld(&dx[(size_t)r * D + j], 0) - want) / (1 + std::abs(want)));
        }
    }
    for (int j = 0; j < D; j++) {
        e_dw = std::max(e_dw, std::abs(dw[j] - sw[j]) / (1 + std::abs(sw[j])));
        e_db = std::max(e_db, rms ? std::abs(db[j] - 7.f) : std::abs(db[j] - sb[j]) / (1 + std::abs(sb[j])));
    }
    // bf16 outputs round to 8 bits of mantissa: half an ulp of |y| < 4 is 7.8e-3, of dx relative 2^-9
    bool half = sizeof(T) == 2;
    bool ok = e_y < (half ? 8e-3 : 2e-6) && e_dx < (half ? 4e-3 : 1e-6) && e_stat < 1e-6 && e_dw < 1e-5 && e_db < 1e-5;
    printf("%s rows %d D %d %s%s: y %.1e, mean/rstd %.1e, dx %.1e, dw %.1e, db %.1e %s\n", name, rows, D, rms ? "RMSNorm" : "LayerNorm", with_res ? " + residual" : "", e_y, e_stat, e_dx, e_dw, e_db, ok ? "ok" : "FAILED");
    return !ok;
}
int main() {
    int bad = 0;
    for (bool rms : {false, true})
        for (bool res : {false, true}) {
            bad += check<bf16, 8>("bf16 16-byte, registers", 150, 768, rms, res);
            bad += check<float, 4>("f32 16-byte, registers", 150, 768, rms, res);
        }
    bad += check<bf16, 8>("bf16 16-byte, registers", 70, 256, false, false);
    bad += check<bf16, 8>("bf16 16-byte, any width", 150, 264, false, true);
    bad += check<bf16, 8>("bf16 16-byte, any width", 150, 264, true, false);
    bad += check<float, 4>("f32 16-byte, any width", 70, 132, false, false);
    bad += check<bf16, 1>("bf16 one element, registers", 150, 96, false, true);
    bad += check<bf16, 1>("bf16 one element, any width", 70, 100, true, false);
    bad += check<float, 1>("f32 one element, any width", 70, 40, false, false);
    return bad ? 1 : 0;
}
