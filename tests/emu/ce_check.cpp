// ce_grad (cuda/tokens.cu, emulated by emu.h: one block of 256 threads per row) and ce_grad_rows
// (blocks of 512 looping over the rows, one or two row buffers) against the cross-entropy computed here in f64 from the same logits: each row's loss, and
// the logits overwritten by (softmax − onehot) · scale; the 16-byte kernels (bf16, f32), the
// one-element one and the row in shared memory, rows longer than a block's accesses and not a
// multiple of them, the target at a row's last element; the unfused ce_fwd + ce_bwd, the embedding's
// gradient (embed_bwd) and scale_by. Exit status 1 on a difference above the bounds.
#include "emu.h"
#include "kernels.cu"
#include <random>
// log Σ exp of row r of x [rows, V], in f64
template <typename T>
static double row_lse(const std::vector<T>& x, int r, int V) {
    double m = -1e30, s = 0;
    for (int j = 0; j < V; j++) m = std::max(m, (double)ld(&x[(size_t)r * V + j], 0));
    for (int j = 0; j < V; j++) s += std::exp(ld(&x[(size_t)r * V + j], 0) - m);
    return m + std::log(s);
}
// A gradient element's error as a share of its bound: its own rounding (bf16 keeps 8 bits: up to
// 2^-8 relative, bound 2^-7; f32: the exponential's, 1e-5 relative), and never more than `most`,
// the absolute bound sized for the largest element (the target's). Most elements are ~scale/V, so
// the absolute bound alone passed a row computed from the wrong logits.
template <typename T>
static double grad_err(double got, double want, double most) {
    double rel = sizeof(T) == 2 ? 1.0 / 128 : 1e-5;
    return std::abs(got - want) / std::min(most, std::abs(want) * rel + 1e-9);
}
// ROWS: ce_grad_rows with that many buffers and `blocks` blocks (fewer than the rows: each loops
// over several, the buffers taking turns); 0: ce_grad.
template <typename T, int W, int ROWS = 0>
static int check(const char* name, int rows, int V, int blocks = 2) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> U(-6, 6);
    std::vector<T> x((size_t)rows * V);
    for (auto& e : x) st(&e, 0, U(rng));
    std::vector<int> t(rows);
    for (int r = 0; r < rows; r++) t[r] = (int)(rng() % V);
    t[0] = V - 1;  // the last element of a row
    auto x0 = x;
    std::vector<float> loss(rows);
    float scale = 0.25f;
    if (ROWS) launch([&] { ce_grad_rows<T, int, W, ROWS ? ROWS : 1>(x.data(), t.data(), loss.data(), scale, V, rows); }, blocks, 1, 512);
    else launch([&] { ce_grad<T, int, W>(x.data(), t.data(), loss.data(), scale, V); }, rows, 1, 256);
    // the largest element's bound: bf16 rounding of the scale (2^-2 · 2^-8 ≈ 9.8e-4)
    double most = sizeof(T) == 2 ? 1e-3 : 1e-6;
    double worst_loss = 0, worst_grad = 0;
    for (int r = 0; r < rows; r++) {
        double lse = row_lse(x0, r, V);
        worst_loss = std::max(worst_loss, std::abs(loss[r] - (lse - ld(&x0[(size_t)r * V + t[r]], 0))));
        for (int j = 0; j < V; j++) {
            double want = (std::exp(ld(&x0[(size_t)r * V + j], 0) - lse) - (j == t[r])) * scale;
            worst_grad = std::max(worst_grad, grad_err<T>(ld(&x[(size_t)r * V + j], 0), want, most));
        }
    }
    bool ok = worst_loss < 1e-3 && worst_grad <= 1;
    printf("%s%s rows %d V %d: loss within %.2e, gradient within %.2f of its bound %s\n", name, ROWS == 2 ? ", two buffers" : "", rows, V, worst_loss, worst_grad, ok ? "ok" : "FAILED");
    return !ok;
}
// ce_fwd then ce_bwd (the unfused closed form: lse kept, the gradient under per-row upstream
// gradients g) against f64.
template <typename T, int W>
static int check_split(const char* name, int rows, int V) {
    std::mt19937 rng(12);
    std::uniform_real_distribution<float> U(-6, 6);
    std::vector<T> x((size_t)rows * V), dx(x.size());
    for (auto& e : x) st(&e, 0, U(rng));
    std::vector<int> t(rows);
    std::vector<float> loss(rows), lse(rows), g(rows);
    for (int r = 0; r < rows; r++) t[r] = (int)(rng() % V), g[r] = 0.1f * (r + 1);
    launch([&] { ce_fwd<T, int, W>(x.data(), t.data(), loss.data(), lse.data(), V); }, rows, 1, 256);
    launch([&] { ce_bwd<T, int, W>(x.data(), t.data(), lse.data(), g.data(), dx.data(), V); }, rows, 1, 256);
    double most = sizeof(T) == 2 ? 2e-3 : 1e-6;
    double worst_loss = 0, worst_grad = 0;
    for (int r = 0; r < rows; r++) {
        double l = row_lse(x, r, V);
        worst_loss = std::max({worst_loss, std::abs(lse[r] - l), std::abs(loss[r] - (l - ld(&x[(size_t)r * V + t[r]], 0)))});
        for (int j = 0; j < V; j++) {
            double want = (std::exp(ld(&x[(size_t)r * V + j], 0) - l) - (j == t[r])) * g[r];
            worst_grad = std::max(worst_grad, grad_err<T>(ld(&dx[(size_t)r * V + j], 0), want, most));
        }
    }
    bool ok = worst_loss < 1e-3 && worst_grad <= 1;
    printf("%s ce_fwd + ce_bwd rows %d V %d: loss within %.2e, gradient within %.2f of its bound %s\n", name, rows, V, worst_loss, worst_grad, ok ? "ok" : "FAILED");
    return !ok;
}
// embed_bwd (repeated ids add up; from a zeroed dw) and scale_by (a copy scaled, in place, and in
// place by 1: untouched) against their sums and products.
template <typename T>
static int check_embed_scale(const char* name) {
    const int n = 300, D = 24, V = 50;
    std::mt19937 rng(13);
    std::uniform_real_distribution<float> U(-1, 1);
    std::vector<T> g((size_t)n * D);
    for (auto& e : g) st(&e, 0, U(rng));
    std::vector<long long> ids(n);
    for (auto& i : ids) i = (long long)(rng() % 7) * 7;  // repeated rows
    std::vector<float> dw((size_t)V * D, 0.f);
    launch([&] { embed_bwd<T, long long>(ids.data(), g.data(), dw.data(), n, D); }, (n * D + 255) / 256, 1, 256);
    std::vector<double> want((size_t)V * D, 0.0);
    for (int r = 0; r < n; r++)
        for (int c = 0; c < D; c++) want[ids[r] * D + c] += ld(&g[(size_t)r * D + c], 0);
    double e_embed = 0;
    for (size_t i = 0; i < want.size(); i++) e_embed = std::max(e_embed, std::abs(dw[i] - want[i]));
    std::vector<T> y(g.size()), z = g;
    float two = 2.f, one = 1.f;
    launch([&] { scale_by<T>(g.data(), y.data(), &two, (long long)g.size()); }, 2, 1, 256);  // fewer threads than elements
    launch([&] { scale_by<T>(z.data(), z.data(), &one, (long long)z.size()); }, 2, 1, 256);
    int wrong = 0;
    for (size_t i = 0; i < g.size(); i++) {
        T w;
        st(&w, 0, ld(&g[i], 0) * 2.f);
        wrong += ld(&y[i], 0) != ld(&w, 0) || ld(&z[i], 0) != ld(&g[i], 0);
    }
    bool ok = e_embed < 1e-5 && wrong == 0;
    printf("%s embed_bwd within %.1e, scale_by %d wrong %s\n", name, e_embed, wrong, ok ? "ok" : "FAILED");
    return !ok;
}
int main() {
    int bad = 0;
    bad += check_split<bf16, 8>("bf16 16-byte", 3, 1000);
    bad += check_split<float, 1>("f32 one element", 2, 1001);
    bad += check_embed_scale<bf16>("bf16");
    bad += check_embed_scale<float>("f32");
    bad += check<bf16, 8>("bf16 16-byte", 3, 8200);
    bad += check<float, 4>("f32 16-byte", 2, 4100);
    bad += check<bf16, 1>("bf16 one element", 2, 1001);
    bad += check<bf16, 8, 1>("bf16 rows in shared memory", 3, 8200);
    bad += check<float, 4, 1>("f32 rows in shared memory", 2, 4100, 1);
    bad += check<bf16, 8, 2>("bf16 rows in shared memory", 5, 8200);
    bad += check<float, 4, 2>("f32 rows in shared memory", 4, 4100, 3);
    // the LM head's vocabulary: several loads per thread, the running max raised mid-row; more
    // blocks than rows
    bad += check<bf16, 8, 2>("bf16 rows in shared memory", 3, 50304);
    bad += check<bf16, 8, 2>("bf16 rows in shared memory", 2, 50304, 4);
    return bad ? 1 : 0;
}
