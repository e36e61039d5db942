// 2-D convolution (cross-correlation, NCHW, groups, stride, padding, dilation) with bias and
// activation fused (dlgpu.reference.conv), CUDA C for the cupy backend. All three passes are
// implicit GEMMs on gemm.cuh's tile: the im2col matrix is never stored, the operand loaders
// gather it (zero padding = a bounds test) straight into shared memory.
//
// Per group g (blockIdx.z), with Cg = C / G, Og = O / G, KK = KH * KW, P = N * OH * OW:
//   forward  y[n, g Og + o, oh, ow] = act(b + sum_{k = (c,u,v)} w[g Og + o, k] * xpad(n, g Cg + c, ...))
//            GEMM rows o (Og), columns p = (n, oh, ow) (P), K = Cg KK. Columns are the output's
//            contiguous axis, so the epilogue's stores coalesce.
//   dx       dx[n, g Cg + c, ih, iw] = sum_{k = (o,u,v)} w[g Og + o, c, u, v] * dz(n, g Og + o, oh, ow)
//            where oh sh = ih + ph - u dh (and likewise ow) divides exactly; rows c (Cg), columns
//            q = (n, ih, iw) (N H W), K = Og KK. A gather: every dx element written once, no atomics.
//   dW, db   [dW | db][g Og + o, j] = sum_{k = (n, oh, ow)} dz(n, g Og + o, oh, ow) * [im2col | 1](j, k)
//            rows o (Og), columns j = (c, u, v) plus one column of ones (the bias gradient), split-K
//            over P into fp32 partials [S, O, Cg KK + 1] summed in order by splitk_dwdb_finish_kernel.
// dz = act'(y) * dy is computed inside the loaders from the forward's output (rounded to T), never stored.
//
// Napkin math, ResNet 3x3 layer (N 32, C = O = 128, 56x56, fp16): 2 * 32*56*56 * 128 * 1152 = 29.6
// GFLOP per pass; the gather costs integer divisions per loaded element, which this single-stage
// tile does not hide, so expect well under the tensor-core peak.
#include "gemm.cuh"

using namespace dlgpu;

struct ConvGeom {
    i64 C, H, W, O, OH, OW;  // input channels/height/width, output channels/height/width (all groups)
    int KH, KW, sh, sw, ph, pw, dh, dw;
};

// A(o, k) = w[o, k] of this group (w offset to the group's first filter); K = Cg KK
template <typename T> struct FilterLoader {
    static constexpr bool K_CONTIG = true;
    const T* w;
    i64 K;
    __device__ __forceinline__ T operator()(i64 o, i64 k) const { return w[o * K + k]; }
};

// B(p, k) = xpad(n, c, oh sh + u dh - ph, ow sw + v dw - pw) with p = (n, oh, ow), k = (c, u, v);
// x offset to the group's first channel.
template <typename T> struct Im2colLoader {
    static constexpr bool K_CONTIG = false;
    const T* x;
    ConvGeom g;
    __device__ __forceinline__ T operator()(i64 p, i64 k) const {
        const i64 ohw = g.OH * g.OW, n = p / ohw, r = p - n * ohw, oh = r / g.OW, ow = r - oh * g.OW;
        const int kk = (int)k, taps = g.KH * g.KW, c = kk / taps, uv = kk - c * taps, u = uv / g.KW, v = uv - u * g.KW;
        const i64 ih = oh * g.sh - g.ph + (i64)u * g.dh, iw = ow * g.sw - g.pw + (i64)v * g.dw;
        if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return from_f32<T>(0.f);
        return x[((n * g.C + c) * g.H + ih) * g.W + iw];
    }
};

// dz(n, o, oh, ow) = act'(out) * dy at a flat NCHW output index (dy, out offset alike)
template <typename T> __device__ __forceinline__ T dz_at(const T* dy, const T* out, i64 i, int act, float slope) {
    if (act == ACT_NONE) return dy[i];
    return from_f32<T>(act_bwd_rt(act, to_f32(dy[i]), to_f32(out[i]), slope));
}

template <typename T> struct ConvOutEpilogue {
    T* y;
    const T* bias;  // [O] or nullptr
    i64 O, ohw, o0;  // o0 = g Og
    int act;
    float slope;
    __device__ __forceinline__ void operator()(i64 o, i64 p, float acc) const {
        const i64 n = p / ohw, r = p - n * ohw, oc = o0 + o;
        const float z = bias != nullptr ? acc + to_f32(bias[oc]) : acc;
        y[(n * O + oc) * ohw + r] = from_f32<T>(act_fwd_rt(act, z, slope));
    }
};

// Grid: (ceil(P / 64), ceil(Og / 64), G), 256 threads.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
conv2d_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                  long long N, long long C, long long H, long long W, long long O, long long OH, long long OW, int KH,
                  int KW, int sh, int sw, int ph, int pw, int dh, int dw, int G, int act, float slope) {
    const ConvGeom geo{C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw};
    const i64 g = blockIdx.z, cg = C / G, og = O / G, K = cg * KH * KW;
    const FilterLoader<T> la{w + g * og * K, K};
    const Im2colLoader<T> lb{x + g * cg * H * W, geo};
    const ConvOutEpilogue<T> epi{y, bias, O, OH * OW, g * og, act, slope};
    gemm_tile<T>(la, lb, epi, og, N * OH * OW, K, (i64)blockIdx.y * GEMM_BM, (i64)blockIdx.x * GEMM_BN);
}

// ------------------------------------------------------------------ input gradient
// A(c, k) = w[g Og + o, c, u, v] with k = (o, u, v) (w offset to the group's first filter)
template <typename T> struct FilterTLoader {
    static constexpr bool K_CONTIG = true;
    const T* w;
    i64 cg;
    int taps;
    __device__ __forceinline__ T operator()(i64 c, i64 k) const {
        const int kk = (int)k, o = kk / taps, uv = kk - o * taps;
        return w[((i64)o * cg + c) * taps + uv];
    }
};

// B(q, k) = dz(n, o, oh, ow) with q = (n, ih, iw), k = (o, u, v), oh = (ih + ph - u dh) / sh when exact
template <typename T> struct DyGatherLoader {
    static constexpr bool K_CONTIG = false;
    const T* dy;  // offset to the group's first output channel, as out
    const T* out;
    ConvGeom g;
    int act;
    float slope;
    __device__ __forceinline__ T operator()(i64 q, i64 k) const {
        const i64 hw = g.H * g.W, n = q / hw, r = q - n * hw, ih = r / g.W, iw = r - ih * g.W;
        const int kk = (int)k, taps = g.KH * g.KW, o = kk / taps, uv = kk - o * taps, u = uv / g.KW, v = uv - u * g.KW;
        const i64 th = ih + g.ph - (i64)u * g.dh, tw = iw + g.pw - (i64)v * g.dw;
        if (th < 0 || tw < 0 || th % g.sh != 0 || tw % g.sw != 0) return from_f32<T>(0.f);
        const i64 oh = th / g.sh, ow = tw / g.sw;
        if (oh >= g.OH || ow >= g.OW) return from_f32<T>(0.f);
        return dz_at(dy, out, ((n * g.O + o) * g.OH + oh) * g.OW + ow, act, slope);
    }
};

template <typename T> struct DxEpilogue {
    T* dx;  // offset to the group's first input channel
    i64 C, hw;
    __device__ __forceinline__ void operator()(i64 c, i64 q, float acc) const {
        const i64 n = q / hw, r = q - n * hw;
        dx[(n * C + c) * hw + r] = from_f32<T>(acc);
    }
};

// Grid: (ceil(N H W / 64), ceil(Cg / 64), G), 256 threads.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
conv2d_dx_kernel(const T* __restrict__ dy, const T* __restrict__ out, const T* __restrict__ w, T* __restrict__ dx,
                 long long N, long long C, long long H, long long W, long long O, long long OH, long long OW, int KH,
                 int KW, int sh, int sw, int ph, int pw, int dh, int dw, int G, int act, float slope) {
    const ConvGeom geo{C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw};
    const i64 g = blockIdx.z, cg = C / G, og = O / G, ohw = OH * OW;
    const int taps = KH * KW;
    const FilterTLoader<T> la{w + g * og * cg * taps, cg, taps};
    const DyGatherLoader<T> lb{dy + g * og * ohw, out == nullptr ? out : out + g * og * ohw, geo, act, slope};
    const DxEpilogue<T> epi{dx + g * cg * H * W, C, H * W};
    gemm_tile<T>(la, lb, epi, cg, N * H * W, og * taps, (i64)blockIdx.y * GEMM_BM, (i64)blockIdx.x * GEMM_BN);
}

// ------------------------------------------------------------------ weight and bias gradients
// A(o, k) = dz(n, o, oh, ow), k = (n, oh, ow) (dy/out offset to the group's first output channel)
template <typename T> struct DzRowsLoader {
    static constexpr bool K_CONTIG = true;
    const T* dy;
    const T* out;
    i64 O, ohw;
    int act;
    float slope;
    __device__ __forceinline__ T operator()(i64 o, i64 k) const {
        const i64 n = k / ohw, r = k - n * ohw;
        return dz_at(dy, out, (n * O + o) * ohw + r, act, slope);
    }
};

// B(j, k) = im2col(k, j) for j < Cg KK, and 1 for j == Cg KK (the bias column)
template <typename T> struct Im2colOnesLoader {
    static constexpr bool K_CONTIG = true;
    Im2colLoader<T> im;
    i64 J;
    __device__ __forceinline__ T operator()(i64 j, i64 k) const { return j < J ? im(k, j) : from_f32<T>(1.f); }
};

// Grid: (ceil(Og / 64), ceil((Cg KK + 1) / 64), G * splits), 256 threads; part [splits, O, Cg KK + 1].
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
conv2d_dwdb_kernel(const T* __restrict__ dy, const T* __restrict__ out, const T* __restrict__ x,
                   float* __restrict__ part, long long N, long long C, long long H, long long W, long long O,
                   long long OH, long long OW, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int G,
                   int act, float slope, long long splits, long long chunk) {
    const ConvGeom geo{C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw};
    const i64 g = blockIdx.z / splits, s = blockIdx.z - g * splits;
    const i64 cg = C / G, og = O / G, ohw = OH * OW, J = cg * KH * KW, P = N * ohw;
    const i64 k0 = s * chunk, kc = P - k0 < chunk ? P - k0 : chunk;
    const i64 off = g * og * ohw;
    const KOffsetLoader<DzRowsLoader<T>> la{{dy + off, out == nullptr ? out : out + off, O, ohw, act, slope}, k0};
    const KOffsetLoader<Im2colOnesLoader<T>> lb{{{x + g * cg * H * W, geo}, J}, k0};
    const PartialEpilogue epi{part + (s * O + g * og) * (J + 1), J + 1};
    gemm_tile<T>(la, lb, epi, og, J + 1, kc, (i64)blockIdx.x * GEMM_BM, (i64)blockIdx.y * GEMM_BN);
}
