// Activations, forward and backward (dlgpu.reference.activations), CUDA C for the cupy backend.
//
// Elementwise ops: one grid-stride kernel per direction, the activation a template code
// (ACT_RELU .. ACT_TANH from common.cuh, SOFTPLUS here). Arithmetic in fp32, storage T.
// Napkin math: forward 2 accesses per element, backward 3; < 1 flop/byte, so HBM-bound:
// 1e8 fp32 elements forward ~0.27 ms at 3 TB/s.
//
// Softmax / log-softmax over one axis of a contiguous array viewed as [outer, K, inner]:
//   MODE_WARP  (inner == 1, K <= 1024): one warp per row, shuffles only;
//   MODE_BLOCK (inner == 1, K > 1024): one block per row, block reductions;
//   MODE_COL   (inner > 1): one thread per (outer, inner) column, consecutive threads on
//              consecutive inner positions (coalesced), K walked with stride inner.
// Three passes over a row (max, sum of exp, write); the 2nd and 3rd reads hit L1/L2.
// NaN anywhere in a row makes the whole row NaN, as the reference's max shift does.
#include "common.cuh"

using namespace dlgpu;

enum { SOFTPLUS = 5 };
enum { MODE_WARP = 0, MODE_BLOCK = 1, MODE_COL = 2 };

template <int ACT> __device__ __forceinline__ float ew_fwd(float x, float slope) {
    if constexpr (ACT == SOFTPLUS) {
        return (x > 0.f ? x : 0.f) + log1pf(expf(-fabsf(x)));  // NaN: log1pf(NaN) = NaN
    } else {
        return act_fwd<ACT>(x, slope);
    }
}

// s is the forward's input (relu, leaky_relu, softplus) or output (sigmoid, tanh)
template <int ACT> __device__ __forceinline__ float ew_bwd(float g, float s, float slope) {
    if constexpr (ACT == SOFTPLUS) {
        return g * sigmoid_f(s);
    } else {
        return act_bwd<ACT>(g, s, slope);
    }
}

template <typename T, int ACT>
__global__ void act_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, long long n, float slope) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = from_f32<T>(ew_fwd<ACT>(to_f32(x[i]), slope));
}

template <typename T, int ACT>
__global__ void act_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ s, T* __restrict__ dx, long long n,
                               float slope) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dx[i] = from_f32<T>(ew_bwd<ACT>(to_f32(dy[i]), to_f32(s[i]), slope));
}

// ------------------------------------------------------------------ softmax
// Reduction over a "row group": a warp (MODE_WARP) or the whole block (MODE_BLOCK).
template <int MODE> __device__ __forceinline__ float group_sum(float v, float* scratch) {
    if constexpr (MODE == MODE_WARP) {
        return warp_sum(v);
    } else {
        return block_sum(v, scratch);
    }
}
template <int MODE> __device__ __forceinline__ float group_max(float v, float* scratch) {
    if constexpr (MODE == MODE_WARP) {
        return warp_max(v);
    } else {
        return block_max(v, scratch);
    }
}

// Row r of the group this thread belongs to, its lane and the group width. Returns false past the
// last row (a warp-uniform condition, so shuffles stay converged; block mode has exactly rows blocks).
template <int MODE>
__device__ __forceinline__ bool row_of(i64 rows, i64& r, int& lane, int& width) {
    if constexpr (MODE == MODE_WARP) {
        r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
        lane = threadIdx.x & 31;
        width = 32;
    } else {
        r = blockIdx.x;
        lane = threadIdx.x;
        width = blockDim.x;
    }
    return r < rows;
}

// y = softmax (or log-softmax) of x over K. Rows mode: grid = row groups; column mode: one
// thread per (outer, inner) pair, rows = outer * inner.
template <typename T, bool LOG, int MODE>
__global__ void softmax_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, long long rows, long long K,
                                   long long inner) {
    __shared__ float scratch[32];
    if constexpr (MODE == MODE_COL) {
        const i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x;  // (outer, inner) column
        if (c >= rows) return;
        const i64 base = (c / inner) * K * inner + (c % inner);
        float m = -inf_f();
        for (i64 k = 0; k < K; ++k) m = nan_max(m, to_f32(x[base + k * inner]));
        float s = 0.f;
        for (i64 k = 0; k < K; ++k) s += expf(to_f32(x[base + k * inner]) - m);
        const float ls = logf(s);
        for (i64 k = 0; k < K; ++k) {
            const float z = to_f32(x[base + k * inner]) - m;
            y[base + k * inner] = from_f32<T>(LOG ? z - ls : expf(z) / s);
        }
    } else {
        i64 r;
        int lane, width;
        if (!row_of<MODE>(rows, r, lane, width)) return;
        const T* xr = x + r * K;
        T* yr = y + r * K;
        float m = -inf_f();
        for (i64 k = lane; k < K; k += width) m = nan_max(m, to_f32(xr[k]));
        m = group_max<MODE>(m, scratch);
        float s = 0.f;
        for (i64 k = lane; k < K; k += width) s += expf(to_f32(xr[k]) - m);
        s = group_sum<MODE>(s, scratch);
        const float ls = logf(s);
        for (i64 k = lane; k < K; k += width) {
            const float z = to_f32(xr[k]) - m;
            yr[k] = from_f32<T>(LOG ? z - ls : expf(z) / s);
        }
    }
}

// softmax:     dx = y * (dy - sum_j dy_j y_j)
// log-softmax: dx = dy - exp(y) * sum_j dy_j
template <typename T, bool LOG, int MODE>
__global__ void softmax_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                   long long rows, long long K, long long inner) {
    __shared__ float scratch[32];
    if constexpr (MODE == MODE_COL) {
        const i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x;
        if (c >= rows) return;
        const i64 base = (c / inner) * K * inner + (c % inner);
        float t = 0.f;
        for (i64 k = 0; k < K; ++k) {
            const i64 o = base + k * inner;
            t += LOG ? to_f32(dy[o]) : to_f32(dy[o]) * to_f32(y[o]);
        }
        for (i64 k = 0; k < K; ++k) {
            const i64 o = base + k * inner;
            const float g = to_f32(dy[o]), v = to_f32(y[o]);
            dx[o] = from_f32<T>(LOG ? g - expf(v) * t : v * (g - t));
        }
    } else {
        i64 r;
        int lane, width;
        if (!row_of<MODE>(rows, r, lane, width)) return;
        const T* gr = dy + r * K;
        const T* yr = y + r * K;
        T* dr = dx + r * K;
        float t = 0.f;
        for (i64 k = lane; k < K; k += width) t += LOG ? to_f32(gr[k]) : to_f32(gr[k]) * to_f32(yr[k]);
        t = group_sum<MODE>(t, scratch);
        for (i64 k = lane; k < K; k += width) {
            const float g = to_f32(gr[k]), v = to_f32(yr[k]);
            dr[k] = from_f32<T>(LOG ? g - expf(v) * t : v * (g - t));
        }
    }
}
