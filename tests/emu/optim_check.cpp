// The optimizer step's kernels (cuda/optim.cu, emulated by emu.h): sum_squares_f32 against Σ x² in
// f64, and adamw_f32 against AdamW computed here element by element in f32 with one rounding per
// operation, as the kernel's comment states burn's order (bit for bit): the first step (no
// moments), a later one with the gradient clipped by the global norm from the device's stats, and
// one whose loss is not finite (p, m and v kept). Three tensors in one launch, as fused.rs packs
// them: one over two blocks' chunks, one shorter than a vector group, one off 16-byte alignment
// (the one-element path). Exit status 1 on a difference.
#include "emu.h"
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
#include "kernels.cu"
#include <climits>
#include <random>
struct Step { const char* name; int first; float loss; };
int main() {
    const long long sizes[3] = {5000, 3, 4099};
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> U(-1, 1);
    // each tensor in its own buffer, the third one float past 16-byte alignment
    std::vector<std::vector<float>> P(3), G(3), M(3), V(3);
    for (int k = 0; k < 3; k++) {
        for (auto* x : {&P[k], &G[k], &M[k], &V[k]}) {
            x->resize(sizes[k] + 4);
            for (auto& e : *x) e = U(rng);
        }
        for (auto& e : V[k]) e = e * e;  // second moments are ≥ 0
    }
    auto at = [&](std::vector<float>& x, int k) { return x.data() + (k == 2 ? 1 : 0); };
    int bad = 0;
    // Σ g² over the three gradients
    Tensors ss{};
    int blocks = 0;
    double want = 0;
    for (int k = 0; k < MT_MAX; k++) ss.first[k] = INT_MAX;
    for (int k = 0; k < 3; k++) {
        ss.ptr[k] = at(G[k], k), ss.n[k] = sizes[k], ss.first[k] = blocks;
        blocks += (int)((sizes[k] + SS_CHUNK - 1) / SS_CHUNK);
        for (long long i = 0; i < sizes[k]; i++) want += (double)at(G[k], k)[i] * at(G[k], k)[i];
    }
    float sum = 0.f;
    launch([&] { sum_squares_f32(ss, &sum); }, blocks, 1, SS_THREADS);
    bool ok = std::abs(sum - want) <= 1e-5 * want;
    printf("sum_squares: %.6f vs %.6f %s\n", sum, want, ok ? "ok" : "FAILED");
    bad += !ok;
    const float norm = std::sqrt(sum), max_norm = norm / 3;  // clipped: the factor max_norm / (norm + 1e-6)
    for (Step st : {Step{"first step", 1, 2.5f}, Step{"clipped step", 0, 2.5f}, Step{"loss not finite", 0, NAN}}) {
        AdamTensors t{};
        std::vector<std::vector<float>> po(3), mo(3), vo(3);
        blocks = 0;
        for (int k = 0; k < ADAM_MAX; k++) t.first[k] = INT_MAX;
        for (int k = 0; k < 3; k++) {
            for (auto* x : {&po[k], &mo[k], &vo[k]}) x->assign(sizes[k] + 4, -9.f);
            t.p[k] = at(P[k], k), t.g[k] = at(G[k], k), t.m[k] = st.first ? nullptr : at(M[k], k), t.v[k] = st.first ? nullptr : at(V[k], k);
            t.po[k] = at(po[k], k), t.mo[k] = at(mo[k], k), t.vo[k] = at(vo[k], k);
            t.n[k] = sizes[k], t.first[k] = blocks;
            blocks += (int)((sizes[k] + ADAM_CHUNK - 1) / ADAM_CHUNK);
        }
        // lr, β1, 1−β1, β2, 1−β2, eps, 1−lr·wd, 1−β1ᵗ, 1−β2ᵗ, clip (set from stats), max norm
        float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, wd = 0.1f;
        Adam h{lr, b1, 1.f - b1, b2, 1.f - b2, 1e-8f, 1.f - lr * wd, 1.f - b1 * b1 * b1, 1.f - b2 * b2 * b2, 1.f, max_norm};
        float stats[2] = {st.loss, norm};
        launch([&] { adamw_f32(t, h, st.first, stats); }, blocks, 1, ADAM_THREADS);
        bool skip = !std::isfinite(st.loss);
        float clip = norm > max_norm ? max_norm / (norm + 1e-6f) : 1.f;
        long long diff = 0;
        for (int k = 0; k < 3; k++)
            for (long long i = 0; i < sizes[k]; i++) {
                float p = at(P[k], k)[i], g = at(G[k], k)[i], m = st.first ? 0.f : at(M[k], k)[i], v = st.first ? 0.f : at(V[k], k)[i];
                float wp = p, wm = m, wv = v;
                if (!skip) {
                    float gi = g * clip;
                    wm = gi * h.c1, wv = (gi * gi) * h.c2;
                    if (!st.first) wm = m * b1 + wm, wv = v * b2 + wv;
                    float step = (wm / h.bc1) / (std::sqrt(wv / h.bc2) + h.eps);
                    wp = p * h.decay - step * lr;
                }
                diff += at(po[k], k)[i] != wp || at(mo[k], k)[i] != wm || at(vo[k], k)[i] != wv;
            }
        printf("adamw, %s: %lld of %lld elements differ %s\n", st.name, diff, sizes[0] + sizes[1] + sizes[2], diff ? "FAILED" : "ok");
        bad += diff != 0;
    }
    return bad ? 1 : 0;
}
