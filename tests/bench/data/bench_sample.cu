// A small CUDA file for the `dlgpu kernels` tests: a plain kernel, one using shared memory, and one
// whose __launch_bounds__ leave too few registers for its live values, so ptxas must spill.
extern "C" __global__ void bench_saxpy(float a, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

extern "C" __global__ void bench_block_sum(const float* x, float* out, int n) {
    __shared__ float buf[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(out, buf[0]);
}

extern "C" __global__ void __launch_bounds__(1024, 2) bench_spill(const float* x, float* y, int n) {
    float v[96];
#pragma unroll
    for (int k = 0; k < 96; ++k) v[k] = x[(threadIdx.x + 97 * k) % n];
    float s = 0.f;
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int k = 0; k < 96; ++k) s = s * v[(k * 37 + r) % 96] + v[k];
    y[threadIdx.x] = s;
}
