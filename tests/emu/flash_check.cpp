// The flash kernels (cuda/flash_*.cu, emulated: emu.h) against attention computed in f64 from the
// same bf16 values: output, log-sum-exp and the three gradients, relative L2 error below 2e-2.
// Usage: flash_check HD L BIAS MERGED FUSED ROT (BIAS 1: ALiBi computed by the kernels from per-head
// slopes and per-slot positions, some slots without one; 0: the causal mask alone. MERGED 1: o and dO with the heads side by side,
// [B, L, H·HD]; 0: [B·H, L, HD]. FUSED 1: q, k, v and their gradients side by side in one
// [B, L, 3·H·HD], as the fused projection lays them out; 2: the same at the front of wider rows
// (40 more columns, as in the parallel layer's input projections; the gradients' extra columns
// must stay as they were); 0: three [B·H, L, HD]. ROT 1: dq and dk
// rotated back by q's and k's tables (different ones, as xPos has) as they are written, the
// adjoint of rotate_qk's rotation applied to the reference's gradients). Exit status 1 on a
// failed comparison.
#include "emu.h"
#include "kernels.cu"
#include <random>
static unsigned short tobf(float v) { return to_bf16(v); }
int main(int argc, char** argv) {
    printf("FA_BULK_DQ %d FA_WGMMA %d\n", FA_BULK_DQ, FA_WGMMA);  // which dQ path and products this build checks
    int HD = atoi(argv[1]), L = atoi(argv[2]), H = 2, B = 2, BH = B * H;
    bool BIAS = argc > 3 && atoi(argv[3]);
    int OH = argc > 4 && atoi(argv[4]) ? H : 1;  // heads per row of o and dO
    // where o and dO hold head row-block bh's row i, column c
    auto oi = [&](int bh, int i, int c) { return ((size_t)(bh / OH) * L + i) * OH * HD + (size_t)(bh % OH) * HD + c; };
    int FUSED = argc > 5 ? atoi(argv[5]) : 0;
    int QH = FUSED ? H : 1, QLD = FUSED ? 3 * H * HD + (FUSED == 2 ? 40 : 0) : HD;
    // where q (part 0), k (1) or v (2) holds head row-block bh's row i, column c
    auto qi = [&](int part, int bh, int i, int c) {
        return FUSED ? ((size_t)(bh / H) * L + i) * QLD + (size_t)part * H * HD + (size_t)(bh % H) * HD + c : (size_t)part * BH * L * HD + ((size_t)bh * L + i) * HD + c;
    };
    bool ROT = argc > 6 && atoi(argv[6]);
    float scale = 0.3f;
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> U(-2, 2);
    size_t n = (size_t)BH * L * HD;
    std::vector<unsigned short> q(n), k(n), v(n), dO(n);
    for (auto* x : {&q, &k, &v, &dO}) for (auto& e : *x) e = tobf(U(rng));
    // ALiBi as the kernels take it: the heads' slopes, then each slot's position (offset, as a
    // window's global positions are; every 9th slot without one, NaN, as a memory token)
    std::vector<float> alibi(H + L);
    for (int h = 0; h < H; h++) alibi[h] = 0.3f / (h + 1);
    for (int i = 0; i < L; i++) alibi[H + i] = i % 9 == 4 ? NAN : (float)(i + 1000);
    // the bias of head h, query i, key j ≤ i: slope·(p_j − p_i), 0 where either has no position
    auto bias = [&](int h, int i, int j) {
        double pi = alibi[H + i], pj = alibi[H + j];
        return !BIAS || std::isnan(pi) || std::isnan(pj) ? 0.0 : (double)alibi[h] * (pj - pi);
    };
    std::vector<unsigned short> tab[4];  // cos, sin of q, then of k: [L, HD] each
    for (auto& t : tab) { t.resize((size_t)L * HD); for (auto& e : t) e = tobf(U(rng) / 2); }
    const unsigned short* tp[4];
    for (int i = 0; i < 4; i++) tp[i] = ROT ? tab[i].data() : nullptr;
    std::vector<unsigned short> o(n), dq(n), dk(n), dv(n), dOk(n);  // dOk: dO in o's layout
    size_t nq = FUSED ? (size_t)B * L * QLD : 3 * n;
    std::vector<unsigned short> qkv(nq), dqkv(nq, tobf(7.f));       // q, k, v and their gradients in the kernels' layout
    for (int bh = 0; bh < BH; bh++) for (int i = 0; i < L; i++) for (int c = 0; c < HD; c++) {
        size_t e = ((size_t)bh * L + i) * HD + c;
        dOk[oi(bh, i, c)] = dO[e];
        qkv[qi(0, bh, i, c)] = q[e], qkv[qi(1, bh, i, c)] = k[e], qkv[qi(2, bh, i, c)] = v[e];
    }
    size_t part = FUSED ? (size_t)H * HD : n;  // from q's pointer to k's and v's
    std::vector<float> lse(BH * L), delta(BH * L), dqa(n, 7.f);  // flash_dot zeroes dqa
    int nb = (L + 63) / 64;
    auto fwd = BIAS ? (HD == 64 ? flash_fwd_hd64_alibi : flash_fwd_hd32_alibi) : (HD == 64 ? flash_fwd_hd64 : flash_fwd_hd32);
    auto dot = HD == 64 ? flash_dot_hd64 : flash_dot_hd32;
    auto bwd = BIAS ? (HD == 64 ? flash_bwd_hd64_alibi : flash_bwd_hd32_alibi) : (HD == 64 ? flash_bwd_hd64 : flash_bwd_hd32);
    launch([&] { fwd(qkv.data(), qkv.data() + part, qkv.data() + 2 * part, BIAS ? alibi.data() : nullptr, o.data(), lse.data(), L, H, scale, OH, QH, QLD); }, (L + 127) / 128, BH, 128);
    launch([&] { dot(o.data(), dOk.data(), delta.data(), dqa.data(), (long long)BH * L, L, OH); }, (BH * L * (HD / 8) + 127) / 128, 1, 128);
    launch([&] { bwd(qkv.data(), qkv.data() + part, qkv.data() + 2 * part, BIAS ? alibi.data() : nullptr, dOk.data(), lse.data(), delta.data(), dqa.data(), dqkv.data() + part, dqkv.data() + 2 * part, tp[2], tp[3], L, H, scale, OH, QH, QLD); }, nb, BH, 128);
    launch([&] { flash_dq(dqa.data(), dqkv.data(), (long long)n, L, HD, QH, QLD, tp[0], tp[1]); }, (n / 16 + 255) / 256, 1, 256);  // as flash.rs launches it
    for (int bh = 0; bh < BH; bh++) for (int i = 0; i < L; i++) for (int c = 0; c < HD; c++) {
        size_t e = ((size_t)bh * L + i) * HD + c;
        dq[e] = dqkv[qi(0, bh, i, c)], dk[e] = dqkv[qi(1, bh, i, c)], dv[e] = dqkv[qi(2, bh, i, c)];
    }
    // reference in double
    std::vector<double> ro(n, 0), rdq(n, 0), rdk(n, 0), rdv(n, 0), rl(BH * L);
    auto f = [](unsigned short h) { return (double)bfv(h); };
    double errs[5] = {0}, norms[5] = {0};
    for (int bh = 0; bh < BH; bh++) {
        int hh = bh % H;
        size_t base = (size_t)bh * L * HD;
        std::vector<double> P((size_t)L * L, 0), dP((size_t)L * L, 0);
        for (int i = 0; i < L; i++) {
            double m = -INFINITY;
            std::vector<double> s(L, -INFINITY);
            for (int j = 0; j <= i; j++) {
                double d = 0;
                for (int c = 0; c < HD; c++) d += f(q[base + i * HD + c]) * f(k[base + j * HD + c]);
                s[j] = d * scale + bias(hh, i, j);
                m = std::max(m, s[j]);
            }
            double z = 0;
            if (m != -INFINITY) for (int j = 0; j <= i; j++) z += exp(s[j] - m);
            rl[bh * L + i] = z > 0 ? m + log(z) : INFINITY;
            for (int j = 0; j <= i; j++) P[(size_t)i * L + j] = z > 0 ? exp(s[j] - m) / z : 0;
            for (int c = 0; c < HD; c++) { double a = 0; for (int j = 0; j <= i; j++) a += P[(size_t)i * L + j] * f(v[base + j * HD + c]); ro[base + i * HD + c] = a; }
        }
        for (int i = 0; i < L; i++) {
            double D = 0;
            for (int c = 0; c < HD; c++) D += f(dO[base + i * HD + c]) * ro[base + i * HD + c];
            for (int j = 0; j <= i; j++) {
                double dp = 0;
                for (int c = 0; c < HD; c++) dp += f(dO[base + i * HD + c]) * f(v[base + j * HD + c]);
                double ds = P[(size_t)i * L + j] * (dp - D) * scale;
                for (int c = 0; c < HD; c++) {
                    rdq[base + i * HD + c] += ds * f(k[base + j * HD + c]);
                    rdk[base + j * HD + c] += ds * f(q[base + i * HD + c]);
                    rdv[base + j * HD + c] += P[(size_t)i * L + j] * f(dO[base + i * HD + c]);
                }
            }
        }
    }
    if (ROT) {  // (a, b) → (a·c_j + b·s_{j+h}, b·c_{j+h} − a·s_j) per pair (j, j + HD/2) at each row's position
        for (auto [r, c, s] : {std::tuple{&rdq, tab[0].data(), tab[1].data()}, std::tuple{&rdk, tab[2].data(), tab[3].data()}})
            for (int bh = 0; bh < BH; bh++) for (int i = 0; i < L; i++) for (int j = 0; j < HD / 2; j++) {
                double& a = (*r)[((size_t)bh * L + i) * HD + j];
                double& b = (*r)[((size_t)bh * L + i) * HD + j + HD / 2];
                const unsigned short *ct = c + (size_t)i * HD, *st = s + (size_t)i * HD;
                double na = a * f(ct[j]) + b * f(st[j + HD / 2]), nb = b * f(ct[j + HD / 2]) - a * f(st[j]);
                a = na, b = nb;
            }
    }
    auto acc = [&](int w, double got, double want) { if (std::isinf(want) && got == want) return; errs[w] += (got - want) * (got - want); norms[w] += want * want; };
    for (size_t e = 0; e < n; e++) { acc(1, f(dq[e]), rdq[e]); acc(2, f(dk[e]), rdk[e]); acc(3, f(dv[e]), rdv[e]); }
    for (int bh = 0; bh < BH; bh++) for (int i = 0; i < L; i++) for (int c = 0; c < HD; c++) acc(0, f(o[oi(bh, i, c)]), ro[((size_t)bh * L + i) * HD + c]);
    for (int i = 0; i < BH * L; i++) acc(4, lse[i], rl[i]);
    const char* names[5] = {"o", "dq", "dk", "dv", "lse"};
    int bad = 0, past = 0;  // gradients written past the fused projection's 3·H·HD columns
    if (FUSED == 2)
        for (size_t r = 0; r < (size_t)B * L; r++)
            for (int c = 3 * H * HD; c < QLD; c++) past += dqkv[r * QLD + c] != tobf(7.f);
    if (past) printf("HD %d L %d fused %d: %d gradient elements written past the projection\n", HD, L, FUSED, past), bad = 1;
    for (int w = 0; w < 5; w++) { double r = sqrt(errs[w] / norms[w]); printf("HD %d L %d OH %d fused %d rot %d %s rel %.2e\n", HD, L, OH, FUSED, ROT, names[w], r); bad |= !(r < 2e-2); }
    return bad;
}
