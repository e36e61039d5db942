// The one tiled shared-memory GEMM every CUDA family builds on (linear, conv's implicit GEMMs,
// locally connected, the recurrent cells' projections).
//
//   C[m, n] = epilogue(m, n, sum_k A(m, k) * B(n, k))        fp32 accumulation
//
// A 64x64 output tile per block of GEMM_THREADS = 256 threads (launch with blockDim.x == 256).
//   * float: FFMA, BK = 16, exact IEEE fp32 products; each thread owns a 4x4 sub-tile
//     (rows ty + 16 i, columns tx + 16 j, so that the epilogue's stores coalesce along n).
//   * __half / __nv_bfloat16 on sm_80+: WMMA tensor cores (16x16x16, fp32 accumulators), BK = 32;
//     8 warps, each a 16x32 strip of the tile; the accumulators go through shared memory to the
//     epilogue. Below sm_80 (NVRTC compiling for an older device) half types take the FFMA path.
//
// Operands are read through loader functors, so one mainloop serves plain strided matrices and
// the implicit GEMMs (im2col done on the fly inside the loader):
//
//   struct Loader {
//       static constexpr bool K_CONTIG = ...;   // true: consecutive k are adjacent in memory
//       __device__ T operator()(i64 row, i64 k) const;   // only called for row < rows, k < K
//   };
//   A loader's rows are m in [0, M); B loader's rows are n in [0, N) (B is "[N, K]", as torch
//   weights are). K_CONTIG only picks which way the threads walk the tile while loading, so that
//   a warp's loads coalesce; any strides are correct either way.
//
//   struct Epilogue { __device__ void operator()(i64 m, i64 n, float acc) const; };
//   called exactly once for every m < M, n < N of the tile.
//
// Ready-made pieces: StridedLoader<T, K_CONTIG> (p[row * s_row + k * s_k]), and the kernel
//   gemm_kernel<T, TO, A_KC, B_KC, ACT>: batched strided C = act(alpha A B^T + beta C + bias[n])
// documented at its definition below.
#pragma once

#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define DLGPU_WMMA 1
#include <mma.h>
#else
#define DLGPU_WMMA 0
#endif

namespace dlgpu {

constexpr int GEMM_BM = 64, GEMM_BN = 64, GEMM_THREADS = 256;

// Launch bounds for kernels built on gemm_tile: 256 threads, at least 2 blocks per SM, so ptxas
// budgets <= 128 registers per thread (without the second number it may pick 64 and spill).
#define DLGPU_GEMM_BOUNDS __launch_bounds__(256, 2)

template <typename T, bool KC> struct StridedLoader {
    static constexpr bool K_CONTIG = KC;
    const T* p;
    i64 s_row, s_k;
    __device__ __forceinline__ T operator()(i64 row, i64 k) const { return p[row * s_row + k * s_k]; }
};

// ---------------------------------------------------------------- FFMA mainloop (any T)
template <typename T, class LA, class LB, class EPI>
__device__ __forceinline__ void gemm_tile_ffma(const LA& la, const LB& lb, const EPI& epi, i64 M, i64 N, i64 K,
                                               i64 m0, i64 n0) {
    constexpr int BK = 16;
    __shared__ float As[BK][GEMM_BM + 4];  // k-major, so the inner loop reads rows of m
    __shared__ float Bs[BK][GEMM_BN + 4];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

    for (i64 k0 = 0; k0 < K; k0 += BK) {
#pragma unroll 2  // fully unrolled, the gather loaders of conv push fp32 to 128 registers
        for (int i = 0; i < (BK * GEMM_BM) / GEMM_THREADS; ++i) {
            const int idx = tid + i * GEMM_THREADS;
            const int r = LA::K_CONTIG ? idx / BK : idx % GEMM_BM;
            const int c = LA::K_CONTIG ? idx % BK : idx / GEMM_BM;
            const i64 gr = m0 + r, gk = k0 + c;
            As[c][r] = (gr < M && gk < K) ? to_f32(la(gr, gk)) : 0.f;
        }
#pragma unroll 2
        for (int i = 0; i < (BK * GEMM_BN) / GEMM_THREADS; ++i) {
            const int idx = tid + i * GEMM_THREADS;
            const int r = LB::K_CONTIG ? idx / BK : idx % GEMM_BN;
            const int c = LB::K_CONTIG ? idx % BK : idx / GEMM_BN;
            const i64 gr = n0 + r, gk = k0 + c;
            Bs[c][r] = (gr < N && gk < K) ? to_f32(lb(gr, gk)) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const i64 m = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const i64 n = n0 + tx + 16 * j;
            if (m < M && n < N) epi(m, n, acc[i][j]);
        }
    }
}

#if DLGPU_WMMA
// ---------------------------------------------------------------- WMMA mainloop (__half, bf16)
template <typename T, class LA, class LB, class EPI>
__device__ __forceinline__ void gemm_tile_wmma(const LA& la, const LB& lb, const EPI& epi, i64 M, i64 N, i64 K,
                                               i64 m0, i64 n0) {
    using namespace nvcuda;
    // leading dimensions: multiples of 8 elements (16-bit) / 4 (fp32), and every fragment pointer
    // below lands on a 32-byte boundary (16*LDA*2, 16*LDB*2, 16*LDC*4 and the column offsets are)
    constexpr int BK = 32, LDA = BK + 8, LDB = GEMM_BN + 8, LDC = GEMM_BN + 4;
    __shared__ __align__(128) T As[GEMM_BM * LDA];     // [m][k]
    __shared__ __align__(128) T Bs[BK * LDB];          // [k][n]
    __shared__ __align__(128) float Cs[GEMM_BM * LDC];  // [m][n] accumulators for the epilogue
    const int tid = threadIdx.x, warp = tid >> 5, wm = warp & 3, wn = warp >> 2;
    const T zero = from_f32<T>(0.f);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c0, c1;
    wmma::fill_fragment(c0, 0.f);
    wmma::fill_fragment(c1, 0.f);

    for (i64 k0 = 0; k0 < K; k0 += BK) {
#pragma unroll 4  // full unrolling pushes the bf16 kernels past 128 registers
        for (int i = 0; i < (BK * GEMM_BM) / GEMM_THREADS; ++i) {
            const int idx = tid + i * GEMM_THREADS;
            const int r = LA::K_CONTIG ? idx / BK : idx % GEMM_BM;
            const int c = LA::K_CONTIG ? idx % BK : idx / GEMM_BM;
            const i64 gr = m0 + r, gk = k0 + c;
            As[r * LDA + c] = (gr < M && gk < K) ? la(gr, gk) : zero;
        }
#pragma unroll 4
        for (int i = 0; i < (BK * GEMM_BN) / GEMM_THREADS; ++i) {
            const int idx = tid + i * GEMM_THREADS;
            const int r = LB::K_CONTIG ? idx / BK : idx % GEMM_BN;
            const int c = LB::K_CONTIG ? idx % BK : idx / GEMM_BN;
            const i64 gr = n0 + r, gk = k0 + c;
            Bs[c * LDB + r] = (gr < N && gk < K) ? lb(gr, gk) : zero;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b0, b1;
            wmma::load_matrix_sync(a, As + (16 * wm) * LDA + kk, LDA);
            wmma::load_matrix_sync(b0, Bs + kk * LDB + 32 * wn, LDB);
            wmma::load_matrix_sync(b1, Bs + kk * LDB + 32 * wn + 16, LDB);
            wmma::mma_sync(c0, a, b0, c0);
            wmma::mma_sync(c1, a, b1, c1);
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(Cs + (16 * wm) * LDC + 32 * wn, c0, LDC, wmma::mem_row_major);
    wmma::store_matrix_sync(Cs + (16 * wm) * LDC + 32 * wn + 16, c1, LDC, wmma::mem_row_major);
    __syncthreads();
    for (int idx = tid; idx < GEMM_BM * GEMM_BN; idx += GEMM_THREADS) {
        const int r = idx / GEMM_BN, c = idx % GEMM_BN;
        const i64 m = m0 + r, n = n0 + c;
        if (m < M && n < N) epi(m, n, Cs[r * LDC + c]);
    }
}
#endif

// One 64x64 tile at (m0, n0); every thread of the 256-thread block must call it (it synchronises).
template <typename T, class LA, class LB, class EPI>
__device__ __forceinline__ void gemm_tile(const LA& la, const LB& lb, const EPI& epi, i64 M, i64 N, i64 K, i64 m0,
                                          i64 n0) {
#if DLGPU_WMMA
    if constexpr (is_f32<T>::value) {
        gemm_tile_ffma<T>(la, lb, epi, M, N, K, m0, n0);
    } else {
        gemm_tile_wmma<T>(la, lb, epi, M, N, K, m0, n0);
    }
#else
    gemm_tile_ffma<T>(la, lb, epi, M, N, K, m0, n0);
#endif
}

// C = act(alpha * acc + beta * C_old + bias[n]) stored as TO
template <typename T, typename TO, int ACT> struct BiasActEpilogue {
    TO* c;
    const T* bias;  // [N] or nullptr
    i64 scm, scn;
    float alpha, beta, slope;
    __device__ __forceinline__ void operator()(i64 m, i64 n, float acc) const {
        TO* dst = c + m * scm + n * scn;
        float z = alpha * acc;
        if (beta != 0.f) z += beta * to_f32(*dst);
        if (bias != nullptr) z += to_f32(bias[n]);
        *dst = from_f32<TO>(act_fwd<ACT>(z, slope));
    }
};

// A loader shifted along K (split-K: chunk s reads k in [s * chunk, ...)).
template <class L> struct KOffsetLoader {
    static constexpr bool K_CONTIG = L::K_CONTIG;
    L inner;
    i64 k0;
    __device__ __forceinline__ auto operator()(i64 row, i64 k) const { return inner(row, k + k0); }
};

// Split-K partials: part[row][col] = acc (part already offset to this split's [rows][cols + 1]).
struct PartialEpilogue {
    float* part;
    i64 ld;  // cols + 1
    __device__ __forceinline__ void operator()(i64 m, i64 n, float acc) const { part[m * ld + n] = acc; }
};

}  // namespace dlgpu

// ------------------------------------------------------------------ the strided GEMM kernel
// C[b][m, n] = act(alpha * sum_k A[b](m, k) B[b](n, k) + beta * C[b][m, n] + bias[n])
//   A(m, k) = A[b * batch_a + m * sam + k * sak]        (A_KC: sak == 1 is the fast layout)
//   B(n, k) = B[b * batch_b + n * sbn + k * sbk]        (B_KC: sbk == 1 is the fast layout)
//   C(m, n) = C[b * batch_c + m * scm + n * scn]        (TO: T, or float for fp32 workspaces)
// bias may be nullptr; beta == 0 never reads C (it may hold garbage); ACT: ACT_NONE..ACT_TANH.
// Grid: (ceil(M / 64), ceil(N / 64), batches), block: 256 threads, no dynamic shared memory.
// Name expression: "gemm_kernel<float, float, true, true, 0>" (T, TO, A_KC, B_KC, ACT).
template <typename T, typename TO, bool A_KC, bool B_KC, int ACT>
__global__ void DLGPU_GEMM_BOUNDS
gemm_kernel(const T* __restrict__ A, const T* __restrict__ B, const T* __restrict__ bias, TO* C,
            long long M, long long N, long long K, long long sam, long long sak, long long sbn, long long sbk,
            long long scm, long long scn, long long batch_a, long long batch_b, long long batch_c, float alpha,
            float beta, float slope) {
    using namespace dlgpu;
    const i64 b = blockIdx.z;
    const StridedLoader<T, A_KC> la{A + b * batch_a, sam, sak};
    const StridedLoader<T, B_KC> lb{B + b * batch_b, sbn, sbk};
    const BiasActEpilogue<T, TO, ACT> epi{C + b * batch_c, bias, scm, scn, alpha, beta, slope};
    gemm_tile<T>(la, lb, epi, M, N, K, (i64)blockIdx.x * GEMM_BM, (i64)blockIdx.y * GEMM_BN);
}

// ------------------------------------------------------------------ split-K weight gradients
// Weight gradients reduce over a long K (batch x positions) into a small [rows, cols] matrix, so
// they are split into S chunks of K, each writing fp32 partials part[s][row][0..cols] (column
// `cols` is the bias gradient: the B loader returns 1 there). This kernel sums the S partials in
// a fixed order (deterministic) into dw[row][col] (col < cols) and db[row] (col == cols).
// Grid: ceil(rows * (cols + 1) / 256) blocks of 256 threads.
template <typename T>
__global__ void splitk_dwdb_finish_kernel(const float* __restrict__ part, T* __restrict__ dw, T* __restrict__ db,
                                          long long splits, long long rows, long long cols) {
    using namespace dlgpu;
    const i64 per = rows * (cols + 1);
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= per) return;
    float acc = 0.f;
    for (i64 s = 0; s < splits; ++s) acc += part[s * per + i];
    const i64 r = i / (cols + 1), c = i % (cols + 1);
    if (c < cols) {
        dw[r * cols + c] = from_f32<T>(acc);
    } else {
        db[r] = from_f32<T>(acc);
    }
}
