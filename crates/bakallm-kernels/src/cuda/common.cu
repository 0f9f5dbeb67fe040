// bakallm's own CUDA kernels, compiled at run time with NVRTC (src/kernels/nvrtc.rs) and launched on
// cubecl's stream. No headers: bf16 is handled as its bit pattern (round-to-nearest-even on store,
// as __float2bfloat16), so the same source compiles with any toolkit. All math is in f32.
// This file holds the helpers; attention.cu, tokens.cu, norm.cu, gate.cu and optim.cu follow it in
// the same NVRTC module. Each `extern "C"` kernel is instantiated per element type by the macros at
// the bottom of its file; the Rust side picks the name (`<kernel>_<float type>[_v][_<int type>]`).

typedef unsigned short bf16;
#define NEG_INF __int_as_float(0xff800000)  // no math.h under NVRTC
#define LOG2E 1.4426950408889634f

__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16* p, long long i) { return __uint_as_float(((unsigned)p[i]) << 16); }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ bf16 to_bf16(float v) {
    unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}
__device__ __forceinline__ void st(bf16* p, long long i, float v) { p[i] = to_bf16(v); }
// Two bf16 in one 32-bit word (element 2i low, 2i + 1 high): half the load/store instructions.
__device__ __forceinline__ float lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
// From sm_80 on one instruction rounds and packs both (the same rounding; a NaN becomes the
// canonical one): the flash kernels pack every probability, where the integer rounding above made
// the ALU their busiest pipe (Nsight Compute).
__device__ __forceinline__ unsigned pack(float a, float b) {
#if __CUDA_ARCH__ >= 800
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(b), "f"(a));
    return r;
#else
    return (unsigned)to_bf16(a) | ((unsigned)to_bf16(b) << 16);
#endif
}

// Programmatic dependent launch (sm_90 on; nvrtc.rs launches every kernel with it there): a
// kernel may be scheduled while the one before it in the stream still runs, so each kernel's first
// statement is GRID_DEPENDENCY(): wait until the previous grid has finished and its writes are
// visible (before any load or store, so no order between kernels changes), then let the next
// kernel's blocks be scheduled as this grid's last blocks run. Without the launch attribute, and
// before sm_90, both are no-ops.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(BAKA_EMU)
#define GRID_DEPENDENCY() asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;\n" ::: "memory")
#else
#define GRID_DEPENDENCY()
#endif

// A hint to bring the line holding p into L1 ahead of its load, holding no register meanwhile
// (norm_bwd: the warp's next row while it works on this one).
__device__ __forceinline__ void prefetch_l1(const void* p) {
#if __CUDA_ARCH__ >= 800
    asm volatile("prefetch.global.L1 [%0];\n" ::"l"(p));
#endif
}

// The instructions of sm_80 on that the flash kernels and ce_grad_rows (tokens.cu) share; the host
// picks those kernels only there. tests/kernel_emulator.rs swaps each `#if __CUDA_ARCH__ >= 800`
// body for its CPU emulation (tests/emu/emu.h).
//
// 2^x, the instruction __expf ends in too: with scores in log2 units (scale·log2 e folded in)
// each probability (flash) or softmax term (ce_grad_rows) is one FMA and this, where
// exp(s·scale − m) was three instructions.
__device__ __forceinline__ float ex2(float x) {
#if __CUDA_ARCH__ >= 800
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
#else
    __trap();
    return 0.f;
#endif
}

// The shared-state-space address of a pointer into shared memory (what ldmatrix, cp.async and the
// bulk copies take), in bytes. The kernels convert each buffer's pointer once and address tiles
// by 32-bit offsets from it: through generic pointers every ldmatrix and cp.async cost a 64-bit
// address computation and a conversion: 28% of the backward's instructions (Nsight Compute).
__device__ __forceinline__ unsigned smem(const void* p) {
    unsigned a = 0;
#if __CUDA_ARCH__ >= 800
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
#else
    __trap();
#endif
    return a;
}

// cp.async: 16 bytes global → shared without passing through registers, so a tile for the next
// iteration loads while this one computes; zeros instead where !valid. Then the group's commit
// and the wait for all groups.
__device__ __forceinline__ void cp16(unsigned dst, const bf16* src, bool valid) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_wait_all() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::);
#else
    __trap();
#endif
}
// The wait for all groups but the newest (a pipeline of two: this stage's copies, the next one's).
__device__ __forceinline__ void cp_wait_but_newest() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 1;\n" ::);
#else
    __trap();
#endif
}

// W consecutive elements moved as one access. W = 1 is the plain path; the `_v` kernels use
// 16 bytes (8 bf16 or 4 f32) per access, which the host picks where every buffer is 16-byte
// aligned and the rows are multiples of W: one-element accesses left these memory-bound kernels
// at 30–50% of the H100's bandwidth (Nsight Compute).
struct alignas(16) Word4 { unsigned x, y, z, w; };
template <typename T, int W> struct Vec;
template <typename T> struct Vec<T, 1> {
    static __device__ __forceinline__ void load(const T* p, float* v) { v[0] = ld(p, 0); }
    static __device__ __forceinline__ void store(T* p, const float* v) { st(p, 0, v[0]); }
};
template <> struct Vec<float, 4> {
    static __device__ __forceinline__ void load(const float* p, float* v) {
        Word4 r = *reinterpret_cast<const Word4*>(p);
        v[0] = __uint_as_float(r.x), v[1] = __uint_as_float(r.y), v[2] = __uint_as_float(r.z), v[3] = __uint_as_float(r.w);
    }
    static __device__ __forceinline__ void store(float* p, const float* v) {
        Word4 r;
        r.x = __float_as_uint(v[0]), r.y = __float_as_uint(v[1]), r.z = __float_as_uint(v[2]), r.w = __float_as_uint(v[3]);
        *reinterpret_cast<Word4*>(p) = r;
    }
};
template <> struct Vec<bf16, 8> {
    static __device__ __forceinline__ void load(const bf16* p, float* v) {
        Word4 r = *reinterpret_cast<const Word4*>(p);
        v[0] = lo(r.x), v[1] = hi(r.x), v[2] = lo(r.y), v[3] = hi(r.y), v[4] = lo(r.z), v[5] = hi(r.z), v[6] = lo(r.w), v[7] = hi(r.w);
    }
    static __device__ __forceinline__ void store(bf16* p, const float* v) {
        Word4 r;
        r.x = pack(v[0], v[1]), r.y = pack(v[2], v[3]), r.z = pack(v[4], v[5]), r.w = pack(v[6], v[7]);
        *reinterpret_cast<Word4*>(p) = r;
    }
};

// The row of a [rows, L] matrix this warp handles (one warp per row), −1 past the end.
__device__ __forceinline__ long long warp_row(long long rows) {
    long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    return row < rows ? row : -1;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// A block-wide max (MAX) or sum of v, valid in every thread (blockDim.x a multiple of 32).
template <bool MAX>
__device__ float block_all(float v) {
    __shared__ float part[32];
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nw = blockDim.x / 32;
    v = MAX ? warp_max(v) : warp_sum(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : (MAX ? NEG_INF : 0.f);
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();  // part is free for the next call
    return v;
}
