// ce_grad and ce_grad_row (cuda/tokens.cu, emulated by emu.h: one block of 256 or 512 threads per
// row) against the cross-entropy computed here in f64 from the same logits: each row's loss, and
// the logits overwritten by (softmax − onehot) · scale; the 16-byte kernels (bf16, f32), the
// one-element one and the row in shared memory, rows longer than a block's accesses and not a
// multiple of them, the target at a row's last element. Exit status 1 on a difference above the
// bounds.
#include "emu.h"
#include "kernels.cu"
#include <random>
template <typename T, int W, bool ROW = false>
static int check(const char* name, int rows, int V) {
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
    if (ROW) launch([&] { ce_grad_row<T, int, W>(x.data(), t.data(), loss.data(), scale, V); }, rows, 1, 512);
    else launch([&] { ce_grad<T, int, W>(x.data(), t.data(), loss.data(), scale, V); }, rows, 1, 256);
    double worst_loss = 0, worst_grad = 0;
    for (int r = 0; r < rows; r++) {
        double m = -1e30, s = 0;
        for (int j = 0; j < V; j++) m = std::max(m, (double)ld(&x0[(size_t)r * V + j], 0));
        for (int j = 0; j < V; j++) s += std::exp(ld(&x0[(size_t)r * V + j], 0) - m);
        double lse = m + std::log(s);
        worst_loss = std::max(worst_loss, std::abs(loss[r] - (lse - ld(&x0[(size_t)r * V + t[r]], 0))));
        for (int j = 0; j < V; j++) {
            double want = (std::exp(ld(&x0[(size_t)r * V + j], 0) - lse) - (j == t[r])) * scale;
            worst_grad = std::max(worst_grad, std::abs(ld(&x[(size_t)r * V + j], 0) - want));
        }
    }
    // bf16 rounding of the gradient: half an ulp at the largest, the scale (2^-2 · 2^-8 ≈ 9.8e-4)
    double grad_bound = sizeof(T) == 2 ? 1e-3 : 1e-6;
    bool ok = worst_loss < 1e-3 && worst_grad < grad_bound;
    printf("%s rows %d V %d: loss within %.2e, gradient within %.2e %s\n", name, rows, V, worst_loss, worst_grad, ok ? "ok" : "FAILED");
    return !ok;
}
int main() {
    int bad = 0;
    bad += check<bf16, 8>("bf16 16-byte", 3, 8200);
    bad += check<float, 4>("f32 16-byte", 2, 4100);
    bad += check<bf16, 1>("bf16 one element", 2, 1001);
    bad += check<bf16, 8, true>("bf16 row in shared memory", 3, 8200);
    bad += check<float, 4, true>("f32 row in shared memory", 2, 4100);
    // the LM head's vocabulary: several rounds of loads per thread, its running max raised mid-row
    bad += check<bf16, 8, true>("bf16 row in shared memory", 2, 50304);
    return bad ? 1 : 0;
}
