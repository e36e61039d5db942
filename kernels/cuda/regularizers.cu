// Regularizers and gradient clipping (dlgpu.reference.regularizers), CUDA C for the cupy backend.
//
//   norm_partial_kernel   per block of RED_CHUNK elements: sum |w|, sum w^2 or max |w| (fp64)
//   norm_finish_kernel    one block sums the partials in a fixed order (bitwise reproducible) and
//                         writes the penalty (coef * sum) or, for clip_grad_norm, the total norm
//                         and the clip factor min(1, c / (total + 1e-6)) to device memory, so the
//                         scaling pass needs no host round trip
//   pointwise_kernel      coef * sign(w) (L1 backward), coef * w (L2 backward), clip(w, -c, c)
//   scale_by_kernel       g * factor[0] (clip_grad_norm)
//   max_norm_kernel       one block per neuron row: norm, then the row scaled or copied bit for bit
// NaN propagates as in the reference: through sums and max (nan_max), sign(NaN) = NaN,
// clip(NaN) = NaN, min(1, NaN) = NaN; a NaN row norm is not "> c", so max-norm leaves that row.
// Sums (and squares) are fp64: the square of an fp32/fp16/bf16 value can neither overflow nor
// underflow there, so a float32 row [1e20, 1e20] has norm 1.41e20, not inf, and [1e-30, 1e-30]
// has 1.41e-30, not 0 (the reference's norm is a scaled float64 one). Max-norm's scale and moved
// products are fp64 too, rounded once to T. HBM-bound passes, and an H100 runs fp64 at half the fp32
// rate: the fp64 arithmetic should not show there (not yet timed on a GPU).
// Napkin math: every op reads its input once (max-norm twice, the second from L2) and writes once:
// HBM-bound, ~0.1 ms per 2^26 fp32 elements read at 3 TB/s.
#include "common.cuh"

using namespace dlgpu;

enum { RED_ABS = 0, RED_SQUARE = 1, RED_MAXABS = 2 };
enum { PW_SIGN = 0, PW_SCALE = 1, PW_CLIP = 2 };
constexpr int RED_THREADS = 256, RED_CHUNK = 4096;

// ------------------------------------------------------------------ fp64 block reductions
// common.cuh's are fp32; these follow the same fixed tree (bitwise reproducible).
__device__ __forceinline__ bool is_nan_d(double x) { return x != x; }
__device__ __forceinline__ double nan_max_d(double a, double b) { return (a > b || is_nan_d(a)) ? a : b; }

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_max_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = nan_max_d(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// every thread of the block gets the result; scratch: 32 doubles of shared memory
__device__ __forceinline__ double block_reduce_d(double v, double* scratch, bool is_max) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = is_max ? warp_max_d(v) : warp_sum_d(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;  // 0 is the identity of both: every term is >= 0
    return is_max ? warp_max_d(v) : warp_sum_d(v);
}

__device__ __forceinline__ double reduce_term(double v, int kind) {
    return kind == RED_SQUARE ? v * v : fabs(v);
}
__device__ __forceinline__ double combine(double a, double b, int kind) {
    return kind == RED_MAXABS ? nan_max_d(a, b) : a + b;
}

// part[blockIdx.x] = the reduction of x[b RED_CHUNK, (b + 1) RED_CHUNK); RED_THREADS threads
template <typename T>
__global__ void __launch_bounds__(RED_THREADS)
norm_partial_kernel(const T* __restrict__ x, double* __restrict__ part, long long n, int kind) {
    __shared__ double scratch[32];
    const i64 base = (i64)blockIdx.x * RED_CHUNK;
    double acc = 0.0;  // |w| and w^2 are >= 0, so 0 is also max's identity (the reference's initial=0)
    for (int e = threadIdx.x; e < RED_CHUNK; e += RED_THREADS) {
        const i64 i = base + e;
        if (i >= n) break;
        acc = combine(acc, reduce_term((double)to_f32(x[i]), kind), kind);
    }
    acc = block_reduce_d(acc, scratch, kind == RED_MAXABS);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// One block (blockDim a multiple of 32). total = the reduction of part[0..m) (sqrt for RED_SQUARE
// when `root`), in fp64, then rounded to fp32. out[0] = T(coef * total). With factor != nullptr
// (clip_grad_norm): factor[0] = min(1, c / (total + eps)) computed in T, NaN propagating.
template <typename T>
__global__ void norm_finish_kernel(const double* __restrict__ part, long long m, int kind, int root, float coef,
                                   T* __restrict__ out, float* __restrict__ factor, float c, float eps) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < m; i += blockDim.x) acc = combine(acc, part[i], kind);
    acc = block_reduce_d(acc, scratch, kind == RED_MAXABS);
    if (threadIdx.x != 0) return;
    const float total = (float)(root ? sqrt(acc) : acc);  // a norm past fp32's range is inf from here on
    out[0] = from_f32<T>(coef * total);
    if (factor != nullptr) {
        // every step rounded to T, as the reference computes min(1, c / (total + eps)) in T
        const float f = round_to<T>(round_to<T>(c) / round_to<T>(round_to<T>(total) + round_to<T>(eps)));
        factor[0] = (f < 1.f || is_nan(f)) ? f : 1.f;
    }
}

template <typename T>
__global__ void pointwise_kernel(const T* __restrict__ w, T* __restrict__ out, long long n, float coef, int kind) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = to_f32(w[i]);
        float r;
        if (kind == PW_SIGN) {
            r = coef * (v > 0.f ? 1.f : (v < 0.f ? -1.f : v));  // sign: 0 at 0, NaN kept
        } else if (kind == PW_SCALE) {
            r = coef * v;
        } else {
            r = v < -coef ? -coef : (v > coef ? coef : v);  // NaN fails both tests and passes through
        }
        out[i] = from_f32<T>(r);
    }
}

template <typename T>
__global__ void scale_by_kernel(const T* __restrict__ g, T* __restrict__ out, long long n,
                                const float* __restrict__ factor) {
    const float f = factor[0];
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = from_f32<T>(to_f32(g[i]) * f);
}

// Row r = blockIdx.x of w [rows, cols]: ||w_r|| > c ? w_r * (c / ||w_r||) : w_r (copied bit for bit).
// The norm, the factor and each product in fp64, the product rounded once to T (as the reference).
template <typename T>
__global__ void max_norm_kernel(const T* __restrict__ w, T* __restrict__ out, long long cols, float c) {
    __shared__ double scratch[32];
    const T* wr = w + (i64)blockIdx.x * cols;
    T* orow = out + (i64)blockIdx.x * cols;
    double s = 0.0;
    for (i64 k = threadIdx.x; k < cols; k += blockDim.x) {
        const double v = to_f32(wr[k]);
        s += v * v;
    }
    const double norm = sqrt(block_reduce_d(s, scratch, false));
    if (norm > (double)c) {
        const double f = (double)c / norm;
        for (i64 k = threadIdx.x; k < cols; k += blockDim.x)
            orow[k] = from_f32<T>(round_from<T>((double)to_f32(wr[k]) * f));
    } else {
        for (i64 k = threadIdx.x; k < cols; k += blockDim.x) orow[k] = wr[k];
    }
}
