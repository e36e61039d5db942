// GRU (dlgpu.reference.gru; variants cudnn and cho), CUDA C for the cupy backend.
//
// xp = x W_ih^T + b_ih for all steps is one GEMM (gemm_kernel, fp32 [T, B, 3H]).
// cudnn: r = s(xp_r + h W_hr^T + b_hr), z likewise, hn = h W_hn^T + b_hn, n = tanh(xp_n + r hn),
//   h_t = n + z (h_{t-1} - n): the three products of a step share h_{t-1}, so ONE per-step kernel
//   (gru_fwd_step) or one persistent launch (gru_persist) computes them with the cell in the
//   epilogue; workspace [r | z | n | hn].
// cho: the candidate needs W_hn (r h_{t-1}) for every unit's r: the reset-gated kernels of
//   recurrent.cuh (two launches per step, or reset_persist with two grid barriers per step).
//
// Backward (cudnn, gru_bwd_step): dh_t = carry + d_output[t] + [d_h_n] + (da_r, da_z, dhn)_{t+1} W_hh,
// gradients (da_r, da_z, da_n, dhn) to a [T, B, 4H] buffer, carry = dh_t z (fp32). cho: the
// reset-gated backward kernels. Weight gradients are GEMMs after the loop, biases column sums.
#include "recurrent.cuh"

template <typename T, int BB>
__global__ void REC_STEP_BOUNDS
gru_fwd_step(const float* __restrict__ xp, const T* __restrict__ hprev, const T* __restrict__ w_hh,
             const T* __restrict__ b_hh, T* __restrict__ out, T* __restrict__ ws, long long B, long long H) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx;
    float acc[RB][3];
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
        for (int g = 0; g < 3; ++g) acc[r][g] = 0.f;
    if (hprev) tile_mm_nt<T, T, 3, BB>(acc, hprev, H, B, b0, w_hh, H, H, H, j0, H);
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const float* x = xp + b * 3 * H + j;
        T* w = ws + b * 4 * H + j;
        const float rg = sigmoid_f(x[0] + acc[r][0] + opt(b_hh, j));
        const float zg = sigmoid_f(x[H] + acc[r][1] + opt(b_hh, H + j));
        const float hn = acc[r][2] + opt(b_hh, 2 * H + j);
        const float n = tanhf(x[2 * H] + rg * hn), hp = opt(hprev, b * H + j);
        w[0] = from_f32<T>(rg);
        w[H] = from_f32<T>(zg);
        w[2 * H] = from_f32<T>(n);
        w[3 * H] = from_f32<T>(hn);
        out[b * H + j] = from_f32<T>(n + zg * (hp - n));
    }
}

#ifdef DLGPU_PERSISTENT  // gru_persist: compiled only into the cooperative module
template <typename T>
__global__ void __launch_bounds__(dlgpu::REC_THREADS, 1)
gru_persist(const float* __restrict__ xp, const T* __restrict__ h0, const T* __restrict__ w_hh,
            const T* __restrict__ b_hh, T* __restrict__ out, T* __restrict__ ws, long long Tn, long long B, long long H,
            int HP, int HB, int BT) {
    using namespace dlgpu;
    namespace cg = cooperative_groups;
    if ((i64)gridDim.x * HB < H) return;  // the launch lost blocks: every block leaves, no barrier hangs
    extern __shared__ __align__(16) unsigned char rec_smem[];
    T* Ws = reinterpret_cast<T*>(rec_smem);
    T* Hs = Ws + (i64)3 * HB * HP;
    const Persist p = persist_shape(B, H, HP, HB, BT);
    const i64 BH = B * H;
    cg::grid_group grid = cg::this_grid();
    persist_load_weights(Ws, w_hh, 3, 0, p);
    for (i64 t = 0; t < Tn; ++t) {
        const T* hprev = t == 0 ? h0 : out + (t - 1) * BH;
        const float* xt = xp + t * 3 * BH;
        T* wt = ws + t * 4 * BH;
        for (i64 b0 = 0; b0 < B; b0 += BT) {
            __syncthreads();
            persist_stage(Hs, hprev, b0, p);
            __syncthreads();
            const int nrows = (int)(B - b0 < BT ? B - b0 : BT);
            persist_matvec<T, 3>(Hs, Ws, nrows, p, [&](int row, int jj, const float* z) {
                const i64 b = b0 + row, j = p.j0 + jj;
                const float* x = xt + b * 3 * H + j;
                T* w = wt + b * 4 * H + j;
                const float rg = sigmoid_f(x[0] + z[0] + opt(b_hh, j));
                const float zg = sigmoid_f(x[H] + z[1] + opt(b_hh, H + j));
                const float hn = z[2] + opt(b_hh, 2 * H + j);
                const float n = tanhf(x[2 * H] + rg * hn), hp = to_f32(Hs[(i64)row * HP + j]);
                w[0] = from_f32<T>(rg);
                w[H] = from_f32<T>(zg);
                w[2 * H] = from_f32<T>(n);
                w[3 * H] = from_f32<T>(hn);
                out[t * BH + b * H + j] = from_f32<T>(n + zg * (hp - n));
            });
        }
        if (t + 1 < Tn) grid.sync();
    }
}
#endif  // DLGPU_PERSISTENT

// dnext: step t+1's [B, 4H] gradients (null at t = T-1); carry fp32 [B, H]: read unless first
// (t = T-1), rewritten with dh_t z; hprev: h_{t-1} (never null: the loader materialises zeros).
template <typename T, int BB>
__global__ void REC_STEP_BOUNDS
gru_bwd_step(const T* __restrict__ dnext, const T* __restrict__ w_hh, const T* __restrict__ dh_n,
             const T* __restrict__ d_out, float* __restrict__ carry, const T* __restrict__ ws,
             const T* __restrict__ hprev, T* __restrict__ dg, long long B, long long H, int first) {
    using namespace dlgpu;
    constexpr int NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx;
    float acc[RB];
    // (da_r, da_z) against W_hr, W_hz (columns 0..2H, rows 0..2H), dhn against W_hn (3H.., 2H..)
    tile_dh<T, BB, 2>(acc, dnext, 4 * H, w_hh, H, B, b0, j0, Segments{0, 0, 2 * H, 3 * H, 2 * H, H});
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const i64 o = b * H + j;
        const T* w = ws + b * 4 * H + j;
        T* d = dg + b * 4 * H + j;
        const float g = acc[r] + (first ? 0.f : carry[o]) + opt(dh_n, o) + opt(d_out, o);
        const float rg = to_f32(w[0]), zg = to_f32(w[H]), n = to_f32(w[2 * H]), hn = to_f32(w[3 * H]);
        const float hp = to_f32(hprev[o]);
        const float da_n = (g - g * zg) * dtanh(n);
        d[0] = from_f32<T>(da_n * hn * dsig(rg));
        d[H] = from_f32<T>(g * (hp - n) * dsig(zg));
        d[2 * H] = from_f32<T>(da_n);
        d[3 * H] = from_f32<T>(da_n * rg);
        carry[o] = g * zg;
    }
}
