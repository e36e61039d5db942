// Shared device helpers for every kernels/cuda/*.cu file: storage types, fp32 conversions,
// the fused-epilogue activations, warp/block reductions, Philox.
//
// NVRTC-compatible: includes only CUDA headers NVRTC can see (cuda_fp16.h, cuda_bf16.h), no host
// std headers. Conversions are explicit intrinsics only, so the sources compile with or without
// -D__CUDA_NO_HALF_CONVERSIONS__ / -D__CUDA_NO_BFLOAT16_CONVERSIONS__ (the loaders pass both: CuPy
// ships its own fp16 header, which otherwise clashes with the toolkit's bf16 one).
// The Python loader inlines every #include "*.cuh" before compiling (kernels/cuda/_common.py), so a
// changed header always changes the source CuPy hashes for its compile cache.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace dlgpu {

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

// ------------------------------------------------------------------ conversions
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(double x) { return (float)x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_f32<double>(float x) { return (double)x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// round x to T's precision and back: the reference computes some intermediates in the storage dtype
template <typename T> __device__ __forceinline__ float round_to(float x) { return to_f32(from_f32<T>(x)); }
// A value of any storage type rounded once to T's precision, as float: a double goes straight to
// T (numpy's astype), not through float first (a second rounding, 1 ulp off where it ties).
template <typename T> __device__ __forceinline__ float round_from(float x) { return round_to<T>(x); }
template <typename T> __device__ __forceinline__ float round_from(__half x) { return round_to<T>(to_f32(x)); }
template <typename T> __device__ __forceinline__ float round_from(__nv_bfloat16 x) { return round_to<T>(to_f32(x)); }
template <typename T> __device__ __forceinline__ float round_from(double x);
template <> __device__ __forceinline__ float round_from<float>(double x) { return (float)x; }
template <> __device__ __forceinline__ float round_from<__half>(double x) { return __half2float(__double2half(x)); }
template <> __device__ __forceinline__ float round_from<__nv_bfloat16>(double x) {
    return __bfloat162float(__double2bfloat16(x));
}

template <typename T> struct is_f32 { static constexpr bool value = false; };
template <> struct is_f32<float> { static constexpr bool value = true; };

// ------------------------------------------------------------------ activations
// Codes shared with the Python loaders (ACTIVATION_CODES in _common.py).
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_LEAKY_RELU = 2, ACT_SIGMOID = 3, ACT_TANH = 4 };

__device__ __forceinline__ bool is_nan(float x) { return x != x; }

// +inf without <math.h>'s INFINITY (NVRTC has no host headers)
__device__ __forceinline__ float inf_f() { return __int_as_float(0x7f800000); }

// sigmoid without overflow: exp's argument is always <= 0
__device__ __forceinline__ float sigmoid_f(float x) {
    const float e = expf(-fabsf(x));
    return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}

// act(z); relu keeps NaN (np.maximum propagates it), leaky: z > 0 ? z : slope z
template <int ACT> __device__ __forceinline__ float act_fwd(float z, float slope) {
    if constexpr (ACT == ACT_RELU) {
        return z < 0.f ? 0.f : z;
    } else if constexpr (ACT == ACT_LEAKY_RELU) {
        return z > 0.f ? z : z * slope;
    } else if constexpr (ACT == ACT_SIGMOID) {
        return sigmoid_f(z);
    } else if constexpr (ACT == ACT_TANH) {
        return tanhf(z);
    } else {
        return z;
    }
}

// dz = dy * act'(z), from the activation's OUTPUT y (relu/leaky keep the sign of z for slope > 0)
template <int ACT> __device__ __forceinline__ float act_bwd(float dy, float y, float slope) {
    if constexpr (ACT == ACT_RELU) {
        return y > 0.f ? dy : 0.f;
    } else if constexpr (ACT == ACT_LEAKY_RELU) {
        return y > 0.f ? dy : dy * slope;
    } else if constexpr (ACT == ACT_SIGMOID) {
        return dy * y * (1.f - y);
    } else if constexpr (ACT == ACT_TANH) {
        return dy * (1.f - y * y);
    } else {
        return dy;
    }
}

// the same with the activation a runtime code (a warp-uniform switch: fewer instantiations)
__device__ __forceinline__ float act_fwd_rt(int act, float z, float slope) {
    switch (act) {
        case ACT_RELU: return act_fwd<ACT_RELU>(z, slope);
        case ACT_LEAKY_RELU: return act_fwd<ACT_LEAKY_RELU>(z, slope);
        case ACT_SIGMOID: return act_fwd<ACT_SIGMOID>(z, slope);
        case ACT_TANH: return act_fwd<ACT_TANH>(z, slope);
        default: return z;
    }
}
__device__ __forceinline__ float act_bwd_rt(int act, float dy, float y, float slope) {
    switch (act) {
        case ACT_RELU: return act_bwd<ACT_RELU>(dy, y, slope);
        case ACT_LEAKY_RELU: return act_bwd<ACT_LEAKY_RELU>(dy, y, slope);
        case ACT_SIGMOID: return act_bwd<ACT_SIGMOID>(dy, y, slope);
        case ACT_TANH: return act_bwd<ACT_TANH>(dy, y, slope);
        default: return dy;
    }
}

// ------------------------------------------------------------------ reductions
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// max that propagates NaN (as np.max)
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || is_nan(a)) ? a : b; }

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, <= 1024); every thread gets the result.
// scratch: 32 floats of shared memory; the tree is fixed, so the result is bitwise reproducible.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -inf_f();
    return warp_max(v);
}

// ------------------------------------------------------------------ Philox4x32-10
// Counter-based RNG (Salmon et al. 2011): 4 random u32 words from a 128-bit counter and a 64-bit key.
struct u32x4 { u32 x, y, z, w; };

__device__ __forceinline__ u32x4 philox4x32_10(u32x4 c, u32 k0, u32 k1) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        const u32 hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        const u32 hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = u32x4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

// uniform in [0, 1) with 24 random bits (exactly representable in fp32)
__device__ __forceinline__ float u32_to_unit(u32 v) { return (float)(v >> 8) * (1.0f / 16777216.0f); }

}  // namespace dlgpu
