// 2-D max and average pooling, NCHW (dlgpu.reference.pooling), CUDA C for the cupy backend.
//
// One thread per output element for the forwards and the average backward (a gather over the
// windows that cover an input element: deterministic, no atomics). The max backward only gets the
// indices and x's shape (no window geometry), so it scatters: fp32 atomicAdd into a zeroed buffer
// (the output itself for float32, a workspace cast by cast_kernel otherwise). Addition order can
// differ only where overlapping windows chose the same element. Indices outside [0, H W) are
// counted (bad) and skipped; the loader then raises the reference's error.
//
// Max ties and NaN as the reference (torch): scan the window row-major, take v when v > best or v
// is NaN: the first of equal maxima wins, a NaN wins (the last NaN's index is reported). Padding is
// never chosen; the index starts at the window's first real element.
// Napkin math: forward reads KH KW / (sh sw) inputs per output (once from DRAM when windows tile),
// so HBM-bound: 2^26 fp32 elements in ~0.1 ms at 3 TB/s.
#include "common.cuh"

using namespace dlgpu;

struct PoolGeom {
    i64 H, W, OH, OW;
    int KH, KW, sh, sw, ph, pw;
};

// Grid-stride over planes * OH * OW outputs.
template <typename T>
__global__ void max_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx,
                                      long long planes, long long H, long long W, long long OH, long long OW, int KH,
                                      int KW, int sh, int sw, int ph, int pw) {
    const i64 total = planes * OH * OW, stride = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const i64 ow = e % OW, oh = (e / OW) % OH, plane = e / (OH * OW);
        const i64 r0 = oh * sh - ph, c0 = ow * sw - pw;
        const T* xp = x + plane * H * W;
        float best = -inf_f();
        i64 arg = (r0 > 0 ? r0 : 0) * W + (c0 > 0 ? c0 : 0);  // the window's first real element
        for (int i = 0; i < KH; ++i) {
            const i64 r = r0 + i;
            if (r < 0 || r >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const i64 c = c0 + j;
                if (c < 0 || c >= W) continue;
                const float v = to_f32(xp[r * W + c]);
                if (v > best || is_nan(v)) {
                    best = v;
                    arg = r * W + c;
                }
            }
        }
        y[e] = from_f32<T>(best);
        idx[e] = arg;
    }
}

// dx_acc[plane, idx] += dy (fp32 atomics); bad counts indices outside [0, H W).
template <typename T, typename I>
__global__ void max_pool2d_bwd_kernel(const T* __restrict__ dy, const I* __restrict__ idx, float* __restrict__ dx_acc,
                                      int* __restrict__ bad, long long planes, long long HW, long long OHW) {
    const i64 total = planes * OHW, stride = (i64)gridDim.x * blockDim.x;
    int nbad = 0;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const i64 k = (i64)idx[e];
        if (k < 0 || k >= HW) {
            ++nbad;
            continue;
        }
        atomicAdd(dx_acc + (e / OHW) * HW + k, to_f32(dy[e]));
    }
    if (nbad) atomicAdd(bad, nbad);
}

// out[i] = T(src[i]): the fp32 workspace of the max backward in a half type
template <typename T>
__global__ void cast_kernel(const float* __restrict__ src, T* __restrict__ out, long long n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = from_f32<T>(src[i]);
}

// the divisor of output (oh, ow): KH KW, or the number of real (non-padding) elements in the window
__device__ __forceinline__ float avg_divisor(const PoolGeom& g, i64 oh, i64 ow, bool include_pad) {
    if (include_pad) return (float)(g.KH * g.KW);
    const i64 r0 = oh * g.sh - g.ph, c0 = ow * g.sw - g.pw;
    const i64 rows = (r0 + g.KH < g.H ? r0 + g.KH : g.H) - (r0 > 0 ? r0 : 0);
    const i64 cols = (c0 + g.KW < g.W ? c0 + g.KW : g.W) - (c0 > 0 ? c0 : 0);
    return (float)(rows * cols);
}

template <typename T>
__global__ void avg_pool2d_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, long long planes, long long H,
                                      long long W, long long OH, long long OW, int KH, int KW, int sh, int sw, int ph,
                                      int pw, int include_pad) {
    const PoolGeom g{H, W, OH, OW, KH, KW, sh, sw, ph, pw};
    const i64 total = planes * OH * OW, stride = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const i64 ow = e % OW, oh = (e / OW) % OH, plane = e / (OH * OW);
        const i64 r0 = oh * sh - ph, c0 = ow * sw - pw;
        const T* xp = x + plane * H * W;
        float s = 0.f;
        for (int i = 0; i < KH; ++i) {
            const i64 r = r0 + i;
            if (r < 0 || r >= H) continue;
            for (int j = 0; j < KW; ++j) {
                const i64 c = c0 + j;
                if (c >= 0 && c < W) s += to_f32(xp[r * W + c]);
            }
        }
        y[e] = from_f32<T>(s / avg_divisor(g, oh, ow, include_pad != 0));
    }
}

// dx[plane, h, w] = sum over the windows (oh, ow) covering (h, w) of dy[plane, oh, ow] / d(oh, ow)
template <typename T>
__global__ void avg_pool2d_bwd_kernel(const T* __restrict__ dy, T* __restrict__ dx, long long planes, long long H,
                                      long long W, long long OH, long long OW, int KH, int KW, int sh, int sw, int ph,
                                      int pw, int include_pad) {
    const PoolGeom g{H, W, OH, OW, KH, KW, sh, sw, ph, pw};
    const i64 total = planes * H * W, stride = (i64)gridDim.x * blockDim.x;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const i64 w = e % W, h = (e / W) % H, plane = e / (H * W);
        // oh sh - ph <= h <= oh sh - ph + KH - 1
        const i64 ah = h + ph - KH + 1, aw = w + pw - KW + 1;
        const i64 oh_lo = ah <= 0 ? 0 : (ah + sh - 1) / sh, ow_lo = aw <= 0 ? 0 : (aw + sw - 1) / sw;
        const i64 oh_hi = (h + ph) / sh < OH - 1 ? (h + ph) / sh : OH - 1;
        const i64 ow_hi = (w + pw) / sw < OW - 1 ? (w + pw) / sw : OW - 1;
        const T* gp = dy + plane * OH * OW;
        float s = 0.f;
        for (i64 oh = oh_lo; oh <= oh_hi; ++oh)
            for (i64 ow = ow_lo; ow <= ow_hi; ++ow)
                s += to_f32(gp[oh * OW + ow]) / avg_divisor(g, oh, ow, include_pad != 0);
        dx[e] = from_f32<T>(s);
    }
}
