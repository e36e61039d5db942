// Minimal Gated Unit (dlgpu.reference.mgu), CUDA C for the cupy backend.
//
// The MGU is the cho GRU with one sigmoid gate f doing both jobs: it resets the state fed to the
// candidate (h~ = tanh(xp_h + (f h_{t-1}) U_h^T + b_hh_h)) and interpolates h_t = h_{t-1} + f (h~ - h_{t-1}).
// So it runs on recurrent.cuh's reset-gated kernels with NG = 1 sigmoid gate that is also the
// update gate (U = 0): reset_fwd_gates / reset_fwd_cand per step (two launches) or reset_persist
// (one cooperative launch, two grid barriers per step); BPTT with reset_bwd_cand / reset_bwd_gate,
// phase 1 keeping dh (h~ - h_{t-1}) in an fp32 scratch for phase 2 to add d(f h) h_{t-1} before the
// sigmoid derivative. xp, dx and the weight gradients are gemm_kernel GEMMs over all steps.
#include "recurrent.cuh"
