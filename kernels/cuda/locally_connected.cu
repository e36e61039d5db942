// Locally connected 2-D layer (unshared convolution, dlgpu.reference.locally_connected), CUDA C for
// the cupy backend.
//
//   y[n, o, i, j] = b[o, i, j] + sum_{k = (c,u,v)} w[i, j, o, k] * xpad[n, c, i sh + u, j sw + v]
//   x [N, C, H, W], w [OH, OW, O, C, KH, KW], b [O, OH, OW], y [N, O, OH, OW]
//
// Every output position (i, j) is its own small GEMM (its own filter bank), so position is the
// grid's x dimension and gemm.cuh's tile runs per position:
//   forward   rows n (N), columns o (O), K = C KH KW: A = the position's im2col row (gathered),
//             B = w[i, j] [O, K] (contiguous along K).
//   dW, db    rows o, columns (c, u, v) plus a column of ones (the bias gradient), K = n.
//   dx        a direct gather, one thread per input element: the taps (u, v) whose window covers
//             it, then the O filters of that window's position (different positions have different
//             filters, so there is no shared B operand to tile). Deterministic: no atomics.
// Napkin math (N 32, C 16, 32x32, O 32, 3x3, stride 1): 900 positions x 2 * 32 * 32 * 144 flops =
// 0.27 GFLOP per pass against 900 * 32 * 144 weights (16 MB fp32) read once: memory-bound on w.
#include "gemm.cuh"

using namespace dlgpu;

struct LcGeom {
    i64 C, H, W, O, OH, OW;
    int KH, KW, sh, sw, ph, pw;
};

// xpad(n, c, i sh + u - ph, j sw + v - pw) for k = (c, u, v); zero outside the input
template <typename T>
__device__ __forceinline__ T lc_patch(const T* x, const LcGeom& g, i64 n, i64 k, i64 i, i64 j) {
    const int kk = (int)k, taps = g.KH * g.KW, c = kk / taps, uv = kk - c * taps, u = uv / g.KW, v = uv - u * g.KW;
    const i64 ih = i * g.sh - g.ph + u, iw = j * g.sw - g.pw + v;
    if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return from_f32<T>(0.f);
    return x[((n * g.C + c) * g.H + ih) * g.W + iw];
}

template <typename T> struct PatchLoader {  // A(n, k)
    static constexpr bool K_CONTIG = true;
    const T* x;
    LcGeom g;
    i64 i, j;
    __device__ __forceinline__ T operator()(i64 n, i64 k) const { return lc_patch(x, g, n, k, i, j); }
};

template <typename T> struct LcOutEpilogue {
    T* y;
    const T* bias;  // [O, OH, OW] or nullptr
    i64 O, ohw, pos;
    __device__ __forceinline__ void operator()(i64 n, i64 o, float acc) const {
        const float z = bias != nullptr ? acc + to_f32(bias[o * ohw + pos]) : acc;
        y[(n * O + o) * ohw + pos] = from_f32<T>(z);
    }
};

// Grid: (OH * OW, ceil(N / 64), ceil(O / 64)), 256 threads.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
lc2d_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                long long N, long long C, long long H, long long W, long long O, long long OH, long long OW, int KH,
                int KW, int sh, int sw, int ph, int pw) {
    const LcGeom geo{C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw};
    const i64 pos = blockIdx.x, i = pos / OW, j = pos - i * OW, K = C * KH * KW;
    const PatchLoader<T> la{x, geo, i, j};
    const StridedLoader<T, true> lb{w + pos * O * K, K, 1};  // B(o, k) = w[i, j, o, k]
    const LcOutEpilogue<T> epi{y, bias, O, OH * OW, pos};
    gemm_tile<T>(la, lb, epi, N, O, K, (i64)blockIdx.y * GEMM_BM, (i64)blockIdx.z * GEMM_BN);
}

// ------------------------------------------------------------------ weight and bias gradients
template <typename T> struct PatchOnesLoader {  // B(col, n): the patch value, or 1 in column J
    static constexpr bool K_CONTIG = false;
    const T* x;
    LcGeom g;
    i64 i, j, J;
    __device__ __forceinline__ T operator()(i64 col, i64 n) const {
        return col < J ? lc_patch(x, g, n, col, i, j) : from_f32<T>(1.f);
    }
};

template <typename T> struct LcGradEpilogue {
    T* dw;  // offset to position (i, j): [O, J]
    T* db;  // [O, OH, OW]
    i64 J, ohw, pos;
    __device__ __forceinline__ void operator()(i64 o, i64 col, float acc) const {
        if (col < J) {
            dw[o * J + col] = from_f32<T>(acc);
        } else {
            db[o * ohw + pos] = from_f32<T>(acc);
        }
    }
};

// Grid: (OH * OW, ceil(O / 64), ceil((C KH KW + 1) / 64)), 256 threads.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
lc2d_dwdb_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dw, T* __restrict__ db,
                 long long N, long long C, long long H, long long W, long long O, long long OH, long long OW, int KH,
                 int KW, int sh, int sw, int ph, int pw) {
    const LcGeom geo{C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw};
    const i64 pos = blockIdx.x, i = pos / OW, j = pos - i * OW, J = C * KH * KW, ohw = OH * OW;
    const StridedLoader<T, false> la{dy + pos, ohw, O * ohw};  // A(o, n) = dy[n, o, i, j]
    const PatchOnesLoader<T> lb{x, geo, i, j, J};
    const LcGradEpilogue<T> epi{dw + pos * O * J, db, J, ohw, pos};
    gemm_tile<T>(la, lb, epi, O, J + 1, N, (i64)blockIdx.y * GEMM_BM, (i64)blockIdx.z * GEMM_BN);
}

// ------------------------------------------------------------------ input gradient
// dx[n, c, ih, iw] = sum over taps (u, v) with (ih + ph - u) = i sh, (iw + pw - v) = j sw exactly,
// 0 <= i < OH, 0 <= j < OW, of sum_o dy[n, o, i, j] * w[i, j, o, c, u, v].
// Grid-stride over N C H W elements (iw fastest), 256 threads.
template <typename T>
__global__ void lc2d_dx_kernel(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, long long N,
                               long long C, long long H, long long W, long long O, long long OH, long long OW, int KH,
                               int KW, int sh, int sw, int ph, int pw) {
    const i64 total = N * C * H * W, stride = (i64)gridDim.x * blockDim.x, ohw = OH * OW;
    const i64 taps = (i64)KH * KW;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const i64 iw = e % W, ih = (e / W) % H, c = (e / (H * W)) % C, n = e / (C * H * W);
        float acc = 0.f;
        for (int u = 0; u < KH; ++u) {
            const i64 th = ih + ph - u;
            if (th < 0 || th % sh != 0 || th / sh >= OH) continue;
            const i64 i = th / sh;
            for (int v = 0; v < KW; ++v) {
                const i64 tw = iw + pw - v;
                if (tw < 0 || tw % sw != 0 || tw / sw >= OW) continue;
                const i64 pos = i * OW + tw / sw;
                const T* g = dy + n * O * ohw + pos;              // dy[n, o, i, j] = g[o * ohw]
                const T* f = w + (pos * O * C + c) * taps + u * KW + v;  // w[i, j, o, c, u, v] = f[o * C * taps]
                for (i64 o = 0; o < O; ++o) acc = fmaf(to_f32(g[o * ohw]), to_f32(f[o * C * taps]), acc);
            }
        }
        dx[e] = from_f32<T>(acc);
    }
}
