#!/usr/bin/env bash
# Every host test of the CUDA C backend under each host sanitizer: compute-sanitizer's memcheck and
# racecheck for a machine without a GPU (kernels/cuda/hostcheck.py; what each tool sees is in
# kernels/cuda/host/dlgpu_host.h, "Sanitizers"). The test suite runs a quicker subset of this
# (tests/cuda/test_hostcheck.py). About 16 minutes on 2 cores, the instrumented builds included.
#
#   bash ci/host_sanitize.sh                 # both tools
#   TOOLS=racecheck bash ci/host_sanitize.sh -x   # one tool; extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in ${TOOLS:-memcheck racecheck}; do
    echo "+ hostcheck --tool $tool"
    python -m dlgpu.kernels.cuda.hostcheck --tool "$tool" python -m pytest -q -p no:cacheprovider tests/cuda -k host "$@"
done
