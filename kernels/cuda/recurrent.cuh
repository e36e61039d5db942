// Pieces shared by the recurrent families (rnn.cu, lstm.cu, gru.cu, mgu.cu): the per-step tile
// products with a gate epilogue, the reset-gated cell (GRU "cho" and MGU), the persistent
// kernels' building blocks, and the after-the-loop helpers (column sums, dh0, casts).
//
// Per-step kernels: a block of REC_THREADS threads owns a tile of REC_BH hidden units x BB batch
// rows (thread tx = tid % REC_BH is the unit, ty = tid / REC_BH walks rows ty + 16 r). The
// recurrent product for ALL gates of its units goes through shared memory in K steps of REC_BK,
// fp32 accumulators acc[r][g], and the kernel's epilogue finishes the cell (gates, state, workspace).
// Grid: (ceil(H / REC_BH), ceil(B / BB)).
//
// Persistent kernels (one cooperative launch for the whole sequence): block p holds W_hh's rows of
// units [p HB, p HB + HB) for all gates in shared memory ([gate][unit][HP], storage dtype) for
// every step; per step it stages h_{t-1} (BT rows at a time, read with ld.global.cg since other
// blocks wrote it during this launch) into shared memory, each warp takes (PERSIST_RB rows x one
// unit) items, its lanes split K (two adjacent k per lane), a reduce-scatter sums the lanes, lanes
// 0..PERSIST_RB-1 run the cell epilogue for their row; then a grid-wide barrier (cooperative groups).
//
// NVRTC-compatible (CUDA headers only); all sizes are long long, offsets 64-bit.
#pragma once

#include "gemm.cuh"
// The persistent kernels (and only they) need the grid barrier; the cooperative module is compiled with
// -DDLGPU_PERSISTENT (kernels/cuda/_common.py). The per-step kernels, the fallback when that module
// cannot be built, then depend on no cooperative_groups / CCCL header at all.
#ifdef DLGPU_PERSISTENT
#include <cooperative_groups.h>
#endif

namespace dlgpu {

constexpr int REC_THREADS = 256;  // threads per block of every recurrent kernel
constexpr int REC_BH = 16;        // hidden units per per-step tile
constexpr int REC_BK = 32;        // K step of the per-step tiles
constexpr int PERSIST_RB = 4;     // batch rows per warp item of the persistent kernels

}  // namespace dlgpu

// Per-step kernels: two blocks per SM may be resident (a 128-register budget; ptxas's own choice
// for some of them was 80 registers, and spills).
#define REC_STEP_BOUNDS __launch_bounds__(dlgpu::REC_THREADS, 2)

namespace dlgpu {

template <int BB> struct Tile {
    static constexpr int NTY = REC_THREADS / REC_BH;  // row lanes (16)
    static constexpr int RB = BB / NTY;               // rows per thread
    static_assert(BB % NTY == 0 && RB >= 1, "BB must be a multiple of REC_THREADS / REC_BH");
};

// ------------------------------------------------------------------ loads
// ld.global.cg: served by L2, never by a (non-coherent) L1 line cached before another block wrote it
template <typename T> __device__ __forceinline__ T ld_cg(const T* p);
template <> __device__ __forceinline__ float ld_cg<float>(const float* p) { return __ldcg(p); }
template <> __device__ __forceinline__ __half ld_cg<__half>(const __half* p) {
    return __ushort_as_half(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}
template <> __device__ __forceinline__ __nv_bfloat16 ld_cg<__nv_bfloat16>(const __nv_bfloat16* p) {
    return __ushort_as_bfloat16(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}

// two adjacent elements as fp32 (p aligned to two elements)
__device__ __forceinline__ float2 ld2f(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 ld2f(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 ld2f(const __nv_bfloat16* p) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

// optional operand: 0 when the pointer is null
template <typename T> __device__ __forceinline__ float opt(const T* p, i64 i) { return p ? to_f32(p[i]) : 0.f; }

__device__ __forceinline__ float dsig(float s) { return s * (1.f - s); }   // sigma' from its output
__device__ __forceinline__ float dtanh(float y) { return 1.f - y * y; }  // tanh' from its output

// ------------------------------------------------------------------ per-step tile products
// acc[r][g] += sum_{k < K} A[b, k] * W[g * gstride + j, k]   (b = b0 + ty + 16 r, j = j0 + tx)
// A: [B, >= K] row stride lda; W rows of length >= K, row stride ldw; rows j >= N read as zero.
template <typename TA, typename TW, int G, int BB>
__device__ __forceinline__ void tile_mm_nt(float (&acc)[Tile<BB>::RB][G], const TA* __restrict__ A, i64 lda, i64 B,
                                           i64 b0, const TW* __restrict__ W, i64 ldw, i64 gstride, i64 N, i64 j0,
                                           i64 K) {
    constexpr int BH = REC_BH, BK = REC_BK, NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    __shared__ float as_[BB][BK + 1];
    __shared__ float ws_[G][BK][BH + 1];  // k-major: the inner loop reads consecutive units
    const int tid = threadIdx.x, tx = tid % BH, ty = tid / BH;
    for (i64 k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int i = 0; i < (BB * BK) / REC_THREADS; ++i) {
            const int idx = tid + i * REC_THREADS, r = idx / BK, c = idx % BK;
            const i64 b = b0 + r, k = k0 + c;
            as_[r][c] = (b < B && k < K) ? to_f32(A[b * lda + k]) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < (G * BH * BK) / REC_THREADS; ++i) {
            const int idx = tid + i * REC_THREADS, g = idx / (BH * BK), jj = (idx / BK) % BH, c = idx % BK;
            const i64 j = j0 + jj, k = k0 + c;
            ws_[g][c][jj] = (j < N && k < K) ? to_f32(W[(g * gstride + j) * ldw + k]) : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int c = 0; c < BK; ++c) {
            float w[G];
#pragma unroll
            for (int g = 0; g < G; ++g) w[g] = ws_[g][c][tx];
#pragma unroll
            for (int r = 0; r < RB; ++r) {
                const float a = as_[ty + NTY * r][c];
#pragma unroll
                for (int g = 0; g < G; ++g) acc[r][g] = fmaf(a, w[g], acc[r][g]);
            }
        }
        __syncthreads();
    }
}

// acc[r] += sum_{k < K} A[b, k] * W[k, j]   (W row-major, row stride ldw; columns j >= N read as zero)
template <typename T, int BB>
__device__ __forceinline__ void tile_mm_nn(float (&acc)[Tile<BB>::RB], const T* __restrict__ A, i64 lda, i64 B, i64 b0,
                                           const T* __restrict__ W, i64 ldw, i64 N, i64 j0, i64 K) {
    constexpr int BH = REC_BH, BK = REC_BK, NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    __shared__ float as_[BB][BK + 1];
    __shared__ float ws_[BK][BH + 1];
    const int tid = threadIdx.x, tx = tid % BH, ty = tid / BH;
    for (i64 k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int i = 0; i < (BB * BK) / REC_THREADS; ++i) {
            const int idx = tid + i * REC_THREADS, r = idx / BK, c = idx % BK;
            const i64 b = b0 + r, k = k0 + c;
            as_[r][c] = (b < B && k < K) ? to_f32(A[b * lda + k]) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < (BH * BK) / REC_THREADS; ++i) {
            const int idx = tid + i * REC_THREADS, c = idx / BH, jj = idx % BH;
            const i64 j = j0 + jj, k = k0 + c;
            ws_[c][jj] = (j < N && k < K) ? to_f32(W[k * ldw + j]) : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int c = 0; c < BK; ++c) {
            const float w = ws_[c][tx];
#pragma unroll
            for (int r = 0; r < RB; ++r) acc[r] = fmaf(as_[ty + NTY * r][c], w, acc[r]);
        }
        __syncthreads();
    }
}

// The gradient reaching h_t through W_hh from step t+1: sum over (at most two) segments of
// dn[b, col + k] * W_hh[row + k, j], k < K (dn: step t+1's pre-activation gradients, row stride ldd).
// Nothing when dn is null (the last step). Every thread of the block must call it.
struct Segments {
    i64 col0, row0, k0, col1, row1, k1;
};

// NSEG = 1 ignores the second segment (one inlined product: fewer registers).
template <typename T, int BB, int NSEG>
__device__ __forceinline__ void tile_dh(float (&acc)[Tile<BB>::RB], const T* dn, i64 ldd, const T* W, i64 H, i64 B,
                                        i64 b0, i64 j0, const Segments& s) {
#pragma unroll
    for (int r = 0; r < Tile<BB>::RB; ++r) acc[r] = 0.f;
    if (dn == nullptr) return;
    if (s.k0 > 0) tile_mm_nn<T, BB>(acc, dn + s.col0, ldd, B, b0, W + s.row0 * H, H, H, j0, s.k0);
    if (NSEG > 1 && s.k1 > 0) tile_mm_nn<T, BB>(acc, dn + s.col1, ldd, B, b0, W + s.row1 * H, H, H, j0, s.k1);
}

// ------------------------------------------------------------------ persistent building blocks
struct Persist {
    i64 B, H;   // batch, hidden size
    int HP;     // shared-memory row pitch (H rounded up to even: two k per lane-load)
    int HB;     // units per block
    int BT;     // batch rows staged at a time (a multiple of PERSIST_RB)
    i64 j0;     // this block's first unit
    int nu;     // units this block owns (<= HB)
};

__device__ __forceinline__ Persist persist_shape(i64 B, i64 H, int HP, int HB, int BT) {
    Persist p;
    p.B = B;
    p.H = H;
    p.HP = HP;
    p.HB = HB;
    p.BT = BT;
    p.j0 = (i64)blockIdx.x * HB;
    const i64 left = H - p.j0;
    p.nu = left < HB ? (left > 0 ? (int)left : 0) : HB;
    return p;
}

// Ws[(g HB + jj) HP + k] = W[((gate0 + g) H + j0 + jj) H + k] for g < ngates; zero past the owned
// units and in the pad column. Once per launch.
template <typename T>
__device__ __forceinline__ void persist_load_weights(T* Ws, const T* __restrict__ W, int ngates, int gate0,
                                                     const Persist& p) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const T zero = from_f32<T>(0.f);
    for (int row = warp; row < ngates * p.HB; row += nw) {
        const int g = row / p.HB, jj = row % p.HB;
        const T* src = W + ((i64)(gate0 + g) * p.H + p.j0 + jj) * p.H;
        for (int k = lane; k < p.HP; k += 32)
            Ws[(i64)row * p.HP + k] = (jj < p.nu && k < p.H) ? src[k] : zero;
    }
}

// Hs[r][k] = src[b0 + r, k] (zeros past B, past H, or for a null src): rows of h_{t-1} that other
// blocks wrote during this launch, hence ld.global.cg.
template <typename T>
__device__ __forceinline__ void persist_stage(T* Hs, const T* src, i64 b0, const Persist& p) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const T zero = from_f32<T>(0.f);
    for (int r = warp; r < p.BT; r += nw) {
        const i64 b = b0 + r;
        const bool row_ok = src != nullptr && b < p.B;
        for (int k = lane; k < p.HP; k += 32)
            Hs[(i64)r * p.HP + k] = (row_ok && k < p.H) ? ld_cg(src + b * p.H + k) : zero;
    }
}

// Sums V values over the 32 lanes of a warp with V - 1 + log2(32 / V) shuffles (16 for V = 16; a
// butterfly per value would take 5 V): at each halving step (offsets 16, 8, ...) a lane keeps the half
// of its values its lane bit selects and adds the partner's copy of that half; the lanes still
// sharing a value then finish with xor butterflies.
// Lane l returns the full sum of value (l >> (5 - log2 V)) & (V - 1). All 32 lanes must call it.
template <int N, int O, int V>
__device__ __forceinline__ void halve_values(float (&v)[V], int lane) {  // N values left, partner offset O
    if constexpr (N > 1) {
        const bool up = (lane & O) != 0;
#pragma unroll
        for (int i = 0; i < N / 2; ++i) {
            const float send = up ? v[i] : v[i + N / 2];
            const float keep = up ? v[i + N / 2] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
        }
        halve_values<N / 2, O / 2>(v, lane);  // compile-time indices only: v stays in registers
    }
}

template <int V>
__device__ __forceinline__ float warp_reduce_scatter(float (&v)[V], int lane) {
    static_assert(V == 4 || V == 8 || V == 16 || V == 32, "V: a power of two in 4..32");
    halve_values<V, 16>(v, lane);
    float s = v[0];
#pragma unroll
    for (int o = 16 / V; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
}

// For every (row < nrows of the staged chunk, owned unit jj): z[g] = sum_k Hs[row, k] Ws[g HB + jj, k],
// then epi(row, jj, z) on one lane. Warp-uniform loop; no block barrier inside.
template <typename T, int G, class Epi>
__device__ __forceinline__ void persist_matvec(const T* Hs, const T* Ws, int nrows, const Persist& p, const Epi& epi) {
    constexpr int RB = PERSIST_RB;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int groups = (nrows + RB - 1) / RB, items = groups * p.nu;
    const i64 gpitch = (i64)p.HB * p.HP;
    for (int it = warp; it < items; it += nw) {
        const int rg = it / p.nu, jj = it % p.nu;
        const T* hb = Hs + (i64)rg * RB * p.HP;
        const T* wb = Ws + (i64)jj * p.HP;
        float acc[RB][G];
#pragma unroll
        for (int r = 0; r < RB; ++r)
#pragma unroll
            for (int g = 0; g < G; ++g) acc[r][g] = 0.f;
        for (int k = 2 * lane; k < p.H; k += 64) {  // k + 1 < HP: the pad column is zero
            float2 w[G];
#pragma unroll
            for (int g = 0; g < G; ++g) w[g] = ld2f(wb + g * gpitch + k);
#pragma unroll
            for (int r = 0; r < RB; ++r) {
                const float2 a = ld2f(hb + (i64)r * p.HP + k);
#pragma unroll
                for (int g = 0; g < G; ++g) acc[r][g] = fmaf(a.x, w[g].x, fmaf(a.y, w[g].y, acc[r][g]));
            }
        }
        // the RB x G lane-partial sums -> lane r (< RB) holds row r's G full sums
        constexpr int V = RB * G <= 4 ? 4 : RB * G <= 8 ? 8 : RB * G <= 16 ? 16 : 32;
        constexpr int SHIFT = V == 4 ? 3 : V == 8 ? 2 : V == 16 ? 1 : 0;  // 5 - log2(V)
        static_assert(RB * G <= 32, "at most 32 sums per warp item");
        float v[V];
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] = i < RB * G ? acc[i / G][i % G] : 0.f;
        const float sum = warp_reduce_scatter<V>(v, lane);  // value (lane >> SHIFT) & (V - 1)
        float z[G];
#pragma unroll
        for (int g = 0; g < G; ++g) z[g] = __shfl_sync(0xffffffffu, sum, (((lane % RB) * G + g) << SHIFT) & 31);
        const int row = rg * RB + lane;
        if (lane < RB && row < nrows) epi(row, jj, z);
    }
}

// ------------------------------------------------------------------ after-the-loop helpers
}  // namespace dlgpu

// out[s * ldo + n] = sum of A[m * lda + n] over the rows m of slab s ([s rows, (s+1) rows) cut at M),
// fp32 accumulation in a fixed order (deterministic). Block: 256 threads = 32 columns x 8 row lanes.
// Grid: (ceil(N / 32), number of slabs). Two passes give a full column sum: rows -> fp32 partials
// [slabs, N] -> one slab.
template <typename TI, typename TO>
__global__ void __launch_bounds__(256)
rec_colsum(const TI* __restrict__ A, long long lda, long long M, long long N, long long rows, TO* __restrict__ out,
           long long ldo) {
    using namespace dlgpu;
    __shared__ float part[8][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const i64 n = (i64)blockIdx.x * 32 + tx;
    const i64 m0 = (i64)blockIdx.y * rows, m1 = m0 + rows < M ? m0 + rows : M;
    float s = 0.f;
    if (n < N)
        for (i64 m = m0 + ty; m < m1; m += 8) s += to_f32(A[m * lda + n]);
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && n < N) {
        float t = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) t += part[i][tx];
        out[(i64)blockIdx.y * ldo + n] = from_f32<TO>(t);
    }
}

// dst[i] = src[i] converted (h_n from output[T-1], c_n from the fp32 cell state, dc0). Grid-stride.
template <typename TI, typename TO>
__global__ void __launch_bounds__(256) rec_cast(const TI* __restrict__ src, TO* __restrict__ dst, long long n) {
    using namespace dlgpu;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = from_f32<TO>(to_f32(src[i]));
}

// hprev [T, B, H] = [h0 (zeros when null); output[0 .. T-2]]: the h_{t-1} operand of dW_hh. Grid-stride.
template <typename T>
__global__ void __launch_bounds__(256)
rec_shift(const T* __restrict__ h0, const T* __restrict__ output, T* __restrict__ hprev, long long n, long long bh) {
    using namespace dlgpu;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        hprev[i] = i < bh ? (h0 ? h0[i] : from_f32<T>(0.f)) : output[i - bh];
}

// dh0 = carry (fp32, may be null) + step 0's pre-activation gradients through W_hh (the segments).
template <typename T, int BB>
__global__ void REC_STEP_BOUNDS
rec_dh0(const float* __restrict__ carry, const T* __restrict__ d0, long long ldd, const T* __restrict__ w_hh,
        T* __restrict__ dh0, long long B, long long H, long long col0, long long row0, long long k0, long long col1,
        long long row1, long long k1) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx;
    float acc[RB];
    tile_dh<T, BB, 2>(acc, d0, ldd, w_hh, H, B, b0, j0, Segments{col0, row0, k0, col1, row1, k1});
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b < B) dh0[b * H + j] = from_f32<T>(acc[r] + opt(carry, b * H + j));
    }
}

// ------------------------------------------------------------------ reset-gated cells (cho GRU, MGU)
// NG sigmoid gates (cho: r, z; MGU: f), then the candidate c = tanh(xp_c + (q h_{t-1}) W_hc^T + b_hc)
// with q = gate 0; gate U interpolates h_t = h_{t-1} + u (c - h_{t-1}). Row width GW = (NG+1) H of
// xp, the workspace and the gradients, gate blocks in order.

// Phase 1 of a forward step: the sigmoid gates and q * h_{t-1} (to qh, the candidate's operand).
template <typename T, int BB, int NG>
__global__ void REC_STEP_BOUNDS
reset_fwd_gates(const float* __restrict__ xp, const T* __restrict__ hprev, const T* __restrict__ w_hh,
                const T* __restrict__ b_hh, T* __restrict__ ws, T* __restrict__ qh, long long B, long long H) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx, GW = (NG + 1) * H;
    float acc[RB][NG];
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
        for (int g = 0; g < NG; ++g) acc[r][g] = 0.f;
    if (hprev) tile_mm_nt<T, T, NG, BB>(acc, hprev, H, B, b0, w_hh, H, H, H, j0, H);
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        float q = 0.f;
#pragma unroll
        for (int g = 0; g < NG; ++g) {
            const float a = sigmoid_f(xp[b * GW + g * H + j] + acc[r][g] + opt(b_hh, g * H + j));
            ws[b * GW + g * H + j] = from_f32<T>(a);
            if (g == 0) q = a;
        }
        qh[b * H + j] = from_f32<T>(q * opt(hprev, b * H + j));
    }
}

// Phase 2: the candidate from every unit's q h_{t-1}, and h_t.
template <typename T, int BB, int NG, int U>
__global__ void REC_STEP_BOUNDS
reset_fwd_cand(const float* __restrict__ xp, const T* __restrict__ hprev, const T* __restrict__ qh,
               const T* __restrict__ w_hh, const T* __restrict__ b_hh, T* __restrict__ out, T* __restrict__ ws,
               long long B, long long H) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx, GW = (NG + 1) * H;
    float acc[RB][1];
#pragma unroll
    for (int r = 0; r < RB; ++r) acc[r][0] = 0.f;
    if (hprev) tile_mm_nt<T, T, 1, BB>(acc, qh, H, B, b0, w_hh + NG * H * H, H, H, H, j0, H);
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const float c = tanhf(xp[b * GW + NG * H + j] + acc[r][0] + opt(b_hh, NG * H + j));
        const float u = to_f32(ws[b * GW + U * H + j]), hp = opt(hprev, b * H + j);
        ws[b * GW + NG * H + j] = from_f32<T>(c);
        out[b * H + j] = from_f32<T>(hp + u * (c - hp));
    }
}

// Backward phase 1 at step t: dh_t = carry + d_output[t] + d_h_n (last step) + step t+1's gate
// gradients through W_hh; the candidate's pre-activation gradient, the update gate's part.
// carry/mid/dpart: fp32 [B, H]; carry is read unless first (t = T-1).
template <typename T, int BB, int NG, int U>
__global__ void REC_STEP_BOUNDS
reset_bwd_cand(const T* __restrict__ dnext, const T* __restrict__ w_hh, const T* __restrict__ dh_n,
               const T* __restrict__ d_out, const float* __restrict__ carry, const T* __restrict__ ws,
               const T* __restrict__ hprev, T* __restrict__ dpre, float* __restrict__ dpart, float* __restrict__ mid,
               long long B, long long H, int first) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx, GW = (NG + 1) * H;
    float acc[RB];
    tile_dh<T, BB, 1>(acc, dnext, GW, w_hh, H, B, b0, j0, Segments{0, 0, NG * H, 0, 0, 0});
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const i64 o = b * H + j, w = b * GW + j;
        const float g = acc[r] + (first ? 0.f : carry[o]) + opt(dh_n, o) + opt(d_out, o);
        const float u = to_f32(ws[w + U * H]), c = to_f32(ws[w + NG * H]), hp = to_f32(hprev[o]);
        dpre[w + NG * H] = from_f32<T>(g * u * dtanh(c));
        const float du = g * (c - hp);
        if (U == 0) {
            dpart[o] = du;  // u is also the reset gate: phase 2 adds its d(q h) part
        } else {
            dpre[w + U * H] = from_f32<T>(du * dsig(u));
        }
        mid[o] = g - g * u;
    }
}

// Backward phase 2: d(q h) = da_c W_hc (every unit's da_c), the reset gate's gradient, the carry
// (the part of dL/dh_{t-1} not through step t's gates) and q h_{t-1} for dW_hc.
template <typename T, int BB, int NG, int U>
__global__ void REC_STEP_BOUNDS
reset_bwd_gate(const T* __restrict__ w_hh, const T* __restrict__ ws, const T* __restrict__ hprev, T* __restrict__ dpre,
               const float* __restrict__ dpart, const float* __restrict__ mid, float* __restrict__ carry,
               T* __restrict__ qh, long long B, long long H) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx, GW = (NG + 1) * H;
    float acc[RB];
#pragma unroll
    for (int r = 0; r < RB; ++r) acc[r] = 0.f;
    tile_mm_nn<T, BB>(acc, dpre + NG * H, GW, B, b0, w_hh + NG * H * H, H, H, j0, H);
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const i64 o = b * H + j, w = b * GW + j;
        const float q = to_f32(ws[w]), hp = to_f32(hprev[o]), drh = acc[r];
        float dq = drh * hp;
        if (U == 0) dq += dpart[o];
        dpre[w] = from_f32<T>(dq * dsig(q));
        carry[o] = mid[o] + drh * q;
        qh[o] = from_f32<T>(q * hp);
    }
}

#ifdef DLGPU_PERSISTENT  // reset_persist: compiled only into the cooperative module
// Persistent forward of a reset-gated cell: per step, phase 1 (gates, q h_{t-1} to qh), grid barrier,
// phase 2 (candidate, h_t), grid barrier. Dynamic shared memory: ((NG+1) HB + BT) HP elements.
template <typename T, int NG, int U>
__global__ void __launch_bounds__(dlgpu::REC_THREADS, 1)
reset_persist(const float* __restrict__ xp, const T* __restrict__ h0, const T* __restrict__ w_hh,
              const T* __restrict__ b_hh, T* __restrict__ out, T* __restrict__ ws, T* __restrict__ qh, long long Tn,
              long long B, long long H, int HP, int HB, int BT) {
    using namespace dlgpu;
    namespace cg = cooperative_groups;
    if ((i64)gridDim.x * HB < H) return;  // the launch lost blocks: every block leaves, no barrier hangs
    extern __shared__ __align__(16) unsigned char rec_smem[];
    T* Ws = reinterpret_cast<T*>(rec_smem);
    T* Hs = Ws + (i64)(NG + 1) * HB * HP;
    const Persist p = persist_shape(B, H, HP, HB, BT);
    const i64 GW = (NG + 1) * H, BH = B * H;
    cg::grid_group grid = cg::this_grid();
    persist_load_weights(Ws, w_hh, NG + 1, 0, p);
    for (i64 t = 0; t < Tn; ++t) {
        const T* hprev = t == 0 ? h0 : out + (t - 1) * BH;
        const float* xt = xp + t * B * GW;
        T* wt = ws + t * B * GW;
        for (i64 b0 = 0; b0 < B; b0 += BT) {
            __syncthreads();
            persist_stage(Hs, hprev, b0, p);
            __syncthreads();
            const int nrows = (int)(B - b0 < BT ? B - b0 : BT);
            persist_matvec<T, NG>(Hs, Ws, nrows, p, [&](int row, int jj, const float* z) {
                const i64 b = b0 + row, j = p.j0 + jj;
                float q = 0.f;
#pragma unroll
                for (int g = 0; g < NG; ++g) {
                    const float a = sigmoid_f(xt[b * GW + g * H + j] + z[g] + opt(b_hh, g * H + j));
                    wt[b * GW + g * H + j] = from_f32<T>(a);
                    if (g == 0) q = a;
                }
                qh[b * H + j] = from_f32<T>(q * to_f32(Hs[(i64)row * HP + j]));
            });
        }
        grid.sync();
        for (i64 b0 = 0; b0 < B; b0 += BT) {
            __syncthreads();
            persist_stage(Hs, hprev ? (const T*)qh : nullptr, b0, p);
            __syncthreads();
            const int nrows = (int)(B - b0 < BT ? B - b0 : BT);
            persist_matvec<T, 1>(Hs, Ws + (i64)NG * HB * HP, nrows, p, [&](int row, int jj, const float* z) {
                const i64 b = b0 + row, j = p.j0 + jj;
                const float c = tanhf(xt[b * GW + NG * H + j] + z[0] + opt(b_hh, NG * H + j));
                const float u = to_f32(ld_cg(wt + b * GW + U * H + j));
                const float hp = hprev ? to_f32(ld_cg(hprev + b * H + j)) : 0.f;
                wt[b * GW + NG * H + j] = from_f32<T>(c);
                out[t * BH + b * H + j] = from_f32<T>(hp + u * (c - hp));
            });
        }
        if (t + 1 < Tn) grid.sync();
    }
}
#endif  // DLGPU_PERSISTENT
