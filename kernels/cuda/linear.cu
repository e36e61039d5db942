// Fully-connected layer y = act(x W^T + b) (dlgpu.reference.linear), CUDA C for the cupy backend.
//
// Forward: linear_fwd_kernel, gemm.cuh's tile with A = x [N, I], B = W [O, I] (both contiguous
// along K) and bias + activation in the epilogue (the activation a runtime code: one instantiation
// per dtype instead of five).
// Backward, dz = act'(y) * dy computed inside the operand loaders (rounded to T, as the reference
// keeps dz in the storage dtype) -- never stored:
//   linear_dx_kernel:    dx [N, I] = dz [N, O] W [O, I]
//   linear_dwdb_kernel:  [dW | db] [O, I + 1] = dz^T [O, N] [x | 1] [N, I + 1], split-K over N
//                        into fp32 partials; splitk_dwdb_finish_kernel sums them in a fixed order.
// Napkin math (N = 4096, I = O = 1024, fp16): 3 GEMMs of 8.6 GFLOP each; at ~400 TFLOP/s of
// fp16 tensor cores that is ~20 us each if fed; this single-stage tile will not reach that.
#include "gemm.cuh"

using namespace dlgpu;

// dz(n, o) for A(m = n, k = o) (dx) or, TRANS, A(m = o, k = n) (dW)
template <typename T, bool TRANS> struct DzLoader {
    static constexpr bool K_CONTIG = !TRANS;
    const T* dy;
    const T* out;  // the forward's output (nullptr when act == ACT_NONE)
    i64 O;
    int act;
    float slope;
    __device__ __forceinline__ T operator()(i64 r, i64 k) const {
        const i64 i = TRANS ? k * O + r : r * O + k;
        if (act == ACT_NONE) return dy[i];
        return from_f32<T>(act_bwd_rt(act, to_f32(dy[i]), to_f32(out[i]), slope));
    }
};

// B(n = i, k = row) = x[row, i] for i < I, and 1 in the extra column i == I (the bias gradient)
template <typename T> struct XOnesLoader {
    static constexpr bool K_CONTIG = false;
    const T* x;
    i64 I;
    __device__ __forceinline__ T operator()(i64 i, i64 row) const { return i < I ? x[row * I + i] : from_f32<T>(1.f); }
};

template <typename T> struct StoreEpilogue {
    T* c;
    i64 ld;
    __device__ __forceinline__ void operator()(i64 m, i64 n, float acc) const { c[m * ld + n] = from_f32<T>(acc); }
};

template <typename T> struct BiasActRtEpilogue {
    T* y;
    const T* bias;  // [O] or nullptr
    i64 O;
    int act;
    float slope;
    __device__ __forceinline__ void operator()(i64 n, i64 o, float acc) const {
        const float z = bias != nullptr ? acc + to_f32(bias[o]) : acc;
        y[n * O + o] = from_f32<T>(act_fwd_rt(act, z, slope));
    }
};

// Grid: (ceil(N / 64), ceil(O / 64)), 256 threads.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
linear_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                  long long N, long long O, long long I, int act, float slope) {
    const StridedLoader<T, true> la{x, I, 1};
    const StridedLoader<T, true> lb{w, I, 1};
    const BiasActRtEpilogue<T> epi{y, bias, O, act, slope};
    gemm_tile<T>(la, lb, epi, N, O, I, (i64)blockIdx.x * GEMM_BM, (i64)blockIdx.y * GEMM_BN);
}

// Grid: (ceil(N / 64), ceil(I / 64)), 256 threads.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
linear_dx_kernel(const T* __restrict__ dy, const T* __restrict__ out, const T* __restrict__ w, T* __restrict__ dx,
                 long long N, long long O, long long I, int act, float slope) {
    const DzLoader<T, false> la{dy, out, O, act, slope};
    const StridedLoader<T, false> lb{w, 1, I};  // B(n = i, k = o) = W[o, i]
    const StoreEpilogue<T> epi{dx, I};
    gemm_tile<T>(la, lb, epi, N, I, O, (i64)blockIdx.x * GEMM_BM, (i64)blockIdx.y * GEMM_BN);
}

// Grid: (ceil(O / 64), ceil((I + 1) / 64), splits), 256 threads; part: [splits, O, I + 1] fp32.
template <typename T>
__global__ void DLGPU_GEMM_BOUNDS
linear_dwdb_kernel(const T* __restrict__ dy, const T* __restrict__ out, const T* __restrict__ x,
                   float* __restrict__ part, long long N, long long O, long long I, long long chunk, int act,
                   float slope) {
    const i64 s = blockIdx.z, k0 = s * chunk;
    const i64 kc = N - k0 < chunk ? N - k0 : chunk;
    const KOffsetLoader<DzLoader<T, true>> la{{dy, out, O, act, slope}, k0};
    const KOffsetLoader<XOnesLoader<T>> lb{{x, I}, k0};
    const PartialEpilogue epi{part + s * O * (I + 1), I + 1};
    gemm_tile<T>(la, lb, epi, O, I + 1, kc, (i64)blockIdx.x * GEMM_BM, (i64)blockIdx.y * GEMM_BN);
}
