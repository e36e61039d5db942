// Losses fused with their gradient (dlgpu.reference.losses), CUDA C for the cupy backend.
//
// Every *_forward is one pass over the scores that writes the gradient (already scaled for the
// reduction) and the loss together:
//   elementwise_loss_kernel  7 elementwise losses (runtime `which`), each block a fixed chunk of
//                            EW_CHUNK elements: per-element losses ("none") or one fp32 partial sum
//                            per block; target in its own float type TT, cast to T inside (as the
//                            reference casts it) after the value checks ran on the raw target.
//   class_loss_kernel        cross-entropy (stable: max shift), multiclass hinge / squared hinge;
//                            one warp per row (K <= 1024) or one block per row.
//   sum_finish_kernel        the partials (or per-row losses) summed by one block in a fixed
//                            order, times 1/n for "mean": the loss's bits never depend on timing.
//   loss_bwd_kernel          dinput = grad_output * grad_input (scalar, per element, or per row).
// Invalid values (labels not +-1, probabilities outside [0, 1], class indices outside [0, K)) are
// counted into `bad` instead of read past; the loader then raises the reference's error.
// Napkin math: elementwise reads y and t, writes grad (and loss): 12-16 B per fp32 element,
// ~0.3 ms per 2^26 elements at 3 TB/s. Cross-entropy reads a row up to three times (from L1/L2
// after the first) and writes it once.
#include "common.cuh"

using namespace dlgpu;

enum { HINGE = 0, SQUARED_HINGE = 1, BCE = 2, BCE_LOGITS = 3, MSE = 4, L1 = 5, PSEUDO_HUBER = 6 };
enum { CROSS_ENTROPY = 0, MULTI_HINGE = 1, MULTI_SQUARED_HINGE = 2 };
enum { MODE_WARP = 0, MODE_BLOCK = 1 };
constexpr int EW_THREADS = 256, EW_PER_THREAD = 16, EW_CHUNK = EW_THREADS * EW_PER_THREAD;

__device__ __forceinline__ double to_f64(float x) { return x; }
__device__ __forceinline__ double to_f64(double x) { return x; }
__device__ __forceinline__ double to_f64(__half x) { return __half2float(x); }
__device__ __forceinline__ double to_f64(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ bool unit(double v) { return v >= 0.0 && v <= 1.0; }  // NaN fails

// Block b covers elements [b EW_CHUNK, (b + 1) EW_CHUNK); launch with EW_THREADS threads.
// loss != nullptr: per-element losses; else part[b] = the block's fp32 loss sum.
template <typename T, typename TT>
__global__ void __launch_bounds__(EW_THREADS)
elementwise_loss_kernel(const T* __restrict__ y, const TT* __restrict__ t, T* __restrict__ loss,
                        float* __restrict__ part, T* __restrict__ grad, int* __restrict__ bad, long long n,
                        float scale, float delta, int which) {
    __shared__ float scratch[32];
    const i64 base = (i64)blockIdx.x * EW_CHUNK;
    float acc = 0.f;
    int nbad = 0;
    for (int e = threadIdx.x; e < EW_CHUNK; e += EW_THREADS) {
        const i64 i = base + e;
        if (i >= n) break;
        const float x = to_f32(y[i]);
        const double raw = to_f64(t[i]);
        const float tv = round_from<T>(t[i]);  // the reference's cast of target to input's dtype
        float l, g;
        switch (which) {
            case HINGE:
            case SQUARED_HINGE: {
                const float z = 1.f - x * tv, h = z <= 0.f ? 0.f : z;  // max(z, 0) keeping NaN
                l = which == HINGE ? h : h * h;
                g = which == HINGE ? (z > 0.f ? -tv : 0.f) : -2.f * tv * h;
                nbad += raw != 1.0 && raw != -1.0;
                break;
            }
            case BCE: {
                const float ly = fmaxf(logf(x), -100.f), l1 = fmaxf(log1pf(-x), -100.f);
                l = -(tv * ly + (1.f - tv) * l1);
                g = (x - tv) / fmaxf(x * (1.f - x), 1e-12f);
                nbad += !(unit(raw) && unit((double)x));
                break;
            }
            case BCE_LOGITS: {
                const float e1 = expf(-fabsf(x));  // in [0, 1]: finite for any logit
                // max(x, 0) - x t as |x| (1 - t) or |x| t: a zero weight gives 0 even at x = +-inf
                // (the limit), not inf * 0 = NaN
                const float w = x > 0.f ? 1.f - tv : tv;
                l = (w == 0.f ? 0.f : fabsf(x)) * w + log1pf(e1);
                g = (x >= 0.f ? 1.f / (1.f + e1) : e1 / (1.f + e1)) - tv;
                nbad += !unit(raw);
                break;
            }
            case MSE: {
                const float d = x - tv;
                l = d * d;
                g = 2.f * d;
                break;
            }
            case L1: {
                const float d = x - tv;
                l = fabsf(d);
                g = d > 0.f ? 1.f : (d < 0.f ? -1.f : d);  // sign, 0 at d = 0, NaN kept
                break;
            }
            default: {  // PSEUDO_HUBER: the reference's overflow-free form, u = min(a, delta) / max(a, delta)
                const float d = x - tv, a = fabsf(d);
                const bool small = a <= delta;  // false for NaN: the second branch, NaN throughout
                const float mn = small ? a : delta, u = mn / (small ? delta : a);  // divisor >= delta > 0
                const float s = sqrtf(1.f + u * u);
                l = mn * (a / (s + (small ? 1.f : u)));  // a (a / (1 + s)) or delta (a / (s + u))
                const float gm = mn / s;  // |d| / s or delta / s, signed as d (d itself at 0 and NaN)
                g = d > 0.f ? gm : (d < 0.f ? -gm : d);
            }
        }
        grad[i] = from_f32<T>(g * scale);
        if (loss != nullptr) {
            loss[i] = from_f32<T>(l);
        } else {
            acc += l;
        }
    }
    if (loss == nullptr) {
        acc = block_sum(acc, scratch);
        if (threadIdx.x == 0) part[blockIdx.x] = acc;
    }
    if (nbad) atomicAdd(bad, nbad);
}

// ------------------------------------------------------------------ K-class losses
template <int MODE> __device__ __forceinline__ float group_sum(float v, float* s) {
    if constexpr (MODE == MODE_WARP) { return warp_sum(v); } else { return block_sum(v, s); }
}
template <int MODE> __device__ __forceinline__ float group_max(float v, float* s) {
    if constexpr (MODE == MODE_WARP) { return warp_max(v); } else { return block_max(v, s); }
}

// max(0, 1 - (y_t - y_j)) for j != t (0 for j == t), NaN kept
__device__ __forceinline__ float margin(float yt, float yj, bool is_t) {
    const float z = 1.f - (yt - yj);
    return is_t ? 0.f : (z <= 0.f ? 0.f : z);
}

// y [N, K], t [N]; per-row loss to rows_t (T, "none") or rows_f (fp32, to be summed).
// MODE_WARP: blockDim/32 rows per block; MODE_BLOCK: one row per block.
template <typename T, typename I, int MODE>
__global__ void class_loss_kernel(const T* __restrict__ y, const I* __restrict__ t, T* __restrict__ rows_t,
                                  float* __restrict__ rows_f, T* __restrict__ grad, int* __restrict__ bad, long long N,
                                  long long K, float scale, int which) {
    __shared__ float scratch[32];
    i64 r;
    int lane, width;
    if constexpr (MODE == MODE_WARP) {
        r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
        lane = threadIdx.x & 31;
        width = 32;
        if (r >= N) return;  // whole warps leave together
    } else {
        r = blockIdx.x;
        lane = threadIdx.x;
        width = blockDim.x;
    }
    const T* yr = y + r * K;
    T* gr = grad + r * K;
    const i64 tr_raw = (i64)t[r];
    const bool valid = tr_raw >= 0 && tr_raw < K;
    if (!valid && lane == 0) atomicAdd(bad, 1);
    const i64 tr = valid ? tr_raw : -1;  // an invalid row computes garbage, never reads past the row
    const float yt = valid ? to_f32(yr[tr]) : 0.f;
    float loss;
    if (which == CROSS_ENTROPY) {
        float m = -inf_f();
        for (i64 k = lane; k < K; k += width) m = nan_max(m, to_f32(yr[k]));
        m = group_max<MODE>(m, scratch);
        float s = 0.f;
        for (i64 k = lane; k < K; k += width) s += expf(to_f32(yr[k]) - m);
        s = group_sum<MODE>(s, scratch);
        for (i64 k = lane; k < K; k += width)
            gr[k] = from_f32<T>((expf(to_f32(yr[k]) - m) / s - (k == tr ? 1.f : 0.f)) * scale);
        loss = logf(s) - (yt - m);
    } else {
        const bool sq = which == MULTI_SQUARED_HINGE;
        float l = 0.f, gsum = 0.f;
        for (i64 k = lane; k < K; k += width) {
            const float h = margin(yt, to_f32(yr[k]), k == tr);
            l += sq ? h * h : h;
            gsum += sq ? 2.f * h : (h > 0.f ? 1.f : 0.f);
        }
        loss = group_sum<MODE>(l, scratch);
        gsum = group_sum<MODE>(gsum, scratch);
        for (i64 k = lane; k < K; k += width) {
            const float h = margin(yt, to_f32(yr[k]), k == tr);
            const float g = k == tr ? -gsum : (sq ? 2.f * h : (h > 0.f ? 1.f : 0.f));
            gr[k] = from_f32<T>(g * scale);
        }
    }
    if (lane == 0) {
        if (rows_t != nullptr) {
            rows_t[r] = from_f32<T>(loss);
        } else {
            rows_f[r] = loss;
        }
    }
}

// out[0] = T(scale * sum(part[0..m))) by one block (blockDim a multiple of 32), fixed order.
template <typename T>
__global__ void sum_finish_kernel(const float* __restrict__ part, T* __restrict__ out, long long m, float scale) {
    __shared__ float scratch[32];
    float acc = 0.f;
    for (i64 i = threadIdx.x; i < m; i += blockDim.x) acc += part[i];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[0] = from_f32<T>(acc * scale);
}

// dinput = g * grad_input, g rounded once to T first (the reference casts grad_output to the dtype:
// a double goes straight to T, round_from, not through float, which is 1 ulp off at ties).
// mode 0: g = gval (a host scalar, already rounded to T by the loader); 1: g = gp[0]; 2: g = gp[i];
// 3: g = gp[i / K] (one per row).
template <typename T, typename TG>
__global__ void loss_bwd_kernel(const T* __restrict__ gin, const TG* __restrict__ gp, float gval,
                                T* __restrict__ out, long long n, long long K, int mode) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float g = round_to<T>(gval);
        if (mode == 1) g = round_from<T>(gp[0]);
        if (mode == 2) g = round_from<T>(gp[i]);
        if (mode == 3) g = round_from<T>(gp[i / K]);
        out[i] = from_f32<T>(g * to_f32(gin[i]));
    }
}
