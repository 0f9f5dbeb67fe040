// The MLP gate's kernels (cuda/gate.cu, emulated by emu.h) against y = silu(a)·u and its gradients
// computed here in f64 from the same inputs: glu_fwd and glu_bwd on the fused h = [a | u] (rows of
// 2F, or wider as within the parallel layer's input projections: `ldh`; glu_bwd writes dh in h's
// layout, leaves the columns past 2F alone and y in g's place), silu_mul_fwd and silu_mul_bwd on separate a and u; the
// 16-byte kernels (bf16, f32) and the one-element ones, launched as mlp.rs and gate.rs launch them
// (256 threads, fewer blocks than groups so threads stride), inputs out to where σ under- and
// overflows; and cast_many, the weights' casts into a sublayer's side-by-side operand. Exit status 1
// on a difference above the bounds.
#include "emu.h"
#include "kernels.cu"
#include <random>
struct Want { double y, da, du; };
static Want want(double a, double u, double g) {
    double s = 1 / (1 + std::exp(-a));
    return {a * s * u, g * u * s * (1 + a * (1 - s)), g * a * s};
}
// |got − want| / (1 + |want|), the worst so far in e
static void err(double& e, float got, double want) { e = std::max(e, std::abs(got - want) / (1 + std::abs(want))); }
template <typename T, int W>
static int check(const char* name, int rows, int F, int ldh) {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> U(-8, 8);
    std::vector<T> h((size_t)rows * ldh), g((size_t)rows * F), y(g.size()), dh(h.size());
    for (auto& e : dh) st(&e, 0, 7.f);
    for (auto& e : h) st(&e, 0, U(rng));
    for (auto& e : g) st(&e, 0, U(rng) / 4);
    st(&h[0], 0, -100.f), st(&h[1], 0, 100.f);  // e^(−a) overflows, and vanishes
    auto g0 = g;
    long long n = (long long)rows * F / W;
    unsigned blocks = (unsigned)std::min<long long>((n + 255) / 256, 3);
    launch([&] { glu_fwd<T, W>(h.data(), y.data(), n, F, ldh); }, blocks, 1, 256);
    launch([&] { glu_bwd<T, W>(h.data(), g.data(), dh.data(), n, F, ldh); }, blocks, 1, 256);
    // the same gate on separate a and u (the unfused MLP's kernels)
    std::vector<T> a(g.size()), u(g.size()), y2(g.size()), da(g.size()), du(g.size());
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < F; c++) a[(size_t)r * F + c] = h[(size_t)r * ldh + c], u[(size_t)r * F + c] = h[(size_t)r * ldh + F + c];
    launch([&] { silu_mul_fwd<T, W>(a.data(), u.data(), y2.data(), n); }, blocks, 1, 256);
    launch([&] { silu_mul_bwd<T, W>(a.data(), u.data(), g0.data(), da.data(), du.data(), n); }, blocks, 1, 256);
    double e_y = 0, e_d = 0, e_y2 = 0, e_d2 = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < F; c++) {
            size_t i = (size_t)r * F + c, at = (size_t)r * ldh + c;
            Want w = want(ld(&h[at], 0), ld(&h[at + F], 0), ld(&g0[i], 0));
            err(e_y, ld(&y[i], 0), w.y), err(e_y, ld(&g[i], 0), w.y);
            err(e_d, ld(&dh[at], 0), w.da), err(e_d, ld(&dh[at + F], 0), w.du);
            err(e_y2, ld(&y2[i], 0), w.y);
            err(e_d2, ld(&da[i], 0), w.da), err(e_d2, ld(&du[i], 0), w.du);
        }
    // bf16 stores: half an ulp, 2^-9 relative; f32: the fast reciprocal's 2 ulp and e^x's few
    double bound = sizeof(T) == 2 ? 4e-3 : 2e-6;
    int past = 0;  // dh's columns past 2F keep what they held
    for (int r = 0; r < rows; r++)
        for (int c = 2 * F; c < ldh; c++) past += ld(&dh[(size_t)r * ldh + c], 0) != 7.f;
    bool ok = e_y < bound && e_d < bound && e_y2 < bound && e_d2 < bound && past == 0;
    printf("%s rows %d F %d ldh %d: glu y %.1e, dh %.1e (%d written past 2F); silu_mul y %.1e, da/du %.1e %s\n", name, rows, F, ldh, e_y, e_d, past, e_y2, e_d2,
           ok ? "ok" : "FAILED");
    return !ok;
}
// cast_many: f32 weights cast into column ranges of one wider matrix (a sublayer's weights side by
// side), a job per blockIdx.y; the columns outside every job are left alone.
template <typename T, int W>
static int check_cast(const char* name, int cols0, int cols1) {
    const unsigned rows = 7, width = cols0 + cols1 + W;
    std::mt19937 rng(6);
    std::uniform_real_distribution<float> U(-3, 3);
    std::vector<float> a((size_t)rows * cols0), b((size_t)rows * cols1);
    for (auto* v : {&a, &b})
        for (auto& e : *v) e = U(rng);
    std::vector<T> out((size_t)rows * width);
    for (auto& e : out) st(&e, 0, 5.f);
    CastJobs jobs{};
    jobs.j[0] = {a.data(), out.data(), rows, (unsigned)cols0, width, 0};
    jobs.j[1] = {b.data(), out.data(), rows, (unsigned)cols1, width, (unsigned)cols0};
    launch([&] { cast_many<T, W>(jobs); }, 1, 2, 32);  // one block per job, fewer threads than elements
    int wrong = 0;
    for (unsigned r = 0; r < rows; r++)
        for (unsigned c = 0; c < width; c++) {
            float src = c < (unsigned)cols0 ? a[r * cols0 + c] : c < (unsigned)(cols0 + cols1) ? b[r * cols1 + c - cols0] : 5.f;
            T w;
            st(&w, 0, src);
            wrong += ld(&out[(size_t)r * width + c], 0) != ld(&w, 0);
        }
    printf("cast_many %s: %d of %u elements wrong %s\n", name, wrong, rows * width, wrong ? "FAILED" : "ok");
    return wrong != 0;
}
int main() {
    int bad = 0;
    bad += check_cast<bf16, 8>("bf16 16-byte", 16, 24);
    bad += check_cast<bf16, 1>("bf16 one element", 5, 3);
    bad += check_cast<float, 1>("f32 one element", 5, 3);
    bad += check<bf16, 8>("bf16 16-byte", 70, 96, 192);
    bad += check<bf16, 8>("bf16 16-byte", 30, 96, 192 + 72);
    bad += check<float, 4>("f32 16-byte", 50, 100, 200);
    bad += check<float, 4>("f32 16-byte", 20, 100, 200 + 12);
    bad += check<bf16, 1>("bf16 one element", 40, 37, 74);
    bad += check<float, 1>("f32 one element", 40, 37, 74 + 5);
    return bad ? 1 : 0;
}
