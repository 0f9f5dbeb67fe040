// CPU emulation of the CUDA subset bakallm's kernels use (tests/kernel_emulator.rs): one
// block at a time, one std::thread per CUDA thread, barriers for __syncthreads and the
// warp-synchronous ops. The tensor-core and shared-memory instructions are emulated from the PTX
// ISA's definitions of their fragment layouts; the test swaps each `#if __CUDA_ARCH__ >= 800`
// body of cuda/common.cu, cuda/flash_tiles.cu and cuda/glu_gemm.cu for the EMU_<function> macro below.
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define BAKA_EMU 1  // common.cu: no griddepcontrol
struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
using std::max;
using std::min;
inline void __trap() { abort(); }
inline std::barrier<>* block_bar;
inline std::barrier<>* warp_bar[32];
inline void __syncthreads() { block_bar->arrive_and_wait(); }
inline float shfl_buf[32][32];
inline float __shfl_xor_sync(unsigned, float v, int o) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    shfl_buf[w][l] = v;
    warp_bar[w]->arrive_and_wait();
    float r = shfl_buf[w][l ^ o];
    warp_bar[w]->arrive_and_wait();
    return r;
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline void __syncwarp(unsigned = 0xffffffffu) { warp_bar[threadIdx.x / 32]->arrive_and_wait(); }
inline unsigned mma_a[32][32][4], mma_b[32][32][2];
inline float bfv(unsigned short h) { return __uint_as_float(((unsigned)h) << 16); }
// mma.m16n8k16.row.col bf16 → f32, from the PTX ISA fragment layouts.
inline void emu_mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    for (int i = 0; i < 4; i++) mma_a[w][l][i] = a[i];
    mma_b[w][l][0] = b0, mma_b[w][l][1] = b1;
    warp_bar[w]->arrive_and_wait();
    auto A = [&](int r, int k) {  // element (row r, col k)
        int g = r % 8, t = (k % 8) / 2, reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        unsigned word = mma_a[w][g * 4 + t][reg];
        return bfv(k % 2 ? word >> 16 : word & 0xffff);
    };
    auto B = [&](int k, int n) {
        int t = (k % 8) / 2, reg = k >= 8 ? 1 : 0;
        unsigned word = mma_b[w][n * 4 + t][reg];
        return bfv(k % 2 ? word >> 16 : word & 0xffff);
    };
    int g = l / 4, t = l % 4;
    for (int e = 0; e < 4; e++) {
        int r = g + (e >= 2 ? 8 : 0), n = 2 * t + (e & 1);
        float s = 0;
        for (int k = 0; k < 16; k++) s += A(r, k) * B(k, n);
        c[e] += s;
    }
    warp_bar[w]->arrive_and_wait();
}
// Runs kernel(args...) over grid (gx, gy) with `threads` threads per block.
template <typename F>
void launch(F f, unsigned gx, unsigned gy, unsigned threads) {
    gridDim = {gx, gy, 1}, blockDim = {threads, 1, 1};
    std::barrier<> bb(threads);
    block_bar = &bb;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    for (unsigned w = 0; w < threads / 32; w++) warps.emplace_back(new std::barrier<>(32)), warp_bar[w] = warps.back().get();
    for (unsigned y = 0; y < gy; y++)
        for (unsigned x = 0; x < gx; x++) {
            std::vector<std::thread> ts;
            for (unsigned i = 0; i < threads; i++)
                ts.emplace_back([&, i, x, y] { threadIdx = {i, 0, 0}; blockIdx = {x, y, 0}; f(); });
            for (auto& t : ts) t.join();
        }
}
inline const unsigned short* ldsm_p[32][32];
// Shared-memory addresses (smem's 32-bit ones) are the low half of the arrays' addresses, so
// they keep their alignment (the 128-byte swizzle works on address bits); the high half is every
// static's. The last one this thread took (a kernel takes its shared base once) places wgmma's
// 18-bit descriptor addresses (emu_wg_elem).
inline char emu_anchor;
inline thread_local unsigned emu_smem_last;
inline unsigned emu_saddr(const void* p) {
    if ((uintptr_t)p >> 32 != (uintptr_t)&emu_anchor >> 32) {
        printf("shared array %p: not in the 4 GiB of the program's statics\n", p);
        abort();
    }
    return emu_smem_last = (unsigned)(uintptr_t)p;
}
template <typename T>
T* emu_sptr(unsigned a) { return (T*)((uintptr_t)&emu_anchor >> 32 << 32 | a); }
// What the GPU faults on: a 16-byte copy or bulk operation off 16-byte alignment, or a size not a
// multiple of 16.
inline void emu_aligned(const void* a, const void* b, int bytes, const char* what) {
    if ((uintptr_t)a % 16 || (uintptr_t)b % 16 || bytes % 16) {
        printf("%s: %p, %p, %d bytes: not 16-byte aligned\n", what, a, b, bytes);
        abort();
    }
}
// ldmatrix.x4 (trans: of the transposed matrices)
inline void emu_ldsm(unsigned* r, const unsigned short* p, bool trans) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    ldsm_p[w][l] = p;
    warp_bar[w]->arrive_and_wait();
    int row = l / 4, col = 2 * (l % 4);
    for (int m = 0; m < 4; m++) {
        unsigned short e[2];
        for (int k = 0; k < 2; k++) e[k] = trans ? ldsm_p[w][m * 8 + col + k][row] : ldsm_p[w][m * 8 + row][col + k];
        r[m] = (unsigned)e[0] | ((unsigned)e[1] << 16);
    }
    warp_bar[w]->arrive_and_wait();
}

// The bodies of the instruction wrappers in common.cu and flash_tiles.cu (their `#if __CUDA_ARCH__ >= 800`
// blocks; pack's is its own non-sm_80 branch, which the swap drops with the rest).
#define EMU_mma16816 emu_mma(c, a, b0, b1);
#define EMU_prefetch_l1
#define EMU_prefetch_l2
#define EMU_pack return (unsigned)to_bf16(a) | ((unsigned)to_bf16(b) << 16);
#define EMU_ex2 return exp2f(x);
#define EMU_smem a = emu_saddr(p);
#define EMU_ldsm4 emu_ldsm(r, emu_sptr<const unsigned short>(a), false);
#define EMU_ldsm4_t emu_ldsm(r, emu_sptr<const unsigned short>(a), true);
#define EMU_cp16 emu_aligned(emu_sptr<char>(dst), src, 16, "cp.async"); if (valid) memcpy(emu_sptr<char>(dst), src, 16); else memset(emu_sptr<char>(dst), 0, 16);
#define EMU_cp4 if (valid) memcpy(emu_sptr<char>(dst), src, 4); else memset(emu_sptr<char>(dst), 0, 4);
#define EMU_cp_commit
#define EMU_cp_wait_all
#define EMU_cp_wait_but_newest
// sm_90's bulk reduction (built with -D__CUDA_ARCH__=900): the rows added at once when issued.
// Being synchronous, the emulation cannot catch a missing fence or wait; it checks alignment.
#define EMU_fence_async
#define EMU_bulk_add emu_aligned(dst, emu_sptr<const float>(src), bytes, "bulk reduction"); for (int i = 0; i < bytes / 4; i++) std::atomic_ref<float>(dst[i]).fetch_add(emu_sptr<const float>(src)[i]);
#define EMU_bulk_commit
#define EMU_bulk_wait_read

// wgmma.mma_async m64nNk16 (N = 64 or 128), bf16 → f32 (sm_90a: the head-dim-64 flash kernels,
// glu_bwd_gemm), from the PTX ISA: each warpgroup (128 threads of the block, all issuing together)
// computes D (64 × N) = (acc ? D : 0) + A (64 × 16) · B (16 × N). D, and A when it comes from
// registers, as four warps' mma.m16n8k16 fragments (warp w of the warpgroup: rows 16w..); A
// otherwise, and B, from shared memory by descriptor with the 128-byte swizzle: K-major (element
// (mn, k) at start + 128·mn + 2k) or MN-major (at start + 128·k + 2·mn), groups of 8 rows the
// descriptor's stride apart, the address's bits 4–6 XOR its bits 7–9. Computed at issue: the
// emulation cannot catch a missing fence or wait.
inline unsigned wg_a[256][4];
inline float emu_wg_elem(unsigned long long desc, int mn, int k, int mn_major) {
    unsigned start = (emu_smem_last & ~0x3ffffu) | (unsigned)(desc & 0x3fff) << 4, sbo = (unsigned)((desc >> 32) & 0x3fff) << 4;
    if (start < emu_smem_last) start += 0x40000;  // operands lie at or after the kernel's shared base
    if (desc >> 62 != 1 || sbo != 1024) {
        printf("wgmma descriptor %llx: expected the 128-byte swizzle with 1,024-byte groups\n", desc);
        abort();
    }
    int row = mn_major ? k : mn, col = mn_major ? mn : k;
    unsigned a = start + (row / 8) * sbo + (row % 8) * 128 + 2 * col;
    a ^= ((a >> 7) & 7) << 4;
    return bfv(*emu_sptr<const unsigned short>(a));
}
inline void emu_wgmma(float* d, unsigned long long adesc, unsigned long long bdesc, int acc, int ta, int tb, const unsigned* areg, int N = 64) {
    if (blockDim.x % 128 || blockDim.x > 256) {
        printf("wgmma: the emulation takes blocks of one or two warpgroups, not %u threads\n", blockDim.x);
        abort();
    }
    int tid = threadIdx.x, base = tid / 128 * 128, w = tid % 128 / 32, g = tid % 32 / 4, t = tid % 4;
    if (areg)
        for (int i = 0; i < 4; i++) wg_a[tid][i] = areg[i];
    block_bar->arrive_and_wait();
    auto A = [&](int m, int k) {
        if (!areg) return emu_wg_elem(adesc, m, k, ta);
        int rr = m % 16, reg = (rr >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        unsigned word = wg_a[base + (m / 16) * 32 + (rr % 8) * 4 + (k % 8) / 2][reg];
        return bfv(k % 2 ? word >> 16 : word & 0xffff);
    };
    for (int i = 0; i < N / 8; i++)
        for (int e = 0; e < 4; e++) {
            int m = 16 * w + g + (e >= 2 ? 8 : 0), n = 8 * i + 2 * t + (e & 1);
            float s = 0.f;
            for (int k = 0; k < 16; k++) s += A(m, k) * emu_wg_elem(bdesc, n, k, tb);
            d[4 * i + e] = (acc ? d[4 * i + e] : 0.f) + s;
        }
    block_bar->arrive_and_wait();
}
#define EMU_wg_hold
#define EMU_wg_fence
#define EMU_wg_commit
#define EMU_wg_wait
#define EMU_wgmma_ss emu_wgmma(d, a, b, acc, TA, TB, nullptr);
#define EMU_wgmma_rs emu_wgmma(d, 0, b, acc, 0, TB, a);
#define EMU_wgmma_n128 emu_wgmma(d, a, b, acc, 0, 0, nullptr, 128);
