// Stand-in for CUDA's <cuda_bf16.h> when kernels/cuda runs on the CPU: see dlgpu_host.h.
#pragma once
#include "dlgpu_host.h"
