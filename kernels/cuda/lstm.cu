// LSTM (dlgpu.reference.lstm; variants forget, no_forget, peephole), CUDA C for the cupy backend.
//
// xp = x W_ih^T + b_ih for all steps is one GEMM (gemm_kernel, fp32 [T, B, G H]). Then per step
// (lstm_fwd_step) or for the whole sequence (lstm_persist) the recurrent product for all G gates
// of a unit, and in the epilogue the gates, peepholes (i, f see c_{t-1}; o sees c_t), the cell
// update, h_t, the workspace row [gates | c_t] (storage dtype). The cell state is carried between
// steps in an fp32 buffer [B, H] (each element read and rewritten by the one thread owning it).
//
// Backward (lstm_bwd_step, t = T-1 .. 0): dh_t = d_output[t] + [d_h_n] + dz_{t+1} W_hh (K = G H),
// dc carried in an fp32 buffer; writes dz_t [B, G H]. Weight gradients are GEMMs after the loop,
// db a column sum, dP the products lstm_peep_partial sums (then a column sum).
#include "recurrent.cuh"

enum { LSTM_FORGET = 0, LSTM_NO_FORGET = 1, LSTM_PEEPHOLE = 2 };

template <int VAR> struct LstmGates {
    static constexpr int G = VAR == LSTM_NO_FORGET ? 3 : 4;
};

// One (b, j) of a forward step: z[g] the gate pre-activations without peepholes; updates c.
// Writes the workspace row (gates in order, then c_t) and returns h_t.
template <typename T, int VAR>
__device__ __forceinline__ float lstm_cell(const float* z, float& c, const T* __restrict__ peep, dlgpu::i64 j,
                                           dlgpu::i64 H, T* __restrict__ wsrow) {
    using namespace dlgpu;
    constexpr int G = LstmGates<VAR>::G;
    float gate[G];
    if (VAR == LSTM_NO_FORGET) {
        const float i = sigmoid_f(z[0]), g = tanhf(z[1]);
        c = c + i * g;
        gate[0] = i;
        gate[1] = g;
        gate[G - 1] = sigmoid_f(z[2]);
    } else {
        float zi = z[0], zf = z[1];
        if (VAR == LSTM_PEEPHOLE) {
            zi += to_f32(peep[j]) * c;  // c is still c_{t-1}
            zf += to_f32(peep[H + j]) * c;
        }
        const float i = sigmoid_f(zi), f = sigmoid_f(zf), g = tanhf(z[2]);
        c = f * c + i * g;
        float zo = z[G - 1];
        if (VAR == LSTM_PEEPHOLE) zo += to_f32(peep[2 * H + j]) * c;  // c is now c_t
        gate[0] = i;
        gate[1] = f;
        gate[2] = g;
        gate[G - 1] = sigmoid_f(zo);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) wsrow[g * H] = from_f32<T>(gate[g]);
    wsrow[G * H] = from_f32<T>(c);
    return gate[G - 1] * tanhf(c);
}

// first: t = 0 (the state comes from c0, or zeros when c0 is null). One block per SM as the bound:
// four gates x four rows of accumulators need ~145 registers, and spill under REC_STEP_BOUNDS' 128.
template <typename T, int BB, int VAR>
__global__ void __launch_bounds__(dlgpu::REC_THREADS, 1)
lstm_fwd_step(const float* __restrict__ xp, const T* __restrict__ hprev, const T* __restrict__ c0,
              float* __restrict__ cst, const T* __restrict__ w_hh, const T* __restrict__ b_hh,
              const T* __restrict__ peep, T* __restrict__ out, T* __restrict__ ws, long long B, long long H,
              int first) {
    using namespace dlgpu;
    constexpr int G = LstmGates<VAR>::G, NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx, GH = G * H;
    float acc[RB][G];
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
        for (int g = 0; g < G; ++g) acc[r][g] = 0.f;
    if (hprev) tile_mm_nt<T, T, G, BB>(acc, hprev, H, B, b0, w_hh, H, H, H, j0, H);
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        float z[G];
#pragma unroll
        for (int g = 0; g < G; ++g) z[g] = xp[b * GH + g * H + j] + acc[r][g] + opt(b_hh, g * H + j);
        const i64 o = b * H + j;
        float c = first ? opt(c0, o) : cst[o];
        const float h = lstm_cell<T, VAR>(z, c, peep, j, H, ws + b * (GH + H) + j);
        cst[o] = c;
        out[o] = from_f32<T>(h);
    }
}

#ifdef DLGPU_PERSISTENT  // lstm_persist: compiled only into the cooperative module
// The whole forward in one cooperative launch; cst [B, H] fp32 ends holding c_T.
template <typename T, int VAR>
__global__ void __launch_bounds__(dlgpu::REC_THREADS, 1)
lstm_persist(const float* __restrict__ xp, const T* __restrict__ h0, const T* __restrict__ c0,
             float* __restrict__ cst, const T* __restrict__ w_hh, const T* __restrict__ b_hh,
             const T* __restrict__ peep, T* __restrict__ out, T* __restrict__ ws, long long Tn, long long B,
             long long H, int HP, int HB, int BT) {
    using namespace dlgpu;
    namespace cg = cooperative_groups;
    constexpr int G = LstmGates<VAR>::G;
    if ((i64)gridDim.x * HB < H) return;  // the launch lost blocks: every block leaves, no barrier hangs
    extern __shared__ __align__(16) unsigned char rec_smem[];
    T* Ws = reinterpret_cast<T*>(rec_smem);
    T* Hs = Ws + (i64)G * HB * HP;
    const Persist p = persist_shape(B, H, HP, HB, BT);
    const i64 BH = B * H, GH = G * H;
    cg::grid_group grid = cg::this_grid();
    persist_load_weights(Ws, w_hh, G, 0, p);
    for (i64 t = 0; t < Tn; ++t) {
        const T* hprev = t == 0 ? h0 : out + (t - 1) * BH;
        const float* xt = xp + t * B * GH;
        T* wt = ws + t * B * (GH + H);
        for (i64 b0 = 0; b0 < B; b0 += BT) {
            __syncthreads();
            persist_stage(Hs, hprev, b0, p);
            __syncthreads();
            const int nrows = (int)(B - b0 < BT ? B - b0 : BT);
            persist_matvec<T, G>(Hs, Ws, nrows, p, [&](int row, int jj, const float* zr) {
                const i64 b = b0 + row, j = p.j0 + jj, o = b * H + j;
                float z[G];
#pragma unroll
                for (int g = 0; g < G; ++g) z[g] = xt[b * GH + g * H + j] + zr[g] + opt(b_hh, g * H + j);
                float c = t == 0 ? opt(c0, o) : cst[o];  // this thread wrote cst[o] last step
                const float h = lstm_cell<T, VAR>(z, c, peep, j, H, wt + b * (GH + H) + j);
                cst[o] = c;
                out[t * BH + o] = from_f32<T>(h);
            });
        }
        if (t + 1 < Tn) grid.sync();
    }
}
#endif  // DLGPU_PERSISTENT

// Step t of BPTT. dz_next: dz_{t+1} [B, G H] (null at t = T-1); dh_n, dc_n: read at t = T-1 (last).
// dcst: fp32 [B, H], dc flowing back (read unless last, rewritten with dc_{t-1}).
// cprev: c_{t-1} with row stride ldc (ws[t-1]'s c block, or c0), null for zeros.
template <typename T, int BB, int VAR>
__global__ void REC_STEP_BOUNDS
lstm_bwd_step(const T* __restrict__ dz_next, const T* __restrict__ w_hh, const T* __restrict__ dh_n,
              const T* __restrict__ dc_n, const T* __restrict__ d_out, float* __restrict__ dcst,
              const T* __restrict__ ws, const T* __restrict__ cprev, long long ldc, const T* __restrict__ peep,
              T* __restrict__ dz, long long B, long long H, int last) {
    using namespace dlgpu;
    constexpr int G = LstmGates<VAR>::G, NTY = Tile<BB>::NTY, RB = Tile<BB>::RB;
    const int tx = threadIdx.x % REC_BH, ty = threadIdx.x / REC_BH;
    const i64 j0 = (i64)blockIdx.x * REC_BH, b0 = (i64)blockIdx.y * BB, j = j0 + tx, GH = G * H;
    float acc[RB];
    tile_dh<T, BB, 1>(acc, dz_next, GH, w_hh, H, B, b0, j0, Segments{0, 0, GH, 0, 0, 0});
    if (j >= H) return;
#pragma unroll
    for (int r = 0; r < RB; ++r) {
        const i64 b = b0 + ty + NTY * r;
        if (b >= B) continue;
        const i64 o = b * H + j;
        const T* w = ws + b * (GH + H) + j;
        T* d = dz + b * GH + j;
        const float dh = acc[r] + opt(dh_n, o) + opt(d_out, o);
        float dc = last ? opt(dc_n, o) : dcst[o];
        const float c = to_f32(w[GH]), o_g = to_f32(w[(G - 1) * H]), tc = tanhf(c);
        const float dzo = dh * tc * dsig(o_g);
        dc += dh * o_g * dtanh(tc);
        if (VAR == LSTM_PEEPHOLE) dc += dzo * to_f32(peep[2 * H + j]);
        if (VAR == LSTM_NO_FORGET) {
            const float i = to_f32(w[0]), g = to_f32(w[H]);
            d[0] = from_f32<T>(dc * g * dsig(i));
            d[H] = from_f32<T>(dc * i * dtanh(g));
            d[2 * H] = from_f32<T>(dzo);
            dcst[o] = dc;
        } else {
            const float i = to_f32(w[0]), f = to_f32(w[H]), g = to_f32(w[2 * H]);
            const float cp = cprev ? to_f32(cprev[b * ldc + j]) : 0.f;
            const float dzi = dc * g * dsig(i), dzf = dc * cp * dsig(f);
            d[0] = from_f32<T>(dzi);
            d[H] = from_f32<T>(dzf);
            d[2 * H] = from_f32<T>(dc * i * dtanh(g));
            d[3 * H] = from_f32<T>(dzo);
            float dcp = dc * f;
            if (VAR == LSTM_PEEPHOLE) dcp += dzi * to_f32(peep[j]) + dzf * to_f32(peep[H + j]);
            dcst[o] = dcp;
        }
    }
}

// Peephole gradient partials: part[s, k H + j] = sum over rows m = t B + b of slab s of
//   k = 0: dz_i c_{t-1}    k = 1: dz_f c_{t-1}    k = 2: dz_o c_t
// (c_t from the workspace, c_{-1} = c0 or zeros). G = 4. Block: 256 threads = 32 units x 8 row
// lanes; grid (ceil(H / 32), slabs); then rec_colsum over [slabs, 3H].
template <typename T>
__global__ void __launch_bounds__(256)
lstm_peep_partial(const T* __restrict__ dz, const T* __restrict__ ws, const T* __restrict__ c0, float* __restrict__ part,
                  long long M, long long B, long long H, long long rows) {
    using namespace dlgpu;
    __shared__ float red[3][8][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const i64 j = (i64)blockIdx.x * 32 + tx, GH = 4 * H, W = 5 * H;
    const i64 m0 = (i64)blockIdx.y * rows, m1 = m0 + rows < M ? m0 + rows : M;
    float si = 0.f, sf = 0.f, so = 0.f;
    if (j < H) {
        for (i64 m = m0 + ty; m < m1; m += 8) {
            const float cp = m >= B ? to_f32(ws[(m - B) * W + GH + j]) : opt(c0, m * H + j);
            const float c = to_f32(ws[m * W + GH + j]);
            si += to_f32(dz[m * GH + j]) * cp;
            sf += to_f32(dz[m * GH + H + j]) * cp;
            so += to_f32(dz[m * GH + 3 * H + j]) * c;
        }
    }
    red[0][ty][tx] = si;
    red[1][ty][tx] = sf;
    red[2][ty][tx] = so;
    __syncthreads();
    if (ty < 3 && j < H) {
        float t = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) t += red[ty][i][tx];
        part[(i64)blockIdx.y * 3 * H + ty * H + j] = t;
    }
}
