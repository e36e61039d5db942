// Inverted dropout (dlgpu.reference.dropout), CUDA C for the cupy backend.
//
//   y = x * (m * scale)      scale = 1 / (1 - p) in the storage dtype (0 for p == 1)
//
// With a seed the keep-mask is never stored: element i (flat C order) is kept when
//   u(seed, i) >= p,   u = top 24 bits of word (i mod 4) of Philox4x32-10(counter = i / 4, key = seed)
// so the forward draws it, the backward regenerates it, and it does not depend on the launch.
// One Philox call serves 4 consecutive elements (one thread). With an explicit mask (bool, one
// byte per element) the kernel reads it instead. The factor is 0 for dropped elements, so a dropped
// NaN/inf gives NaN and a dropped negative -0.0, as in the reference (and torch).
// Napkin math: 8 B/elem fp32 of HBM traffic (~0.27 ms per 1e8 at 3 TB/s); Philox is ~80 integer
// ops per 4 elements, under the memory time on an H100.
#include "common.cuh"

using namespace dlgpu;

__device__ __forceinline__ u32x4 philox_words(u64 seed, u64 group) {
    return philox4x32_10(u32x4{(u32)group, (u32)(group >> 32), 0u, 0u}, (u32)seed, (u32)(seed >> 32));
}

__device__ __forceinline__ u32 word(const u32x4& r, int j) { return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w; }

// Grid-stride over groups of 4 elements.
template <typename T, bool HAS_MASK>
__global__ void dropout_kernel(const T* __restrict__ x, const unsigned char* __restrict__ mask, T* __restrict__ y,
                               long long n, float p, unsigned long long seed, float scale) {
    const i64 groups = (n + 3) / 4, stride = (i64)gridDim.x * blockDim.x;
    for (i64 g = (i64)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        u32x4 r{0u, 0u, 0u, 0u};
        if (!HAS_MASK) r = philox_words(seed, (u64)g);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const i64 i = 4 * g + j;
            if (i >= n) break;
            const bool keep = HAS_MASK ? mask[i] != 0 : u32_to_unit(word(r, j)) >= p;
            y[i] = from_f32<T>(to_f32(x[i]) * (keep ? scale : 0.f));
        }
    }
}

// mask[i] = u(seed, i) >= p: the mask dropout_kernel draws (for tests and inspection)
__global__ void dropout_mask_kernel(unsigned char* __restrict__ mask, long long n, float p, unsigned long long seed) {
    const i64 groups = (n + 3) / 4, stride = (i64)gridDim.x * blockDim.x;
    for (i64 g = (i64)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        const u32x4 r = philox_words(seed, (u64)g);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const i64 i = 4 * g + j;
            if (i >= n) break;
            mask[i] = u32_to_unit(word(r, j)) >= p ? 1 : 0;
        }
    }
}
