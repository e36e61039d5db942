// Elman RNN (dlgpu.reference.rnn), CUDA C for the cupy backend.
//
//   h_t = phi(xp_t + b_hh + h_{t-1} W_hh^T),  xp = x W_ih^T + b_ih for all steps (gemm_kernel, fp32)
//
// rnn_fwd_step:  one launch per step, a tile of REC_BH units x BB rows, phi in the epilogue.
// rnn_persist:   the whole sequence in one cooperative launch (recurrent.cuh's persistent scheme).
// rnn_bwd_step:  dz_t = (d_output[t] + [d_h_n at t = T-1] + dz_{t+1} W_hh) * phi'(h_t), phi' from the
//                output (1 - h^2 for tanh, [h > 0] for relu); the weight gradients are GEMMs after
//                the loop, db a column sum (recurrent.cuh).
#include "recurrent.cuh"

template <typename T, int BB, bool RELU>
__global__ void REC_STEP_BOUNDS
rnn_fwd_step(const float* __restrict__ xp, const T* __restrict__ hprev, const T* __restrict__ w_hh,
             const T* __restrict__ b_hh, T* __restrict__ out, long long B, long long H) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx;
    float acc[RB][1];
#pragma unroll
    for (int r = 0; r < RB; ++r) acc[r][0] = 0.f;
    if (hprev) tile_mm_nt<T, T, 1, BB>(acc, hprev, H, B, b0, w_hh, H, H, H, j0, H);
    if (j >= H) return;
    const float bh = opt(b_hh, j);
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const float z = xp[b * H + j] + acc[r][0] + bh;
        out[b * H + j] = from_f32<T>(RELU ? (z < 0.f ? 0.f : z) : tanhf(z));  // relu keeps NaN
    }
}

#ifdef DLGPU_PERSISTENT  // rnn_persist: compiled only into the cooperative module
template <typename T, bool RELU>
__global__ void __launch_bounds__(dlgpu::REC_THREADS, 1)
rnn_persist(const float* __restrict__ xp, const T* __restrict__ h0, const T* __restrict__ w_hh,
            const T* __restrict__ b_hh, T* __restrict__ out, long long Tn, long long B, long long H, int HP, int HB,
            int BT) {
    using namespace dlgpu;
    namespace cg = cooperative_groups;
    if ((i64)gridDim.x * HB < H) return;  // the launch lost blocks: every block leaves, no barrier hangs
    extern __shared__ __align__(16) unsigned char rec_smem[];
    T* Ws = reinterpret_cast<T*>(rec_smem);
    T* Hs = Ws + (i64)HB * HP;
    const Persist p = persist_shape(B, H, HP, HB, BT);
    const i64 BH = B * H;
    cg::grid_group grid = cg::this_grid();
    persist_load_weights(Ws, w_hh, 1, 0, p);
    for (i64 t = 0; t < Tn; ++t) {
        const T* hprev = t == 0 ? h0 : out + (t - 1) * BH;
        const float* xt = xp + t * BH;
        T* ot = out + t * BH;
        for (i64 b0 = 0; b0 < B; b0 += BT) {
            __syncthreads();
            persist_stage(Hs, hprev, b0, p);
            __syncthreads();
            const int nrows = (int)(B - b0 < BT ? B - b0 : BT);
            persist_matvec<T, 1>(Hs, Ws, nrows, p, [&](int row, int jj, const float* z) {
                const i64 b = b0 + row, j = p.j0 + jj;
                const float v = xt[b * H + j] + z[0] + opt(b_hh, j);
                ot[b * H + j] = from_f32<T>(RELU ? (v < 0.f ? 0.f : v) : tanhf(v));
            });
        }
        if (t + 1 < Tn) grid.sync();
    }
}
#endif  // DLGPU_PERSISTENT

// dz_next: dz_{t+1} [B, H] (null at t = T-1); dh_n: d_h_n (read when given, only at t = T-1).
template <typename T, int BB, bool RELU>
__global__ void REC_STEP_BOUNDS
rnn_bwd_step(const T* __restrict__ dz_next, const T* __restrict__ w_hh, const T* __restrict__ dh_n,
             const T* __restrict__ d_out, const T* __restrict__ h, T* __restrict__ dz, long long B, long long H) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx;
    float acc[RB];
    tile_dh<T, BB, 1>(acc, dz_next, H, w_hh, H, B, b0, j0, Segments{0, 0, H, 0, 0, 0});
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const i64 o = b * H + j;
        const float dh = acc[r] + opt(dh_n, o) + opt(d_out, o), hv = to_f32(h[o]);
        dz[o] = from_f32<T>(RELU ? (hv > 0.f ? dh : 0.f) : dh * dtanh(hv));
    }
}
