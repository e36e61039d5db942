// Stand-in for CUDA's <cooperative_groups.h> when kernels/cuda runs on the CPU: see dlgpu_host.h.
#pragma once
#include "dlgpu_host.h"
